"""The REST API, version 1. Everything a team owns hangs under /api/v1/teams/{team}/."""

from django.urls import include, path

from apps.accounts.api import MeView
from apps.alerts.api import views as alerts
from apps.audit.api.views import AuditEventViewSet
from apps.cron.api import views as cron
from apps.databases.api import views as databases
from apps.deployments.api import views as deployments
from apps.events.api.views import PlatformEventViewSet
from apps.monitoring.api.views import AppMetricsViewSet
from apps.registries.api.views import RegistryCredentialViewSet
from apps.secrets.api.views import VariableViewSet
from apps.teams.api import views as teams
from apps.tokens.api.views import TokenViewSet

LIST = {"get": "list", "post": "create"}
DETAIL = {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}


def variable_routes(prefix: str, name: str) -> list:
    """The same variables API at the team, project and app level."""
    return [
        path(f"{prefix}variables/", VariableViewSet.as_view(LIST), name=f"{name}-variable-list"),
        path(f"{prefix}variables/unset/", VariableViewSet.as_view({"post": "unset"}), name=f"{name}-variable-unset"),
        path(
            f"{prefix}variables/<str:variable>/reveal/",
            VariableViewSet.as_view({"post": "reveal"}),
            name=f"{name}-variable-reveal",
        ),
        path(
            f"{prefix}variables/<str:variable>/versions/",
            VariableViewSet.as_view({"get": "versions"}),
            name=f"{name}-variable-versions",
        ),
    ]


def resource_routes(prefix: str, kwarg: str, viewset: type, name: str, detail: dict | None = None) -> list:
    """`<prefix>/` (list, create) and `<prefix>/<kwarg>/` (retrieve, update, delete by default)."""
    return [
        path(f"{prefix}/", viewset.as_view(LIST), name=f"{name}-list"),
        path(f"{prefix}/<str:{kwarg}>/", viewset.as_view(detail or DETAIL), name=f"{name}-detail"),
    ]


def action_routes(prefix: str, viewset: type, name: str, actions: dict[str, tuple[str, ...]]) -> list:
    """`<prefix>/<action>/` for each action, by HTTP method (e.g. POST apps/<app>/scale/)."""
    return [
        path(
            f"{prefix}/{action}/" if prefix else f"{action}/",
            viewset.as_view({method: action}),
            name=f"{name}-{action}",
        )
        for method, names in actions.items()
        for action in names
    ]


READ_DELETE = {"get": "retrieve", "delete": "destroy"}
APP = "apps/<str:app>"
CRON_JOB = "cron-jobs/<str:cron_job>"
CHANNEL = "notification-channels/<str:channel>"
INCIDENT = "incidents/<str:incident>"
DATABASE = "databases/<str:database>"
BACKUP = f"{DATABASE}/backups/<str:backup>"

team_routes = [
    path("", teams.TeamViewSet.as_view(DETAIL), name="team-detail"),
    *action_routes("", teams.TeamViewSet, "team", {"post": ("transfer", "leave")}),
    *resource_routes("members", "user", teams.MemberViewSet, "member"),
    *resource_routes("projects", "project", teams.ProjectViewSet, "project"),
    *resource_routes("projects/<str:project>/grants", "grant", teams.GrantViewSet, "grant", READ_DELETE),
    *resource_routes("groups", "group", teams.GroupViewSet, "group"),
    *resource_routes("service-accounts", "service_account", teams.ServiceAccountViewSet, "service-account"),
    *resource_routes("tokens", "token", TokenViewSet, "token", READ_DELETE),
    *action_routes("tokens/<str:token>", TokenViewSet, "token", {"post": ("revoke",)}),
    *resource_routes("apps", "app", deployments.AppViewSet, "app"),
    *action_routes(
        APP,
        deployments.AppViewSet,
        "app",
        {"post": ("scale", "restart", "stop", "start", "rollback"), "get": ("logs",)},
    ),
    *resource_routes(
        f"{APP}/deployments", "deployment", deployments.DeploymentViewSet, "deployment", {"get": "retrieve"}
    ),
    *action_routes(
        f"{APP}/deployments/<str:deployment>",
        deployments.DeploymentViewSet,
        "deployment",
        {"get": ("events",), "post": ("cancel",)},
    ),
    *resource_routes(f"{APP}/grants", "grant", deployments.AppGrantViewSet, "app-grant", READ_DELETE),
    path(f"{APP}/metrics/", AppMetricsViewSet.as_view({"get": "retrieve"}), name="app-metrics"),
    *variable_routes("", "team"),
    *variable_routes("projects/<str:project>/", "project"),
    *variable_routes(f"{APP}/", "app"),
    *resource_routes("registry-credentials", "registry", RegistryCredentialViewSet, "registry-credential"),
    *resource_routes("cron-jobs", "cron_job", cron.CronJobViewSet, "cron-job"),
    *action_routes(CRON_JOB, cron.CronJobViewSet, "cron-job", {"post": ("run", "suspend", "resume")}),
    path(f"{CRON_JOB}/runs/", cron.CronRunViewSet.as_view({"get": "list"}), name="cron-run-list"),
    path(f"{CRON_JOB}/runs/<str:run>/", cron.CronRunViewSet.as_view({"get": "retrieve"}), name="cron-run-detail"),
    *action_routes(f"{CRON_JOB}/runs/<str:run>", cron.CronRunViewSet, "cron-run", {"get": ("logs",)}),
    *resource_routes("notification-channels", "channel", alerts.NotificationChannelViewSet, "channel"),
    *action_routes(CHANNEL, alerts.NotificationChannelViewSet, "channel", {"post": ("test", "verify")}),
    path(
        f"{CHANNEL}/resend-verification/",
        alerts.NotificationChannelViewSet.as_view({"post": "resend_verification"}),
        name="channel-resend-verification",
    ),
    path(f"{CHANNEL}/deliveries/", alerts.DeliveryViewSet.as_view({"get": "list"}), name="channel-delivery-list"),
    *resource_routes("alert-rules", "rule", alerts.AlertRuleViewSet, "alert-rule"),
    # Incidents are opened by alert rules, never by hand: no POST on the list.
    path("incidents/", alerts.IncidentViewSet.as_view({"get": "list"}), name="incident-list"),
    path(
        f"{INCIDENT}/",
        alerts.IncidentViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="incident-detail",
    ),
    *action_routes(
        INCIDENT, alerts.IncidentViewSet, "incident", {"post": ("acknowledge", "resolve"), "get": ("timeline",)}
    ),
    *resource_routes("databases", "database", databases.DatabaseViewSet, "database", READ_DELETE),
    *action_routes(DATABASE, databases.DatabaseViewSet, "database", {"post": ("reveal", "rotate", "undelete")}),
    *resource_routes(
        f"{DATABASE}/attachments", "app", databases.AttachmentViewSet, "database-attachment", {"delete": "destroy"}
    ),
    # POST on the backups list captures one (202); a backup is never changed or deleted by hand.
    *resource_routes(f"{DATABASE}/backups", "backup", databases.BackupViewSet, "backup", {"get": "retrieve"}),
    *action_routes(BACKUP, databases.BackupViewSet, "backup", {"post": ("restore",), "get": ("download",)}),
    path("events/", PlatformEventViewSet.as_view({"get": "list"}), name="platform-event-list"),
    path("audit-events/", AuditEventViewSet.as_view({"get": "list"}), name="audit-event-list"),
]

urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    path("teams/", teams.TeamListView.as_view(), name="team-list"),
    path("teams/<str:team>/", include(team_routes)),
]
