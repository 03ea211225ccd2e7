from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.alerts import incidents, rules
from apps.alerts.models import AlertRule, Delivery, Incident, IncidentAlert, IncidentStatus, NotificationChannel
from apps.core.access import TeamContext
from apps.core.actors import Actor
from apps.teams.models import Membership, Team


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "kind", "enabled", "created_at")
    list_filter = ("kind", "enabled")
    list_select_related = ("team",)
    exclude = ("signing_secret_encrypted",)
    # Channels are made through the API (validated targets, a signing secret shown once); operators
    # may only switch one off.
    readonly_fields = ("team", "name", "kind", "target")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "channel", "trigger", "status", "attempts", "response_status", "created_at")
    list_filter = ("status",)
    list_select_related = ("channel",)
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


def _operator_context(request: HttpRequest, team: Team) -> TeamContext:
    """Operators act in a team as its owner would; the audit log says it was them, through the admin."""
    actor = Actor(user=request.user, ip=request.META.get("REMOTE_ADDR"), via="admin")
    return TeamContext(actor=actor, membership=Membership(team=team, user=request.user, role="owner"))


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "project", "scope", "metric", "event_kind", "state", "enabled", "last_evaluated_at")
    list_filter = ("state", "enabled", "scope", "metric", "severity")
    list_select_related = ("team", "project")
    search_fields = ("name", "team__slug")
    # Rules are made and changed through the API (validated, their state machine kept whole);
    # operators may only switch one off, through the service.
    readonly_fields = [
        *(f.name for f in AlertRule._meta.fields if f.name not in ("id", "created_at", "updated_at")),
        "channels",
    ]
    actions = ["disable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Disable the selected rules (a firing one is closed in its incident)")
    def disable(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        done = 0
        for rule in queryset.select_related("team").filter(enabled=True):
            rules.rule_update(ctx=_operator_context(request, rule.team), rule=rule, enabled=False)
            done += 1
        self.message_user(request, f"Disabled {done} rule(s).", messages.SUCCESS)


class IncidentAlertInline(admin.TabularInline):
    model = IncidentAlert
    extra = 0
    fields = ("rule_name", "value", "fired_at", "resolved_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("number", "team", "project", "title", "severity", "status", "created_at", "resolved_at")
    list_filter = ("status", "severity")
    list_select_related = ("team", "project")
    search_fields = ("title", "team__slug")
    readonly_fields = [f.name for f in Incident._meta.fields if f.name not in ("id", "created_at", "updated_at")]
    inlines = [IncidentAlertInline]
    actions = ["resolve"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Resolve the selected incidents")
    def resolve(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        done = 0
        for incident in queryset.select_related("team").exclude(status=IncidentStatus.RESOLVED):
            incidents.incident_resolve(ctx=_operator_context(request, incident.team), incident=incident)
            done += 1
        self.message_user(request, f"Resolved {done} incident(s).", messages.SUCCESS)
