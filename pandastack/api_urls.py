"""The REST API, version 1. Everything a team owns hangs under /api/v1/teams/{team}/."""

from django.urls import include, path

from apps.accounts.api import MeView
from apps.alerts.api import views as alerts
from apps.audit.api.views import AuditEventViewSet
from apps.cron.api import views as cron
from apps.deployments.api import views as deployments
from apps.events.api.views import PlatformEventViewSet
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


team_routes = [
    path(
        "",
        teams.TeamViewSet.as_view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
        name="team-detail",
    ),
    path("transfer/", teams.TeamViewSet.as_view({"post": "transfer"}), name="team-transfer"),
    path("leave/", teams.TeamViewSet.as_view({"post": "leave"}), name="team-leave"),
    path("members/", teams.MemberViewSet.as_view(LIST), name="member-list"),
    path("members/<str:user>/", teams.MemberViewSet.as_view(DETAIL), name="member-detail"),
    path("projects/", teams.ProjectViewSet.as_view(LIST), name="project-list"),
    path("projects/<str:project>/", teams.ProjectViewSet.as_view(DETAIL), name="project-detail"),
    path("projects/<str:project>/grants/", teams.GrantViewSet.as_view(LIST), name="grant-list"),
    path(
        "projects/<str:project>/grants/<str:grant>/",
        teams.GrantViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="grant-detail",
    ),
    path("groups/", teams.GroupViewSet.as_view(LIST), name="group-list"),
    path("groups/<str:group>/", teams.GroupViewSet.as_view(DETAIL), name="group-detail"),
    path("service-accounts/", teams.ServiceAccountViewSet.as_view(LIST), name="service-account-list"),
    path(
        "service-accounts/<str:service_account>/",
        teams.ServiceAccountViewSet.as_view(DETAIL),
        name="service-account-detail",
    ),
    path("tokens/", TokenViewSet.as_view(LIST), name="token-list"),
    path(
        "tokens/<str:token>/",
        TokenViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="token-detail",
    ),
    path("tokens/<str:token>/revoke/", TokenViewSet.as_view({"post": "revoke"}), name="token-revoke"),
    path("apps/", deployments.AppViewSet.as_view(LIST), name="app-list"),
    path("apps/<str:app>/", deployments.AppViewSet.as_view(DETAIL), name="app-detail"),
    *[
        path(f"apps/<str:app>/{verb}/", deployments.AppViewSet.as_view({"post": verb}), name=f"app-{verb}")
        for verb in ("scale", "restart", "stop", "start", "rollback")
    ],
    path("apps/<str:app>/logs/", deployments.AppViewSet.as_view({"get": "logs"}), name="app-logs"),
    path("apps/<str:app>/deployments/", deployments.DeploymentViewSet.as_view(LIST), name="deployment-list"),
    path(
        "apps/<str:app>/deployments/<str:deployment>/",
        deployments.DeploymentViewSet.as_view({"get": "retrieve"}),
        name="deployment-detail",
    ),
    path(
        "apps/<str:app>/deployments/<str:deployment>/events/",
        deployments.DeploymentViewSet.as_view({"get": "events"}),
        name="deployment-events",
    ),
    path("apps/<str:app>/grants/", deployments.AppGrantViewSet.as_view(LIST), name="app-grant-list"),
    path(
        "apps/<str:app>/grants/<str:grant>/",
        deployments.AppGrantViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="app-grant-detail",
    ),
    *variable_routes("", "team"),
    *variable_routes("projects/<str:project>/", "project"),
    *variable_routes("apps/<str:app>/", "app"),
    path("cron-jobs/", cron.CronJobViewSet.as_view(LIST), name="cron-job-list"),
    path("cron-jobs/<str:cron_job>/", cron.CronJobViewSet.as_view(DETAIL), name="cron-job-detail"),
    *[
        path(f"cron-jobs/<str:cron_job>/{verb}/", cron.CronJobViewSet.as_view({"post": verb}), name=f"cron-job-{verb}")
        for verb in ("run", "suspend", "resume")
    ],
    path("cron-jobs/<str:cron_job>/runs/", cron.CronRunViewSet.as_view({"get": "list"}), name="cron-run-list"),
    path(
        "cron-jobs/<str:cron_job>/runs/<str:run>/",
        cron.CronRunViewSet.as_view({"get": "retrieve"}),
        name="cron-run-detail",
    ),
    path(
        "cron-jobs/<str:cron_job>/runs/<str:run>/logs/",
        cron.CronRunViewSet.as_view({"get": "logs"}),
        name="cron-run-logs",
    ),
    path("notification-channels/", alerts.NotificationChannelViewSet.as_view(LIST), name="channel-list"),
    path(
        "notification-channels/<str:channel>/", alerts.NotificationChannelViewSet.as_view(DETAIL), name="channel-detail"
    ),
    path(
        "notification-channels/<str:channel>/test/",
        alerts.NotificationChannelViewSet.as_view({"post": "test"}),
        name="channel-test",
    ),
    path(
        "notification-channels/<str:channel>/deliveries/",
        alerts.DeliveryViewSet.as_view({"get": "list"}),
        name="channel-delivery-list",
    ),
    path("events/", PlatformEventViewSet.as_view({"get": "list"}), name="platform-event-list"),
    path("audit-events/", AuditEventViewSet.as_view({"get": "list"}), name="audit-event-list"),
]

urlpatterns = [
    path("me/", MeView.as_view(), name="me"),
    path("teams/", teams.TeamListView.as_view(), name="team-list"),
    path("teams/<str:team>/", include(team_routes)),
]
