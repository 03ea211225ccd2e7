from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from apps.deployments import orchestrator, selectors
from apps.deployments.models import App, Deployment, DeploymentEvent, DeploymentStatus
from apps.teams.api.serializers import StrictCharField, slug_field
from apps.teams.models import SLUG_MAX_LENGTH


class DeploymentBriefOutput(serializers.Serializer):
    id = serializers.IntegerField(source="number")
    image = serializers.CharField()
    status = serializers.ChoiceField(choices=DeploymentStatus.choices)


class AppOutput(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    cpus = serializers.FloatField()
    status = serializers.SerializerMethodField(help_text="new, deploying, running, stopped or failed")
    url = serializers.SerializerMethodField(help_text="Where the router serves the app.")
    current_deployment = serializers.SerializerMethodField()

    class Meta:
        model = App
        fields = (
            "name", "project", "port", "health_check_path", "replicas", "memory_mb", "cpus", "command", "status",
            "url", "current_deployment", "created_at", "updated_at",
        )  # fmt: skip

    def get_status(self, app: App) -> str:
        status = getattr(app, "latest_deployment_status", None)
        if status in ("pending", "pulling", "starting", "health_checking"):
            return "deploying"
        if app.live_deployment_id is None:
            return "failed" if status == DeploymentStatus.FAILED else "new"
        return "running" if app.desired_running else "stopped"

    def get_url(self, app: App) -> str:
        return orchestrator.app_url(app)

    def get_current_deployment(self, app: App) -> dict[str, Any] | None:
        live = app.live_deployment
        return DeploymentBriefOutput(live).data if live else None


def _reader_may_read_logs(serializer: serializers.Serializer, app: App) -> bool:
    """Asked once per app and serializer tree (a list serializer's children share the context)."""
    answers = serializer.context.setdefault("_may_read_logs", {})
    if app.pk not in answers:
        answers[app.pk] = selectors.may_read_logs(serializer.context.get("ctx"), app)
    return answers[app.pk]


def _log_tail_for_reader(serializer: serializers.Serializer, app: App, text: str) -> str:
    """`text` (a reason or event message) as this reader may see it: without the log tail for those
    who may not read logs; for the others with the tail masked again as it is served, so a tail stored
    before masking existed, or before a secret was set, does not show the value. The masker is built
    only when a tail is there, once per app and serializer tree."""
    if not text or selectors.LOG_TAIL_MARKER not in text:
        return text
    if not _reader_may_read_logs(serializer, app):
        return selectors.without_log_tail(text)
    maskers = serializer.context.setdefault("_log_maskers", {})
    if app.pk not in maskers:
        maskers[app.pk] = selectors.app_log_masker(app)
    head, tail = text.split(selectors.LOG_TAIL_MARKER, 1)
    return head + selectors.LOG_TAIL_MARKER + maskers[app.pk].mask(tail)


class DeploymentOutput(serializers.ModelSerializer):
    """A failure's reason carries the container's last log lines only for callers who may read
    logs (viewers and tokens without the logs scope get the explanation alone)."""

    id = serializers.IntegerField(source="number")
    app = serializers.CharField(source="app.name")
    created_by = serializers.CharField(source="created_by_label")
    rollback_of = serializers.IntegerField(source="rollback_of.number", allow_null=True, default=None)
    superseded_by = serializers.IntegerField(
        source="superseded_by.number",
        allow_null=True,
        default=None,
        help_text="The id of the newer deployment that took over from this one (superseded).",
    )
    cancelled_by = serializers.CharField(
        help_text="Who stopped it before it went live: the actor of the newer deploy, rollback, restart or stop, or"
        " of the cancel; empty otherwise."
    )
    cancelled_at = serializers.DateTimeField(
        allow_null=True, help_text="When it was stopped before it went live (superseded or cancelled)."
    )

    class Meta:
        model = Deployment
        fields = (
            "id", "app", "image", "image_digest", "status", "reason", "config", "created_by", "token_prefix",
            "rollback_of", "superseded_by", "cancelled_by", "cancelled_at", "created_at", "started_at", "finished_at",
        )  # fmt: skip

    def to_representation(self, instance: Deployment) -> dict[str, Any]:
        data = super().to_representation(instance)
        if data.get("reason"):
            data["reason"] = _log_tail_for_reader(self, instance.app, data["reason"])
        return data


class DeploymentEventOutput(serializers.ModelSerializer):
    """Like a deployment's reason, a failure event shows log lines only to those who may read logs.
    The view passes the app in the context (else each event's deployment is read)."""

    class Meta:
        model = DeploymentEvent
        fields = ("id", "at", "level", "message")

    def to_representation(self, instance: DeploymentEvent) -> dict[str, Any]:
        data = super().to_representation(instance)
        app = self.context.get("app") or instance.deployment.app
        if data.get("message"):
            data["message"] = _log_tail_for_reader(self, app, data["message"])
        return data


class AppCreateInput(serializers.Serializer):
    name = slug_field()
    project = StrictCharField(max_length=SLUG_MAX_LENGTH, help_text="The project's slug.")
    port = serializers.IntegerField(min_value=1, max_value=65535, required=False)
    health_check_path = serializers.RegexField(r"^(/[^\s]*)?$", max_length=200, required=False, allow_blank=True)
    replicas = serializers.IntegerField(min_value=0, max_value=50, required=False)
    memory_mb = serializers.IntegerField(min_value=16, max_value=65536, required=False)
    cpus = serializers.DecimalField(
        max_digits=4, decimal_places=2, min_value=Decimal("0.05"), max_value=Decimal(16), required=False
    )
    command = serializers.ListField(
        child=StrictCharField(max_length=1000), allow_null=True, required=False, min_length=1, max_length=100
    )


class AppUpdateInput(AppCreateInput):
    name = None
    project = None


class ScaleInput(serializers.Serializer):
    replicas = serializers.IntegerField(min_value=0, max_value=50)


class DeployInput(serializers.Serializer):
    # Strict: a RegexField would take the number 123 as the image "123" and queue its deployment.
    image = StrictCharField(
        max_length=500,
        validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$", "Not an image reference.")],
        help_text="An image reference, e.g. ghcr.io/org/api:1.2",
    )


class RollbackInput(serializers.Serializer):
    to = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text="A deployment id; default: the previous live one."
    )


class AppConfirmInput(serializers.Serializer):
    confirm = serializers.CharField(max_length=100, help_text="Repeat the app's name to confirm deletion.")
