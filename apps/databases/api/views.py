import json
from typing import Any, ClassVar

from django.db import models
from django.db.models import Prefetch
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.streams import ChunkedFileResponse
from apps.core.api.views import TeamScopedViewSet
from apps.core.capabilities import Capability
from apps.core.errors import NotFound, ValidationFailed
from apps.databases import backups, services
from apps.databases.api import serializers as s
from apps.databases.models import Backup, Database, DatabaseAttachment, DatabaseEngine, DatabaseStatus
from apps.deployments.models import App
from apps.teams.models import Project

# What the list's ?status= takes: deleted databases are listed apart (?deleted=1), and a database
# being purged (`deleting`) is listed with them, no longer undeletable.
GONE = (DatabaseStatus.DELETED, DatabaseStatus.DELETING)
LISTED_STATUSES = [value for value in DatabaseStatus.values if value not in GONE]
YES_NO = ["1", "0", "true", "false"]


def database_queryset(*, deleted: bool = False) -> models.QuerySet:
    """The team's databases the API shows (not deleted; or only the deleted ones, not purged
    yet), with what their JSON needs."""
    attachments = DatabaseAttachment.objects.select_related("app").order_by("id")
    databases = Database.objects.filter(status__in=GONE) if deleted else Database.objects.exclude(status__in=GONE)
    return databases.select_related("project").prefetch_related(Prefetch("attachments", queryset=attachments))


class DatabaseChildMixin:
    """A route nested under databases/<database>/: the database is the parent (404 when it is not
    the caller's, or deleted), and the capability is checked on it (a grant on its project counts)."""

    def get_parent(self) -> Database:
        return self.ctx.get(database_queryset(), name=self.kwargs["database"])


def _choice_filter(request: Request, name: str, choices: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value is not None and value not in choices:
        raise ValidationFailed(f"Invalid {name}.", fields={name: [f"One of: {', '.join(choices)}."]})
    return value


class DatabaseViewSet(TeamScopedViewSet):
    """Managed databases (PostgreSQL, MySQL/MariaDB, Redis, MongoDB): a database and its own user
    on a server operators run (placement shared) or a container of its own (dedicated). Creating,
    deleting and rotating credentials answer 202 and finish in a worker: poll the database's status.
    Credentials never appear here: `reveal` shows them to those allowed, and is audited."""

    serializer_class = s.DatabaseOutput
    lookup_field = "name"
    lookup_url_kwarg = "database"
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "retrieve": Capability.VIEW,
        "create": Capability.MANAGE_DATABASES,
        "destroy": Capability.MANAGE_DATABASES,
        "rotate": Capability.MANAGE_DATABASES,
        "undelete": Capability.MANAGE_DATABASES,
        # Revealing needs reveal_secrets or manage_databases on the database (whoever manages it can
        # download a backup: the data is theirs already); the one service that reveals checks both.
        "reveal": Capability.VIEW,
    }

    def base_queryset(self) -> models.QuerySet:
        if self.action == "undelete":
            return database_queryset(deleted=True)
        deleted = self.action == "list" and _choice_filter(self.request, "deleted", YES_NO) in ("1", "true")
        queryset = database_queryset(deleted=deleted)
        if self.action == "list":
            if engine := _choice_filter(self.request, "engine", DatabaseEngine.values):
                queryset = queryset.filter(engine=engine)
            if wanted := _choice_filter(self.request, "status", LISTED_STATUSES):
                queryset = queryset.filter(status=wanted)
        return queryset

    def _reread(self, database: Database, status_code: int = status.HTTP_200_OK) -> Response:
        return self.output(
            database_queryset(deleted=database.status in GONE).get(pk=database.pk), status_code=status_code
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("engine", OpenApiTypes.STR, enum=DatabaseEngine.values, description="Only this engine."),
            OpenApiParameter("status", OpenApiTypes.STR, enum=LISTED_STATUSES, description="Only in this status."),
            OpenApiParameter(
                "deleted",
                OpenApiTypes.STR,
                enum=YES_NO,
                description="1: only deleted databases not purged yet (`purge_after` says until when `undelete` "
                "brings one back; `deleting` ones are being purged).",
            ),
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=s.DatabaseCreateInput, responses={202: s.DatabaseOutput})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(s.DatabaseCreateInput, request)
        project = self.ctx.restrict(Project.objects.all()).filter(slug=data.pop("project")).first()
        if project is None:
            raise ValidationFailed("No such project in this team.", fields={"project": ["No such project."]})
        database = services.database_create(ctx=self.ctx, project=project, **data)
        return self._reread(database, status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.DatabaseConfirmInput, responses={202: s.DatabaseOutput})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete the database, recoverably: it leaves the list (see `?deleted=1`), its credentials
        are refused from then on, and the apps it is attached to are detached (they lose the
        variable at their next deploy). `undelete` brings it back, data, backups and credentials
        included, until `purge_after` (the plan's grace period); then a worker drops it and its
        backups for good. Answers 202 with the database, status `deleted` (or `deleting` when the
        plan has no grace period)."""
        data = self.validated(s.DatabaseConfirmInput, request)
        database = services.database_delete(ctx=self.ctx, database=self.object, confirm=data["confirm"])
        return self._reread(database, status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: s.DatabaseOutput})
    @action(detail=True, methods=["post"])
    def rotate(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Give the database user a new password (a worker applies it; attached apps are
        redeployed with the new URL). `credentials_rotated_at` changes when it is done."""
        return self._reread(services.database_rotate(ctx=self.ctx, database=self.object), status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: s.DatabaseOutput})
    @action(detail=True, methods=["post"])
    def undelete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Bring back a deleted database before `purge_after`: the same name, data, backups and
        credentials. Answers 202: the status is `provisioning` until a worker has made the server
        accept the credentials again, then `available`. Apps are not re-attached."""
        return self._reread(services.database_undelete(ctx=self.ctx, database=self.object), status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=s.CredentialsOutput)
    @action(detail=True, methods=["post"])
    def reveal(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The connection URL and its parts, password included. Every reveal is audited."""
        credentials = services.database_reveal(ctx=self.ctx, database=self.object)
        response = Response(s.CredentialsOutput(credentials).data)
        response["Cache-Control"] = "no-store"
        return response


class AttachmentViewSet(DatabaseChildMixin, TeamScopedViewSet):
    """Apps a database is attached to: each receives its URL in an environment variable (a
    platform-managed secret) from its next deploy on."""

    serializer_class = s.AttachmentOutput
    lookup_field = "app__name"
    lookup_url_kwarg = "app"
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "create": Capability.MANAGE_DATABASES,
        "destroy": Capability.MANAGE_DATABASES,
    }

    def base_queryset(self) -> models.QuerySet:
        return DatabaseAttachment.objects.filter(database=self.parent).select_related("app")

    @extend_schema(request=s.AttachInput, responses={201: s.AttachmentOutput})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(s.AttachInput, request)
        app = self.ctx.restrict(App.objects.all()).filter(name=data["app"]).first()
        if app is None:
            raise ValidationFailed("No such app in this team.", fields={"app": ["No such app."]})
        attachment = services.database_attach(
            ctx=self.ctx, database=self.parent, app=app, env_name=data.get("env_name")
        )
        return self.output(self.base_queryset().get(pk=attachment.pk), status_code=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Detach: the app loses the variable at its next deploy."""
        services.database_detach(ctx=self.ctx, database=self.parent, app=self.object.app)
        return Response(status=status.HTTP_204_NO_CONTENT)


class OctetStreamRenderer(BaseRenderer):
    """Lets a client ask for the backup file by its media type; an error is still JSON."""

    media_type = "application/octet-stream"
    format = "bin"
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return b"" if data is None else json.dumps(data).encode()


class BackupViewSet(DatabaseChildMixin, TeamScopedViewSet):
    """A database's backups, newest first. Capturing and restoring answer 202 and run in a worker:
    poll the backup (and the database's status). The download is the backup file as stored, with
    its SHA-256 in X-Checksum-SHA256."""

    serializer_class = s.BackupOutput
    lookup_field = "number"
    lookup_url_kwarg = "backup"
    cursor_ordering = "-number"
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "retrieve": Capability.VIEW,
        "create": Capability.MANAGE_DATABASES,
        "restore": Capability.MANAGE_DATABASES,
        "download": Capability.MANAGE_DATABASES,
    }

    def base_queryset(self) -> models.QuerySet:
        return Backup.objects.filter(database=self.parent)

    def get_object(self) -> Any:
        number = str(self.kwargs["backup"])
        if not number.isdigit() or len(number) > 9:
            raise NotFound()
        return super().get_object()

    def get_renderers(self) -> list[BaseRenderer]:
        if self.action == "download":
            return [JSONRenderer(), OctetStreamRenderer()]
        return super().get_renderers()

    @extend_schema(request=None, responses={202: s.BackupOutput})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Capture a backup now."""
        backup = backups.backup_capture(ctx=self.ctx, database=self.parent)
        return self.output(backup, status_code=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.DatabaseConfirmInput, responses={202: s.BackupOutput})
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Replace the database's data with this backup's (confirm with the database's name)."""
        data = self.validated(s.DatabaseConfirmInput, request)
        backup = backups.backup_restore(ctx=self.ctx, database=self.parent, backup=self.object, confirm=data["confirm"])
        return self.output(backup, status_code=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The backup file; its SHA-256 in the X-Checksum-SHA256 header."
            )
        }
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, *args: Any, **kwargs: Any) -> FileResponse:
        """The backup file as stored (a dump in the engine's own format), streamed, with its SHA-256
        in X-Checksum-SHA256 to check it against. Every download is audited."""
        backup = self.object
        file, filename = backups.backup_open(ctx=self.ctx, backup=backup)
        # Chunked: under ASGI a plain FileResponse would be read whole into memory before sending.
        response = ChunkedFileResponse(
            file, as_attachment=True, filename=filename, content_type="application/octet-stream"
        )
        if not response.has_header("Content-Length") and backup.size_bytes is not None:
            response["Content-Length"] = str(backup.size_bytes)
        response["X-Checksum-SHA256"] = backup.sha256
        response["Cache-Control"] = "no-store"
        return response
