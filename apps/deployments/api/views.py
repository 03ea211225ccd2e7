import json
import threading
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.core.api.streams import BoundedStream
from apps.core.api.throttling import StreamSlots
from apps.core.api.views import TeamScopedCrudViewSet, TeamScopedViewSet
from apps.core.capabilities import Capability
from apps.core.errors import NotFound, PandaError, ValidationFailed
from apps.deployments import orchestrator, selectors, services
from apps.deployments.api import serializers as s
from apps.deployments.models import App, Container
from apps.runtime.engine import EngineError
from apps.teams.api.views import GrantViewSet
from apps.teams.models import Project
from apps.tokens.models import ApiToken

MAX_LOG_LINES = 5000


class NDJSONRenderer(BaseRenderer):
    """Newline-delimited JSON: the log stream's format (an error, too, is one JSON line)."""

    media_type = "application/x-ndjson"
    format = "ndjson"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return b"" if data is None else json.dumps(data).encode() + b"\n"


class AppViewSet(TeamScopedCrudViewSet):
    """Apps: a container image run behind the router at its URL, with replicas and limits.
    Release settings (port, health check, limits, command) apply at the next deployment;
    replicas at once."""

    serializer_class = s.AppOutput
    lookup_field = "name"
    lookup_url_kwarg = "app"
    create_input = s.AppCreateInput
    update_input = s.AppUpdateInput
    delete_input = s.AppConfirmInput
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "retrieve": Capability.VIEW,
        "create": Capability.MANAGE_APPS,
        "partial_update": Capability.CHANGE_CONFIG,
        "destroy": Capability.DELETE,
        "scale": Capability.CHANGE_CONFIG,
        "restart": Capability.DEPLOY,
        "stop": Capability.DEPLOY,
        "start": Capability.DEPLOY,
        "rollback": Capability.DEPLOY,
        "logs": Capability.VIEW_LOGS,
    }

    def base_queryset(self) -> models.QuerySet:
        return selectors.app_queryset()

    def create_object(self, data: dict[str, Any]) -> App:
        project = Project.objects.filter(team=self.ctx.team, slug=data.pop("project")).first()
        if project is None or not self.ctx.restrict(Project.objects.filter(pk=project.pk)).exists():
            raise ValidationFailed("No such project in this team.", fields={"project": ["No such project."]})
        return services.app_create(ctx=self.ctx, project=project, **data)

    def update_object(self, obj: App, data: dict[str, Any]) -> App:
        return services.app_update(ctx=self.ctx, app=obj, **data)

    def delete_object(self, obj: App, data: dict[str, Any]) -> None:
        services.app_delete(ctx=self.ctx, app=obj, **data)

    def _accepted(self, app: App) -> Response:
        return self.output(self.reread(app), status_code=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.ScaleInput, responses={202: s.AppOutput})
    @action(detail=True, methods=["post"])
    def scale(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(s.ScaleInput, request)
        return self._accepted(services.app_scale(ctx=self.ctx, app=self.object, **data))

    @extend_schema(request=None, responses={202: s.AppOutput})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._accepted(services.app_set_running(ctx=self.ctx, app=self.object, running=False))

    @extend_schema(request=None, responses={202: s.AppOutput})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._accepted(services.app_set_running(ctx=self.ctx, app=self.object, running=True))

    @extend_schema(request=None, responses={202: s.DeploymentOutput})
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        deployment = services.app_restart(ctx=self.ctx, app=self.object)
        return Response(s.DeploymentOutput(deployment).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.RollbackInput, responses={202: s.DeploymentOutput})
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(s.RollbackInput, request)
        deployment = services.deployment_rollback(ctx=self.ctx, app=self.object, to=data.get("to"))
        return Response(s.DeploymentOutput(deployment).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            OpenApiParameter("tail", OpenApiTypes.INT, description="Lines per container (default 100)."),
            OpenApiParameter(
                "follow",
                OpenApiTypes.BOOL,
                description=(
                    "Keep the stream open for new lines. At most PANDASTACK_MAX_FOLLOWS_PER_TOKEN open at once per"
                    " token (else 429); a stream ends after PANDASTACK_STREAM_MAX_SECONDS or when its token or"
                    ' access is revoked, with a last line {"end": {"reason", "message"}}.'
                ),
            ),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                description=(
                    '{"replica","at","line"} per line; {"notice": {"code": "lines_dropped", "count"}} when the'
                    ' client reads too slowly; {"end": {"reason", "message"}} last when a follow is ended.'
                )
            ),
            429: OpenApiResponse(description="Too many open follows for this token."),
        },
    )
    def get_renderers(self) -> list[BaseRenderer]:
        if self.action == "logs":  # the stream may be asked for by its own media type
            return [JSONRenderer(), NDJSONRenderer()]
        return super().get_renderers()

    @action(detail=True, methods=["get"])
    def logs(self, request: Request, *args: Any, **kwargs: Any) -> StreamingHttpResponse:
        try:
            tail = int(request.query_params.get("tail", 100))
        except ValueError:
            raise ValidationFailed("Invalid tail.", fields={"tail": ["A whole number."]}) from None
        if not 0 <= tail <= MAX_LOG_LINES:
            raise ValidationFailed("Invalid tail.", fields={"tail": [f"Between 0 and {MAX_LOG_LINES}."]})
        follow = request.query_params.get("follow", "").lower() in ("1", "true", "yes")
        containers = {c.name: f"r{c.replica}" for c in Container.objects.filter(app=self.object).order_by("replica")}
        mask = selectors.app_log_masker(self.object).mask  # the app's secrets never leave in a log line
        slots = None
        if follow:
            # Last of the checks above (authentication, team, view_logs): a refused stream takes no slot.
            slots = StreamSlots.for_request(request)
            slots.acquire()
        stream = BoundedStream(
            lambda stop: _log_stream(containers, tail=tail, follow=follow, mask=mask, stop=stop),
            max_seconds=settings.PANDASTACK_STREAM_MAX_SECONDS,
            check_seconds=settings.PANDASTACK_STREAM_CHECK_SECONDS,
            still_allowed=_may_still_read_logs(request, team=kwargs["team"], app_id=self.object.pk) if follow else None,
            slots=slots,
        )
        return StreamingHttpResponse(stream.body_for(request), content_type="application/x-ndjson")


def _log_line(replica: str, at: Any, text: str) -> str:
    return json.dumps({"replica": replica, "at": at.isoformat() if at else None, "line": text}) + "\n"


def _may_still_read_logs(request: Request, *, team: str, app_id: int) -> Callable[[], bool]:
    """Re-asks, from the database, what the request was allowed: the same token (not revoked or
    expired, its user active) or the same signed-in session, still a member of the team, still
    allowed to read this app's logs. An open stream asks it every few seconds."""
    token_id = request.auth.pk if isinstance(request.auth, ApiToken) else None
    user_id = request.user.pk
    session_key = None if token_id is not None else getattr(getattr(request, "session", None), "session_key", None)
    session_store = import_module(settings.SESSION_ENGINE).SessionStore

    def still_allowed() -> bool:
        token = None
        if token_id is not None:
            token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
            if token is None or not token.is_active or not token.user.is_active:
                return False
            user = token.user
        else:
            user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
            if user is None or (session_key and not session_store().exists(session_key)):
                return False
        try:
            ctx = resolve_team(Actor(user=user, token=token, via="api"), team)
            ctx.require(Capability.VIEW_LOGS, ctx.get(App.objects.all(), pk=app_id))
        except PandaError:
            return False
        return True

    return still_allowed


def _log_stream(
    containers: dict[str, str],
    *,
    tail: int,
    follow: bool,
    mask: Callable[[str], str],
    stop: threading.Event | None = None,
) -> Iterator[str]:
    engine = orchestrator.engine()
    try:
        if not follow:
            for name, replica in containers.items():
                for line in engine.logs(name, tail=tail):
                    yield _log_line(replica, line.at, mask(line.text))
            return
        stop = stop or threading.Event()
        try:
            for name, line in engine.follow_logs(list(containers), tail=tail, stop=stop):
                yield _log_line(containers.get(name, name), line.at, mask(line.text))
        finally:
            stop.set()  # the client went away: stop reading the engine's streams
    except EngineError as exc:
        yield json.dumps({"error": {"code": "engine_unavailable", "message": str(exc)}}) + "\n"


class DeploymentViewSet(TeamScopedViewSet):
    """An app's releases, newest first. Creating one answers 202: poll it, or its events."""

    serializer_class = s.DeploymentOutput
    lookup_field = "number"
    lookup_url_kwarg = "deployment"
    cursor_ordering = "-number"
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "retrieve": Capability.VIEW,
        "create": Capability.DEPLOY,
        "events": Capability.VIEW,
        "cancel": Capability.DEPLOY,
    }

    def get_parent(self) -> App:
        return self.ctx.get(selectors.app_queryset(), name=self.kwargs["app"])

    def base_queryset(self) -> models.QuerySet:
        return selectors.deployment_queryset().filter(app=self.parent)

    def get_object(self) -> Any:
        if not str(self.kwargs["deployment"]).isdigit():
            raise NotFound()
        return super().get_object()

    @extend_schema(request=s.DeployInput, responses={202: s.DeploymentOutput})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(s.DeployInput, request)
        deployment = services.deployment_create(ctx=self.ctx, app=self.parent, **data)
        return Response(s.DeploymentOutput(deployment).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={
            202: s.DeploymentOutput,
            409: OpenApiResponse(
                description="deployment_finished: it already ended (live, failed, superseded, cancelled…) or is"
                " already switching traffic; nothing to cancel."
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Cancel a deployment still in progress: it is marked cancelled at once and its new containers
        are removed by the worker within a second or two (never routed); whatever was live keeps
        serving."""
        deployment = services.deployment_cancel(ctx=self.ctx, deployment=self.object)
        return self.output(self.base_queryset().get(pk=deployment.pk), status_code=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[OpenApiParameter("after", OpenApiTypes.INT, description="Only events after this event id.")],
        responses=s.DeploymentEventOutput(many=True),
    )
    @action(detail=True, methods=["get"])
    def events(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        events = self.object.events.all()
        after = request.query_params.get("after")
        if after:
            if not after.isdigit():
                raise ValidationFailed("Invalid 'after'.", fields={"after": ["An event id."]})
            events = events.filter(id__gt=int(after))
        self.cursor_ordering = "id"
        page = self.paginate_queryset(events)
        context = {**self.get_serializer_context(), "app": self.parent}  # whether the caller may read log tails
        serializer = s.DeploymentEventOutput(page, many=True, context=context)
        return self.get_paginated_response(serializer.data)


class AppGrantViewSet(GrantViewSet):
    """Object grants on one app: a member or a team group gets one capability on this app only."""

    parent_queryset = App.objects.all()
    parent_lookup = ("name", "app")
