from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.db import models
from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.alerts import incidents, rules, services
from apps.alerts.models import (
    AlertRule,
    AlertSeverity,
    ChannelKind,
    Delivery,
    Incident,
    IncidentAlert,
    IncidentStatus,
    NotificationChannel,
    Operator,
    RuleMetric,
    RuleScope,
)
from apps.core.api.views import TeamScopedCrudViewSet, TeamScopedViewSet, crud_capabilities
from apps.core.capabilities import Capability
from apps.core.errors import NotFound, ValidationFailed
from apps.cron.models import CronJob
from apps.databases.models import Database, DatabaseStatus
from apps.deployments.models import App
from apps.events.api.views import PlatformEventOutput
from apps.teams.api.serializers import StrictCharField, slug_field
from apps.teams.models import SLUG_MAX_LENGTH, Project


def masked_url(url: str) -> str:
    """`scheme://host[:port]/…`: where a webhook goes, without the path and query that (for Slack's
    incoming webhooks and many others) are the credential."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


class ChannelOutput(serializers.ModelSerializer):
    target = serializers.CharField(
        read_only=True,
        help_text="E-mail addresses, or the webhook's URL: in full only to callers who may manage alerts, "
        "as scheme://host/… to the others (a webhook URL often works as a password).",
    )
    signed = serializers.SerializerMethodField(help_text="Whether deliveries carry an HMAC signature.")
    verified = serializers.BooleanField(
        read_only=True,
        help_text="False for an e-mail channel whose address has not confirmed yet: nothing is sent to it "
        "until the code e-mailed there is entered (…/verify/).",
    )

    class Meta:
        model = NotificationChannel
        fields = ("name", "kind", "target", "enabled", "signed", "verified", "created_at")

    def get_signed(self, channel: NotificationChannel) -> bool:
        return bool(channel.signing_secret_encrypted)

    def to_representation(self, channel: NotificationChannel) -> dict[str, Any]:
        data = super().to_representation(channel)
        ctx = self.context.get("ctx")
        if channel.kind != ChannelKind.EMAIL and (ctx is None or not ctx.can(Capability.MANAGE_ALERTS)):
            data["target"] = masked_url(channel.target)
        return data


class ChannelCreateInput(serializers.Serializer):
    name = slug_field()
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    target = StrictCharField(
        max_length=2000,
        help_text="An http(s) URL, or one e-mail address (which gets a verification code before anything else).",
    )


class ChannelUpdateInput(serializers.Serializer):
    target = StrictCharField(max_length=2000, required=False)
    enabled = serializers.BooleanField(required=False)


class ChannelVerifyInput(serializers.Serializer):
    token = StrictCharField(max_length=1000, help_text="The code e-mailed to the channel's address.")


class ChannelConfirmInput(serializers.Serializer):
    confirm = serializers.CharField(max_length=100, help_text="Repeat the channel's name to confirm deletion.")


class DeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = (
            "id", "trigger", "subject", "status", "attempts", "response_status", "last_error", "created_at",
            "delivered_at",
        )  # fmt: skip


class NotificationChannelViewSet(TeamScopedCrudViewSet):
    """Where notifications go: e-mail, a signed webhook (HMAC-SHA256 in X-PandaStack-Signature over
    "<X-PandaStack-Timestamp>.<body>"; the secret is shown once, at creation), or a Slack-compatible
    webhook. Failed deliveries are retried with backoff and logged."""

    serializer_class = ChannelOutput
    queryset = NotificationChannel.objects.all()
    lookup_field = "name"
    lookup_url_kwarg = "channel"
    create_input = ChannelCreateInput
    update_input = ChannelUpdateInput
    delete_input = ChannelConfirmInput
    capability_map: ClassVar = {
        **crud_capabilities(change=Capability.MANAGE_ALERTS),
        "test": Capability.MANAGE_ALERTS,
        "verify": Capability.MANAGE_ALERTS,
        "resend_verification": Capability.MANAGE_ALERTS,
    }

    def create_object(self, data: dict[str, Any]) -> NotificationChannel:
        channel, self._signing_secret = services.channel_create(ctx=self.ctx, **data)
        return channel

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().create(request, *args, **kwargs)
        if getattr(self, "_signing_secret", None):
            response.data["signing_secret"] = self._signing_secret  # shown once; stored encrypted
        return response

    def update_object(self, obj: NotificationChannel, data: dict[str, Any]) -> NotificationChannel:
        return services.channel_update(ctx=self.ctx, channel=obj, **data)

    def delete_object(self, obj: NotificationChannel, data: dict[str, Any]) -> None:
        services.channel_delete(ctx=self.ctx, channel=obj, **data)

    @extend_schema(request=None, responses={202: DeliveryOutput})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Send a test notification to the channel's own target (an e-mail channel: once verified)."""
        delivery = services.channel_test(ctx=self.ctx, channel=self.object)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=ChannelVerifyInput, responses={200: ChannelOutput})
    @action(detail=True, methods=["post"])
    def verify(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Confirm an e-mail channel's address with the code that was e-mailed to it."""
        data = self.validated(ChannelVerifyInput, request)
        channel = services.channel_verify(ctx=self.ctx, channel=self.object, token=data["token"])
        return self.output(channel)

    @extend_schema(request=None, responses={202: ChannelOutput})
    @action(detail=True, methods=["post"])
    def resend_verification(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """E-mail the verification code again (at most once per 10 minutes)."""
        services.channel_verification_resend(ctx=self.ctx, channel=self.object)
        return self.output(self.object, status_code=status.HTTP_202_ACCEPTED)


class DeliveryViewSet(TeamScopedViewSet):
    """A channel's delivery log, newest first."""

    serializer_class = DeliveryOutput
    cursor_ordering = "-id"
    capability_map: ClassVar = {"list": Capability.VIEW}

    def get_parent(self) -> NotificationChannel:
        return self.ctx.get(NotificationChannel.objects.all(), name=self.kwargs["channel"])

    def base_queryset(self) -> models.QuerySet:
        return Delivery.objects.filter(channel=self.parent)


# --- alert rules ------------------------------------------------------------------------------------
class StrictFloatField(serializers.FloatField):
    """A FloatField that takes only a JSON number (not "5", not true)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class RuleOutput(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    app = serializers.CharField(source="app.name", allow_null=True, default=None)
    cron_job = serializers.CharField(source="cron_job.name", allow_null=True, default=None)
    database = serializers.CharField(source="database.name", allow_null=True, default=None)
    channels = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta:
        model = AlertRule
        fields = (
            "name", "project", "scope", "app", "cron_job", "database", "metric", "event_kind", "operator", "threshold",
            "window_seconds", "for_seconds", "severity", "channels", "enabled", "state", "state_since", "last_value",
            "last_evaluated_at", "created_at",
        )  # fmt: skip


EVENT_KIND_HELP = "For metric event, one of: " + "; ".join(
    f"{kind} ({about}: {what})" for kind, (about, what) in rules.EVENT_KINDS.items()
)
WATCHED = ("scope", "project", "app", "cron_job", "database")


class RuleUpdateInput(serializers.Serializer):
    metric = serializers.ChoiceField(choices=RuleMetric.choices, required=False)
    event_kind = serializers.ChoiceField(
        choices=list(rules.EVENT_KINDS), allow_blank=True, required=False, help_text=EVENT_KIND_HELP
    )
    operator = serializers.ChoiceField(choices=Operator.choices, required=False)
    threshold = StrictFloatField(required=False)
    window_seconds = serializers.IntegerField(
        min_value=rules.WINDOW_SECONDS[0], max_value=rules.WINDOW_SECONDS[1], required=False
    )
    for_seconds = serializers.IntegerField(
        min_value=rules.FOR_SECONDS[0],
        max_value=rules.FOR_SECONDS[1],
        required=False,
        help_text="How long the condition must hold before the rule fires (0: at once).",
    )
    severity = serializers.ChoiceField(choices=AlertSeverity.choices, required=False)
    channels = serializers.ListField(
        child=StrictCharField(max_length=SLUG_MAX_LENGTH),
        max_length=20,
        required=False,
        help_text="Names of the team's notification channels.",
    )
    enabled = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        fixed = [name for name in (*WATCHED, "name") if name in self.initial_data]
        if fixed:
            message = "What a rule watches and its name cannot change; delete the rule and create another."
            raise serializers.ValidationError({key: [message] for key in fixed})
        return attrs


class RuleCreateInput(RuleUpdateInput):
    name = slug_field()
    scope = serializers.ChoiceField(choices=RuleScope.choices)
    project = StrictCharField(
        max_length=SLUG_MAX_LENGTH, required=False, help_text="The project's slug (scope project; else derived)."
    )
    app = StrictCharField(max_length=SLUG_MAX_LENGTH, required=False, help_text="The app's name (scope app).")
    cron_job = StrictCharField(
        max_length=SLUG_MAX_LENGTH, required=False, help_text="The cron job's name (scope cron_job)."
    )
    database = StrictCharField(
        max_length=SLUG_MAX_LENGTH, required=False, help_text="The database's name (scope database)."
    )
    metric = serializers.ChoiceField(choices=RuleMetric.choices)
    threshold = StrictFloatField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs


class RuleConfirmInput(serializers.Serializer):
    confirm = serializers.CharField(max_length=100, help_text="Repeat the rule's name to confirm deletion.")


class AlertRuleViewSet(TeamScopedCrudViewSet):
    """Alert rules: a condition on an app's metrics (error rate, latency, CPU, memory, restarts,
    uptime, health) or on the platform events of an app, a cron job, a database or a project, over a
    window.
    A rule fires once the condition has held for `for_seconds`, notifies its channels once, opens
    or joins its project's incident, and notifies once more when it resolves."""

    serializer_class = RuleOutput
    lookup_field = "name"
    lookup_url_kwarg = "rule"
    create_input = RuleCreateInput
    update_input = RuleUpdateInput
    delete_input = RuleConfirmInput
    capability_map: ClassVar = crud_capabilities(change=Capability.MANAGE_ALERTS)

    def base_queryset(self) -> models.QuerySet:
        return AlertRule.objects.select_related("project", "app", "cron_job", "database").prefetch_related("channels")

    def _channels(self, names: list[str], errors: dict[str, list[str]]) -> list[NotificationChannel]:
        names = list(dict.fromkeys(names))
        found = {c.name: c for c in self.ctx.restrict(NotificationChannel.objects.filter(name__in=names))}
        if missing := [name for name in names if name not in found]:
            errors["channels"] = [f"No such channel: {', '.join(missing)}."]
        return [found[name] for name in names if name in found]

    def _named(self, queryset: models.QuerySet, lookup: str, value: str | None) -> Any:
        if value is None:
            return None
        return self.ctx.restrict(queryset).filter(**{lookup: value}).first()

    def create_object(self, data: dict[str, Any]) -> AlertRule:
        errors: dict[str, list[str]] = {}
        references = {
            "project": self._named(Project.objects.all(), "slug", data.get("project")),
            "app": self._named(App.objects.all(), "name", data.get("app")),
            "cron_job": self._named(CronJob.objects.all(), "name", data.get("cron_job")),
            # A deleted database's name may be taken again: only the living ones answer to it.
            "database": self._named(
                Database.objects.exclude(status=DatabaseStatus.DELETED), "name", data.get("database")
            ),
        }
        for field, obj in references.items():
            if data.get(field) is not None and obj is None:
                errors[field] = [f"No such {field.replace('_', ' ')} in this team."]
        channels = self._channels(data.pop("channels", []), errors)
        if errors:
            raise ValidationFailed("Invalid alert rule.", fields=errors)
        return rules.rule_create(ctx=self.ctx, **{**data, **references, "channels": channels})

    def update_object(self, obj: AlertRule, data: dict[str, Any]) -> AlertRule:
        if "channels" in data:
            errors: dict[str, list[str]] = {}
            data["channels"] = self._channels(data["channels"], errors)
            if errors:
                raise ValidationFailed("Invalid alert rule.", fields=errors)
        return rules.rule_update(ctx=self.ctx, rule=obj, **data)

    def delete_object(self, obj: AlertRule, data: dict[str, Any]) -> None:
        rules.rule_delete(ctx=self.ctx, rule=obj, **data)


# --- incidents --------------------------------------------------------------------------------------
class IncidentAlertOutput(serializers.ModelSerializer):
    rule = serializers.CharField(source="rule_name")

    class Meta:
        model = IncidentAlert
        fields = ("rule", "value", "fired_at", "resolved_at")


class IncidentOutput(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    alerts = IncidentAlertOutput(many=True, read_only=True)

    class Meta:
        model = Incident
        fields = (
            "number", "title", "project", "severity", "status", "created_at", "acknowledged_at", "acknowledged_by",
            "resolved_at", "resolved_by", "postmortem", "alerts",
        )  # fmt: skip


class IncidentUpdateInput(serializers.Serializer):
    title = StrictCharField(max_length=incidents.TITLE_MAX_LENGTH, required=False)
    postmortem = StrictCharField(
        max_length=100_000,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text="The blameless post-mortem (Markdown).",
    )


class IncidentViewSet(TeamScopedCrudViewSet):
    """Incidents, newest first: opened by firing alert rules (later alerts of the same project join
    the open one), acknowledged and resolved by people, or resolved by themselves when every alert
    in them resolved. The timeline is the project's platform events around the incident."""

    serializer_class = IncidentOutput
    lookup_field = "number"
    lookup_url_kwarg = "incident"
    cursor_ordering = "-id"
    update_input = IncidentUpdateInput
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "retrieve": Capability.VIEW,
        "timeline": Capability.VIEW,
        "partial_update": Capability.MANAGE_ALERTS,
        "acknowledge": Capability.MANAGE_ALERTS,
        "resolve": Capability.MANAGE_ALERTS,
    }

    def base_queryset(self) -> models.QuerySet:
        queryset = Incident.objects.select_related("project").prefetch_related(
            Prefetch("alerts", queryset=IncidentAlert.objects.order_by("id"))
        )
        if self.action == "list" and (wanted := self.request.query_params.get("status")) is not None:
            if wanted not in IncidentStatus.values:
                raise ValidationFailed(
                    "Invalid status.", fields={"status": [f"One of: {', '.join(IncidentStatus.values)}."]}
                )
            queryset = queryset.filter(status=wanted)
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "status", OpenApiTypes.STR, enum=IncidentStatus.values, description="Only incidents in this status."
            )
        ]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_object(self) -> Any:
        number = str(self.kwargs["incident"])
        if not number.isdigit() or len(number) > 9:
            raise NotFound()
        return super().get_object()

    def update_object(self, obj: Incident, data: dict[str, Any]) -> Incident:
        return incidents.incident_update(ctx=self.ctx, incident=obj, **data)

    @extend_schema(request=None, responses=IncidentOutput)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.output(self.reread(incidents.incident_acknowledge(ctx=self.ctx, incident=self.object)))

    @extend_schema(request=None, responses=IncidentOutput)
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.output(self.reread(incidents.incident_resolve(ctx=self.ctx, incident=self.object)))

    @extend_schema(responses=PlatformEventOutput(many=True))
    @action(detail=True, methods=["get"])
    def timeline(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The project's platform events from a while before the incident opened until it resolved
        (or now), and every event about the incident itself, oldest first."""
        self.cursor_ordering = "id"
        page = self.paginate_queryset(incidents.incident_timeline(self.object))
        return self.get_paginated_response(PlatformEventOutput(page, many=True).data)
