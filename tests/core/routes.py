"""The REST API's routes, read from the URL conf, so tests cover every endpoint that exists (a new
one shows up here without anybody listing it), and `one_of_everything`: a team with a real object
behind every URL parameter, and the values naming them."""

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from apps.alerts.models import Delivery, DeliveryStatus, Incident, IncidentAlert
from apps.alerts.rules import rule_create
from apps.alerts.services import channel_create
from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.cron import services as cron_services
from apps.cron.models import CronRun, RunStatus, Trigger
from apps.databases import services as database_services
from apps.databases.backups import backup_storage
from apps.databases.models import Backup, BackupStatus, Database, DatabaseServer, DatabaseStatus
from apps.deployments import services as deployment_services
from apps.deployments.models import Container, DeploymentStatus
from apps.events.services import event_emit
from apps.registries.services import registry_credential_create
from apps.secrets import crypto
from apps.secrets.models import Level
from apps.secrets.services import Scope, variables_set
from apps.teams.services import grant_create, grant_id, group_create, service_account_create
from pandastack import api_urls
from tests.conftest import TeamWorld, make_token

API_PREFIX = "/api/v1/"
VARIABLE = "ALPHA_VAR"  # set at the team, project and app level by `one_of_everything`
CRON_JOB = "alpha-cron"  # the cron job `one_of_everything` makes, with an image of its own
CRON_IMAGE = "registry.local/cron:1"
REGISTRY = "registry.example.com:5000"  # a registry credential of the team
CHANNEL = "alpha-hook"  # the webhook notification channel `one_of_everything` makes
CHANNEL_TARGET = "http://127.0.0.1:9/hook"  # the discard port: nothing is ever sent there anyway
RULE = "alpha-errors"  # the alert rule `one_of_everything` makes, on the app "api"
INCIDENT = 1  # the incident `one_of_everything` opens
DATABASE = "alpha-db"  # the database `one_of_everything` makes (available, attached to "api", backup #1)
BACKUP = 1
# Shared servers of the guard tests are recorded as `registerserver` would leave them, without
# connecting: no provisioning runs here (tasks are enqueued on commit, and tests never commit).
GUARD_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres"
_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")


def guard_server(engine: str = "postgres") -> DatabaseServer:
    """A shared server of `engine` for the guard tests' databases (made on first use)."""
    server, _ = DatabaseServer.objects.get_or_create(
        name=f"{engine}-guard",
        defaults={"engine": engine, "admin_url_encrypted": crypto.encrypt(GUARD_SERVER_URL), "version": "16.0"},
    )
    return server


def available_database(ctx: Any, project: Any, name: str) -> Database:
    """A PostgreSQL database made through the service on the guard server, then marked available
    as the provisioning worker would."""
    guard_server()
    database = database_services.database_create(ctx=ctx, project=project, name=name, engine="postgres")
    Database.objects.filter(pk=database.pk).update(
        status=DatabaseStatus.AVAILABLE, size_bytes=8192, connections=0, usage_at=timezone.now()
    )
    database.refresh_from_db()
    return database


def stored_backup(database: Database, number: int = BACKUP, content: bytes = b"-- a dump\n") -> Backup:
    """A succeeded backup of `database` with its file in the backup storage, as the worker leaves one."""
    name = backup_storage().save(f"{database.team.slug}/{database.name}/{number}-guard.dump", ContentFile(content))
    now = timezone.now()
    return Backup.objects.create(
        team=database.team,
        database=database,
        number=number,
        status=BackupStatus.SUCCEEDED,
        file_name=name,
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        started_at=now,
        finished_at=now,
    )


@dataclass(frozen=True)
class Route:
    name: str
    template: str  # e.g. /api/v1/teams/<str:team>/members/<str:user>/
    methods: tuple[str, ...]  # lower-case HTTP methods the route answers (HEAD and OPTIONS aside)

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.template)

    @property
    def openapi_path(self) -> str:
        return _PARAM.sub(r"{\1}", self.template)

    @property
    def is_list(self) -> bool:
        """GET answers a cursor page (a list action, or another action documented as one, such as a
        deployment's events)."""
        return self.openapi_path in _paginated_paths()

    def url(self, **values: Any) -> str:
        """The path with its parameters filled in. A parameter that names different things under
        different parents (`grant` is a project grant under projects/<project>/ and an app grant
        under apps/<app>/) may be given per parent: grant={"project": "user-3", "app": "group-7"}."""
        params = self.params

        def fill(match: re.Match) -> str:
            name = match.group(1)
            value = values[name]
            if isinstance(value, dict):
                value = value[params[params.index(name) - 1]]
            return str(value)

        return _PARAM.sub(fill, self.template)


@cache
def _paginated_paths() -> frozenset[str]:
    """OpenAPI paths whose GET answers a paginated list, as the published schema documents them."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return frozenset(
        path
        for path, operations in schema["paths"].items()
        if "/Paginated" in str(operations.get("get", {}).get("responses", {}).get("200", {}))
    )


def _methods(callback: Any) -> tuple[str, ...]:
    actions = getattr(callback, "actions", None)
    if actions is not None:  # a viewset route: the methods it maps
        return tuple(m for m in actions if m not in ("head", "options"))
    view_class = callback.view_class
    return tuple(m for m in view_class.http_method_names if m not in ("head", "options") and hasattr(view_class, m))


def _walk(patterns: list[Any], prefix: str) -> Iterator[Route]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield Route(pattern.name, prefix + str(pattern.pattern), _methods(pattern.callback))


def api_routes() -> list[Route]:
    return list(_walk(api_urls.urlpatterns, API_PREFIX))


def team_routes() -> list[Route]:
    """The routes under /api/v1/teams/{team}/."""
    return [route for route in api_routes() if "team" in route.params]


def one_of_everything(world: TeamWorld) -> dict[str, Any]:
    """Give `world`'s team one of everything a team route can name: a group "ops", a service
    account "ci", a token, a project grant, an app "api" with a live deployment #1 (an event and a
    container), an app grant, a plain variable ALPHA_VAR at each level (team, project "web", app
    "api"), a cron job "alpha-cron" with an image of its own and a finished run, a webhook
    notification channel "alpha-hook" with one delivered notification, an alert rule "alpha-errors"
    firing in incident #1 (with its events), an available database "alpha-db" attached to "api" with
    a succeeded backup #1 (its file stored), a registry credential for "registry.example.com:5000";
    return the URL parameter values naming them. No Celery
    task runs: the services enqueue on commit, and the test's transaction never commits."""
    ctx = resolve_team(Actor(user=world.user("owner"), via="test"), world.team.slug)
    group_create(ctx=ctx, slug="ops", name="Ops", members=[])
    service_account_create(ctx=ctx, slug="ci", role="developer")
    token, _ = make_token(world.team, world.user("developer"))
    viewer = world.user("viewer").pk
    project_grant, _ = grant_create(ctx=ctx, obj=world.project, capability="deploy", user_id=viewer, group_slug=None)
    app = deployment_services.app_create(ctx=ctx, project=world.project, name="api")
    deployment = deployment_services.deployment_create(ctx=ctx, app=app, image="registry.local/api:1")
    deployment.status = DeploymentStatus.LIVE
    deployment.save(update_fields=["status"])
    app.live_deployment = deployment
    app.save(update_fields=["live_deployment"])
    Container.objects.create(
        team=world.team, app=app, deployment=deployment, replica=1, name=f"ps-{world.team.slug}-api-1-1"
    )
    app_grant, _ = grant_create(ctx=ctx, obj=app, capability="view_logs", user_id=None, group_slug="ops")
    for scope in (Scope(Level.TEAM), Scope(Level.PROJECT, project=world.project), Scope(Level.APP, app=app)):
        variables_set(ctx=ctx, scope=scope, values={VARIABLE: f"{scope.level} value"}, restart=False)
    job = cron_services.cron_job_create(
        ctx=ctx, project=world.project, name=CRON_JOB, image=CRON_IMAGE, command=["true"], schedule="@daily"
    )
    # Runs are the scheduler's to make; this one has finished (its logs are its stored tail).
    now = timezone.now()
    run = CronRun.objects.create(
        team=world.team,
        job=job,
        trigger=Trigger.MANUAL,
        status=RunStatus.SUCCEEDED,
        exit_code=0,
        log_tail="done",
        started_at=now,
        finished_at=now,
    )
    channel, _ = channel_create(ctx=ctx, name=CHANNEL, kind="webhook", target=CHANNEL_TARGET)
    # Deliveries are the worker's to send; this one went out.
    Delivery.objects.create(
        team=world.team,
        channel=channel,
        subject="Test notification",
        payload={"kind": "test"},
        status=DeliveryStatus.DELIVERED,
        attempts=1,
        response_status=204,
        delivered_at=now,
    )
    rule = rule_create(ctx=ctx, name=RULE, scope="app", app=app, metric="error_rate", threshold=5, channels=[channel])
    # Incidents are the evaluator's to open; this one is open, its rule firing.
    incident = Incident.objects.create(team=world.team, project=world.project, number=INCIDENT, title="Errors on api")
    IncidentAlert.objects.create(incident=incident, rule=rule, rule_name=rule.name, value=12.5, fired_at=now)
    event_emit(team=world.team, kind="incident.opened", subject=incident, message="Incident #1 opened")
    registry_credential_create(ctx=ctx, registry=REGISTRY, username="ci", password="registry-password")
    database = available_database(ctx, world.project, DATABASE)
    database_services.database_attach(ctx=ctx, database=database, app=app)
    stored_backup(database)
    return {
        "team": world.team.slug,
        "user": viewer,
        "project": world.project.slug,
        "group": "ops",
        "service_account": "ci",
        "token": token.pk,
        "app": app.name,
        "deployment": deployment.number,
        # Grant ids count per table: a project grant and an app grant are named under their parent.
        "grant": {"project": grant_id(project_grant), "app": grant_id(app_grant)},
        "variable": VARIABLE,
        "cron_job": CRON_JOB,
        "run": run.pk,
        "channel": CHANNEL,
        "registry": REGISTRY,
        "rule": RULE,
        "incident": INCIDENT,
        "database": DATABASE,
        "backup": BACKUP,
    }
