"""The base of every team-scoped API view. It resolves the team in the URL (404 when it is not
the caller's), fetches the object of a detail route through the tenancy filter (404 again), and
checks the capability the view declares for the action (403) before any handler runs. A view that
declares no capability for an action answers 403: closed by default."""

from typing import Any, ClassVar

from django.db import models
from rest_framework import status
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from apps.core.access import TeamContext, resolve_team
from apps.core.actors import Actor
from apps.core.capabilities import Capability
from apps.core.errors import NotFound, PermissionDenied


class TeamScopedViewSet(GenericViewSet):
    permission_classes = [IsAuthenticated]
    # action name -> the capability it needs (Sentry's scope_map idea). Required.
    capability_map: ClassVar[dict[str, Capability]] = {}
    # Input and output serializers (HackSoft style); output defaults to serializer_class.
    input_serializer_class: ClassVar[Any] = None
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

    def validated_input(self, request: Request, *, partial: bool = False) -> dict[str, Any]:
        serializer = self.input_serializer_class(
            data=request.data, partial=partial, context=self.get_serializer_context()
        )
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
