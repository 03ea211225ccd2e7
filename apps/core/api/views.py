"""The base of every team-scoped API view. It resolves the team in the URL (404 when it is not
the caller's), fetches the object of a detail route through the tenancy filter (404 again), and
checks the capability the view declares for the action (403) before any handler runs. A view that
declares no capability for an action answers 403: closed by default."""

from typing import Any, ClassVar

from django.db import models
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.viewsets import GenericViewSet

from apps.core.access import TeamContext, resolve_team
from apps.core.actors import Actor
from apps.core.capabilities import Capability
from apps.core.errors import NotFound, PermissionDenied


def crud_capabilities(
    *, change: Capability, delete: Capability | None = None, view: Capability = Capability.VIEW
) -> dict[str, Capability]:
    """The capability_map of a list/retrieve/create/partial_update/destroy resource."""
    return {
        "list": view,
        "retrieve": view,
        "create": change,
        "partial_update": change,
        "destroy": delete or change,
    }


class TeamScopedViewSet(GenericViewSet):
    permission_classes = [IsAuthenticated]
    # action name -> the capability it needs (Sentry's scope_map idea). Required.
    capability_map: ClassVar[dict[str, Capability]] = {}
    lookup_value_regex = "[^/]+"

    ctx: TeamContext
    actor: Actor
    object: Any = None
    parent: Any = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self.action is None and not hasattr(self, request.method.lower()):
            # A method the route does not map (PUT on a detail route) is a 405 as on any DRF view,
            # not "closed": DRF would only find out after this method ran.
            raise MethodNotAllowed(request.method)
        self.actor = Actor.from_request(request)
        self.ctx = resolve_team(self.actor, kwargs["team"])
        self.parent = self.get_parent()
        capability = self.capability_map.get(self.action)
        if capability is None:
            raise PermissionDenied("This endpoint declares no permission, so it is closed.")
        if self.lookup_url_kwarg_name() in kwargs:
            self.object = self.get_object()
            self.ctx.require(capability, self.object_for_check(self.object))
        else:
            self.ctx.require(capability, self.parent)

    # -- hooks for subclasses --------------------------------------------------------------------
    def base_queryset(self) -> models.QuerySet:
        return self.queryset.all()

    def get_parent(self) -> Any:
        """The object a nested route hangs from (a project for its grants); None for team level."""
        return None

    def object_for_check(self, obj: Any) -> Any:
        """Which object the capability is checked on (its grants apply); team-level rows use None."""
        return obj if getattr(type(obj), "grant_paths", ()) else self.parent

    # -- plumbing ------------------------------------------------------------------------------
    def lookup_url_kwarg_name(self) -> str:
        return self.lookup_url_kwarg or self.lookup_field

    def get_queryset(self) -> models.QuerySet:
        return self.ctx.restrict(self.base_queryset())

    def get_object(self) -> Any:
        value = self.kwargs[self.lookup_url_kwarg_name()]
        if self.lookup_field in ("pk", "id") and not str(value).isdigit():
            raise NotFound()
        return self.ctx.get(self.get_queryset(), **{self.lookup_field: value})

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        context["ctx"] = getattr(self, "ctx", None)
        return context

    def validated(self, input_class: type[Serializer], request: Request) -> dict[str, Any]:
        """The request body checked by an input serializer (a 400 with field errors otherwise)."""
        serializer = input_class(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    # -- default handlers ----------------------------------------------------------------------
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.output(self.object)

    def output(self, obj: Any, *, status_code: int = status.HTTP_200_OK, **extra: Any) -> Response:
        data = self.get_serializer(obj).data
        return Response({**data, **extra} if extra else data, status=status_code)


class TeamScopedCrudViewSet(TeamScopedViewSet):
    """Create, update and delete wired to services: a subclass names its input serializers and
    implements `create_object`, `update_object` and `delete_object` (each one service call); the
    output is `serializer_class` over the object re-read through `base_queryset` (so annotations
    and prefetches are there), and the OpenAPI schema follows from the same declarations."""

    create_input: ClassVar[type[Serializer] | None] = None
    update_input: ClassVar[type[Serializer] | None] = None
    # e.g. a {"confirm": "<slug>"} serializer for destructive deletes.
    delete_input: ClassVar[type[Serializer] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        schemas = {}
        if cls.create_input:
            schemas["create"] = extend_schema(request=cls.create_input, responses={201: cls.serializer_class})
        if cls.update_input:
            schemas["partial_update"] = extend_schema(request=cls.update_input, responses=cls.serializer_class)
        schemas["destroy"] = extend_schema(request=cls.delete_input, responses={204: None})
        extend_schema_view(**schemas)(cls)

    def create_object(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def update_object(self, obj: Any, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def delete_object(self, obj: Any, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def reread(self, obj: Any) -> Any:
        return self.base_queryset().get(pk=obj.pk)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        obj = self.create_object(self.validated(self.create_input, request))
        return self.output(self.reread(obj), status_code=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        obj = self.update_object(self.object, self.validated(self.update_input, request))
        return self.output(self.reread(obj))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(self.delete_input, request) if self.delete_input else {}
        self.delete_object(self.object, data)
        return Response(status=status.HTTP_204_NO_CONTENT)
