from typing import Any, ClassVar

from django.db import models
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.views import TeamScopedViewSet
from apps.core.capabilities import Capability
from apps.deployments import selectors as app_selectors
from apps.secrets import selectors, services
from apps.secrets.api import serializers as s
from apps.secrets.models import Level, Variable
from apps.teams.models import Project


@method_decorator(sensitive_post_parameters(), name="dispatch")
class VariableViewSet(TeamScopedViewSet):
    """Environment variables and secrets of the team, a project or an app (the narrower level wins
    at deploy). Secrets are write-only: lists never show their values; revealing one needs the
    reveal capability and is audited. Setting or unsetting redeploys the live apps that see the
    change, unless `restart` is false."""

    serializer_class = s.VariableOutput
    lookup_field = "name"
    lookup_url_kwarg = "variable"
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "create": Capability.MANAGE_SECRETS,
        "unset": Capability.MANAGE_SECRETS,
        "reveal": Capability.REVEAL_SECRETS,
        "versions": Capability.VIEW,
    }

    def get_parent(self) -> Any:
        if "app" in self.kwargs:
            return self.ctx.get(app_selectors.app_queryset(), name=self.kwargs["app"])
        if "project" in self.kwargs:
            return self.ctx.get(Project.objects.all(), slug=self.kwargs["project"])
        return None

    @property
    def scope(self) -> services.Scope:
        if "app" in self.kwargs:
            return services.Scope(level=Level.APP, app=self.parent)
        if "project" in self.kwargs:
            return services.Scope(level=Level.PROJECT, project=self.parent)
        return services.Scope(level=Level.TEAM)

    def base_queryset(self) -> models.QuerySet:
        if self.action == "versions":
            # The history stays readable after an unset: its last version records the deletion.
            return Variable.objects.exclude(current=None).filter(**self.scope.filters)
        return selectors.live_variables().filter(**self.scope.filters)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "effective", OpenApiTypes.BOOL, description="App level only: the merged team/project/app view."
            )
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if self.scope.level == Level.APP and request.query_params.get("effective", "").lower() in ("1", "true"):
            merged = selectors.variables_for_app(self.parent)
            return Response({"next": None, "previous": None, "results": s.VariableOutput(merged, many=True).data})
        return super().list(request, *args, **kwargs)

    def _change(self, result: services.ChangeResult, **extra: Any) -> Response:
        return Response({**extra, "restarted": result.restarted, "skipped": result.skipped})

    @extend_schema(request=s.SetInput, responses=s.ChangeOutput)
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(s.SetInput, request)
        result = services.variables_set(
            ctx=self.ctx, scope=self.scope, values=data["variables"], secret=data["secret"], restart=data["restart"]
        )
        fresh = self.base_queryset().filter(name__in=result.names)
        return self._change(result, results=s.VariableOutput(fresh, many=True).data)

    @extend_schema(request=s.UnsetInput, responses=s.ChangeOutput)
    @action(detail=False, methods=["post"])
    def unset(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(s.UnsetInput, request)
        result = services.variables_unset(ctx=self.ctx, scope=self.scope, names=data["names"], restart=data["restart"])
        return self._change(result, unset=result.names)

    @extend_schema(request=None, responses=s.RevealOutput)
    @action(detail=True, methods=["post"])
    def reveal(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        value = services.variable_reveal(ctx=self.ctx, variable=self.object)
        return Response({"name": self.object.name, "value": value, "version": self.object.current.number})

    @extend_schema(responses=s.VersionOutput(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.cursor_ordering = "-number"
        page = self.paginate_queryset(self.object.versions.all())
        return self.get_paginated_response(s.VersionOutput(page, many=True).data)
