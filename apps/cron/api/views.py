from typing import Any, ClassVar

from django.db import models
from django.db.models import OuterRef, Subquery
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.views import TeamScopedCrudViewSet, TeamScopedViewSet
from apps.core.capabilities import Capability
from apps.core.errors import NotFound, ValidationFailed
from apps.cron import services
from apps.cron.api import serializers as s
from apps.cron.models import CronJob, CronRun, RunStatus
from apps.deployments import orchestrator
from apps.deployments.models import App
from apps.runtime.engine import EngineError
from apps.secrets.selectors import log_masker_for_cron_job
from apps.teams.models import Project


def cron_job_queryset() -> models.QuerySet:
    latest = CronRun.objects.filter(job=OuterRef("pk")).order_by("-id")
    return CronJob.objects.select_related("project", "app").annotate(
        last_run_id=Subquery(latest.values("id")[:1]),
        last_run_status=Subquery(latest.values("status")[:1]),
        last_run_started_at=Subquery(latest.values("started_at")[:1]),
    )


class CronJobViewSet(TeamScopedCrudViewSet):
    """Cron jobs: a command run in a container on a schedule, with an app's live image and
    environment or an image of its own. Failed, timed-out and missed runs become platform events."""

    serializer_class = s.CronJobOutput
    lookup_field = "name"
    lookup_url_kwarg = "cron_job"
    create_input = s.CronJobCreateInput
    update_input = s.CronJobUpdateInput
    delete_input = s.CronConfirmInput
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "retrieve": Capability.VIEW,
        "create": Capability.MANAGE_CRON,
        "partial_update": Capability.MANAGE_CRON,
        "destroy": Capability.MANAGE_CRON,
        "run": Capability.MANAGE_CRON,
        "suspend": Capability.MANAGE_CRON,
        "resume": Capability.MANAGE_CRON,
    }

    def base_queryset(self) -> models.QuerySet:
        return cron_job_queryset()

    def create_object(self, data: dict[str, Any]) -> CronJob:
        project = self.ctx.restrict(Project.objects.all()).filter(slug=data.pop("project")).first()
        if project is None:
            raise ValidationFailed("No such project in this team.", fields={"project": ["No such project."]})
        app = None
        if app_name := data.pop("app", None):
            app = self.ctx.restrict(App.objects.all()).filter(name=app_name).first()
            if app is None:
                raise ValidationFailed("No such app in this team.", fields={"app": ["No such app."]})
        return services.cron_job_create(ctx=self.ctx, project=project, app=app, **data)

    def update_object(self, obj: CronJob, data: dict[str, Any]) -> CronJob:
        return services.cron_job_update(ctx=self.ctx, job=obj, **data)

    def delete_object(self, obj: CronJob, data: dict[str, Any]) -> None:
        services.cron_job_delete(ctx=self.ctx, job=obj, **data)

    @extend_schema(request=None, responses={202: s.CronRunOutput})
    @action(detail=True, methods=["post"])
    def run(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = services.cron_job_run_now(ctx=self.ctx, job=self.object)
        return Response(s.CronRunOutput(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=s.CronJobOutput)
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.output(self.reread(services.cron_job_set_suspended(ctx=self.ctx, job=self.object, suspended=True)))

    @extend_schema(request=None, responses=s.CronJobOutput)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.output(self.reread(services.cron_job_set_suspended(ctx=self.ctx, job=self.object, suspended=False)))


class CronRunViewSet(TeamScopedViewSet):
    """A cron job's runs, newest first: status, exit code, timing and the tail of the log."""

    serializer_class = s.CronRunOutput
    lookup_url_kwarg = "run"
    cursor_ordering = "-id"
    capability_map: ClassVar = {"list": Capability.VIEW, "retrieve": Capability.VIEW, "logs": Capability.VIEW_LOGS}

    def get_parent(self) -> CronJob:
        return self.ctx.get(CronJob.objects.all(), name=self.kwargs["cron_job"])

    def base_queryset(self) -> models.QuerySet:
        return CronRun.objects.filter(job=self.parent)

    def get_object(self) -> Any:
        if not str(self.kwargs["run"]).isdigit():
            raise NotFound()
        return super().get_object()

    @extend_schema(responses=s.CronRunLogOutput)
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = self.object
        log = run.log_tail
        if run.status == RunStatus.RUNNING and run.container_name:
            try:
                log = "\n".join(line.text for line in orchestrator.engine().logs(run.container_name, tail=200))
            except EngineError:
                log = ""
        # Masked when served too: a tail stored before masking existed, or a live log.
        log = log_masker_for_cron_job(self.parent).mask(log)
        return Response({"id": run.pk, "status": run.status, "log": log})
