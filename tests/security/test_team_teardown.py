"""Deleting a project or a team that holds apps, cron jobs and databases (issue 11, item 11): a 2xx,
never a 500 (before the fix: ProtectedError, because apps, cron jobs and databases protect their
project), with everything inside torn down through its own service — apps' containers and routes
handed to the teardown task, cron jobs gone, databases really dropped from the machine's MariaDB
and PostgreSQL by the worker's part — and the audit trail kept after the team is gone.

The Celery worker does not run here: the services enqueue on commit; the test records what the
app teardown would be given and runs the teams' own deletion task in-process, as a worker would,
against the real database servers."""

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pymysql
import pytest

from apps.audit.models import AuditEvent
from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.cron.models import CronJob
from apps.databases import services as db_services
from apps.databases import tasks as db_tasks
from apps.databases.models import Database, DatabaseServer
from apps.databases.provisioners.base import provisioner_for
from apps.deployments import tasks as deployment_tasks
from apps.deployments.models import App, Deployment, DeploymentStatus
from apps.teams.models import Membership, Project, Team
from apps.teams.tasks import deletion_finish
from apps.tokens.models import ApiToken
from tests.conftest import TeamWorld, assert_error, make_token, session_client, token_client

MARIADB_ADMIN_URL = os.environ.get("PANDASTACK_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/")
PG_ADMIN_URL = os.environ.get("PANDASTACK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
TEAM = "/api/v1/teams/alpha"


@pytest.fixture
def servers(db: Any) -> Iterator[dict[str, DatabaseServer]]:
    registered = {
        "mysql": db_services.server_register(engine="mysql", admin_url=MARIADB_ADMIN_URL, name="mariadb-teardown"),
        "postgres": db_services.server_register(engine="postgres", admin_url=PG_ADMIN_URL, name="pg-teardown"),
    }
    yield registered


@pytest.fixture
def made(servers: dict[str, DatabaseServer]) -> Iterator[list[tuple[str, Any]]]:
    """(engine, spec) of every database a test provisioned: dropped at the end whatever happened."""
    created: list[tuple[str, Any]] = []
    yield created
    for engine, spec in created:
        with contextlib.suppress(Exception):
            admin = MARIADB_ADMIN_URL if engine == "mysql" else PG_ADMIN_URL
            provisioner_for(engine, admin).drop(spec)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What the services hand to Celery (no worker runs here): recorded instead of sent."""
    calls: dict[str, list[Any]] = {"app_teardown": [], "deletion_finish": [], "other": []}
    # Services publish with apply_async(args, task_id=…) after the commit (apps.core.broker.enqueue).
    monkeypatch.setattr(
        deployment_tasks.app_teardown, "apply_async", lambda args, **_: calls["app_teardown"].append(args[0])
    )
    monkeypatch.setattr(deletion_finish, "apply_async", lambda args, **_: calls["deletion_finish"].append(tuple(args)))
    for task in (deployment_tasks.router_sync, db_tasks.database_lock, db_tasks.database_deprovision):
        monkeypatch.setattr(
            task, "apply_async", lambda args, _t=task, **_: calls["other"].append((_t.name, tuple(args)))
        )
    return calls


def _ctx(world: TeamWorld) -> Any:
    return resolve_team(Actor.system("test", user=world.user("owner")), world.team.slug)


def _fill(world: TeamWorld, project: Project, engine: str, made: list) -> dict[str, Any]:
    """An app with a live deployment row, a cron job, and a real database attached to the app."""
    app = App.objects.create(team=world.team, project=project, name=f"{project.slug}-web")
    Deployment.objects.create(team=world.team, app=app, number=1, image="registry.local/web:1",
                              status=DeploymentStatus.LIVE)  # fmt: skip
    job = CronJob.objects.create(team=world.team, project=project, app=app, name=f"{project.slug}-nightly",
                                 command=["true"], schedule="@daily")  # fmt: skip
    database = db_services.database_create(ctx=_ctx(world), project=project, name=f"{project.slug}-db", engine=engine)
    database.refresh_from_db()
    made.append((engine, db_services.spec_for(database)))
    db_tasks.database_provision(database.pk)  # what the worker does: the database exists on the server now
    database.refresh_from_db()
    assert database.status == "available", database.status_reason
    db_services.database_attach(ctx=_ctx(world), database=database, app=app)
    assert _exists_on_server(engine, db_services.spec_for(database))
    return {"app": app, "job": job, "database": database, "spec": db_services.spec_for(database)}


def _exists_on_server(engine: str, spec: Any) -> bool:
    """Whether the tenant's database or its user is still on the server (asked as its administrator)."""
    if engine == "mysql":
        with contextlib.closing(pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", [spec.db_name])
            schemas = cursor.fetchone()[0]
            cursor.execute("SELECT COUNT(*) FROM mysql.user WHERE User = %s", [spec.username])
            return bool(schemas or cursor.fetchone()[0])
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        databases = conn.execute("SELECT COUNT(*) FROM pg_database WHERE datname = %s", [spec.db_name]).fetchone()[0]
        roles = conn.execute("SELECT COUNT(*) FROM pg_roles WHERE rolname = %s", [spec.username]).fetchone()[0]
        return bool(databases or roles)


@pytest.fixture
def world(team_a: TeamWorld, servers: Any) -> TeamWorld:
    type(team_a.team.plan).objects.filter(pk=team_a.team.plan_id).update(max_databases=5, max_apps=5, max_cron_jobs=5)
    team_a.team.refresh_from_db()
    return team_a


def test_a_project_with_apps_cron_jobs_and_a_database_can_be_deleted(
    world, made, queued, django_capture_on_commit_callbacks
):
    shop = Project.objects.create(team=world.team, slug="shop", name="Shop")
    inside = _fill(world, shop, "mysql", made)

    with django_capture_on_commit_callbacks(execute=True):
        response = session_client(world.user("owner")).delete(f"{TEAM}/projects/shop/", {"confirm": "shop"})

    assert response.status_code == 202, response.content
    assert response.json() == {"apps": ["shop-web"], "cron_jobs": ["shop-nightly"], "databases": ["shop-db"],
                               "finished": False}  # fmt: skip
    assert queued["app_teardown"] == [inside["app"].pk]  # containers and route: the worker's job
    assert queued["deletion_finish"] == [(world.team.pk, shop.pk)]
    assert not App.objects.filter(pk=inside["app"].pk).exists()
    assert not Deployment.objects.filter(app_id=inside["app"].pk).exists()
    assert not CronJob.objects.filter(pk=inside["job"].pk).exists()

    deletion_finish(world.team.pk, shop.pk)  # the worker's part, against the real MariaDB

    assert not _exists_on_server("mysql", inside["spec"])
    assert not Database.objects.filter(pk=inside["database"].pk).exists()
    assert not Project.objects.filter(pk=shop.pk).exists()
    assert_error(session_client(world.user("owner")).get(f"{TEAM}/projects/shop/"), 404, "not_found")
    assert Project.objects.filter(pk=world.project.pk).exists()  # the team's other project is untouched
    actions = set(AuditEvent.objects.filter(team=world.team).values_list("action", flat=True))
    assert {"project.delete", "app.delete", "cron.delete", "database.delete", "database.purge"} <= actions


def test_a_team_with_apps_cron_jobs_and_databases_can_be_deleted_and_its_audit_trail_stays(
    world, made, queued, django_capture_on_commit_callbacks
):
    team_id = world.team.pk
    shop = Project.objects.create(team=world.team, slug="shop", name="Shop")
    in_web = _fill(world, world.project, "postgres", made)
    in_shop = _fill(world, shop, "mysql", made)
    _, raw = make_token(world.team, world.user("developer"))

    with django_capture_on_commit_callbacks(execute=True):
        response = session_client(world.user("owner")).delete(f"{TEAM}/", {"confirm": "alpha"})

    assert response.status_code == 202, response.content
    assert sorted(response.json()["databases"]) == ["shop-db", "web-db"]
    assert sorted(queued["app_teardown"]) == sorted([in_web["app"].pk, in_shop["app"].pk])
    # Out of everyone's reach at once, although a worker still purges its databases.
    assert_error(session_client(world.user("owner")).get(f"{TEAM}/"), 404, "not_found")
    assert_error(token_client(raw).get(f"{TEAM}/projects/"), 401, "not_authenticated")
    assert not Membership.objects.filter(team_id=team_id).exists()
    assert not App.objects.filter(team_id=team_id).exists()
    assert not CronJob.objects.filter(team_id=team_id).exists()
    assert queued["deletion_finish"] == [(team_id, None)]

    deletion_finish(team_id, None)

    assert not Team.objects.filter(pk=team_id).exists()
    assert not _exists_on_server("postgres", in_web["spec"])
    assert not _exists_on_server("mysql", in_shop["spec"])
    assert not ApiToken.objects.filter(team_id=team_id).exists()
    trail = AuditEvent.objects.filter(team_ref=team_id)
    assert trail.filter(team=None, team_slug="alpha").count() == trail.count()
    assert {"team.create", "team.delete", "app.delete", "cron.delete", "database.delete", "database.purge"} <= set(
        trail.values_list("action", flat=True)
    )
    event = trail.get(action="team.delete")
    assert sorted(event.data["databases"]) == ["shop-db", "web-db"]


def test_a_team_with_apps_and_cron_jobs_but_no_database_is_gone_at_once(
    world, queued, django_capture_on_commit_callbacks
):
    team_id = world.team.pk
    app = App.objects.create(team=world.team, project=world.project, name="api")
    Deployment.objects.create(team=world.team, app=app, number=1, image="registry.local/api:1")
    CronJob.objects.create(team=world.team, project=world.project, name="sweep", image="registry.local/sweep:1",
                           command=["true"], schedule="@hourly")  # fmt: skip

    with django_capture_on_commit_callbacks(execute=True):
        response = session_client(world.user("owner")).delete(f"{TEAM}/", {"confirm": "alpha"})

    assert response.status_code == 204, response.content
    assert not Team.objects.filter(pk=team_id).exists()
    assert queued["app_teardown"] == [app.pk]
    assert AuditEvent.objects.filter(team_ref=team_id, action="team.delete", team=None).exists()


def test_deleting_a_project_takes_the_right_to_delete_what_is_inside(world, made, queued):
    """A developer given `delete` on a project cannot use it to drop the project's database, which
    their role may not do: refused, and nothing is deleted."""
    inside = _fill(world, world.project, "mysql", made)
    owner = session_client(world.user("owner"))
    grant = {"capability": "delete", "user": world.user("developer").pk}
    assert owner.post(f"{TEAM}/projects/web/grants/", grant).status_code == 201

    response = session_client(world.user("developer")).delete(f"{TEAM}/projects/web/", {"confirm": "web"})

    assert_error(response, 403, "permission_denied")
    assert Database.objects.get(pk=inside["database"].pk).status == "available"
    assert App.objects.filter(pk=inside["app"].pk).exists()
    assert _exists_on_server("mysql", inside["spec"])


def test_a_database_still_being_provisioned_makes_the_deletion_a_409_with_nothing_deleted(world, queued):
    app = App.objects.create(team=world.team, project=world.project, name="api")
    Database.objects.create(team=world.team, project=world.project, name="orders", engine="mysql",
                            db_name="t_orders", username="t_orders", password_encrypted="x")  # fmt: skip

    response = session_client(world.user("owner")).delete(f"{TEAM}/", {"confirm": "alpha"})

    assert_error(response, 409)
    assert Team.objects.filter(pk=world.team.pk).exists()
    assert App.objects.filter(pk=app.pk).exists()
    assert Membership.objects.filter(team=world.team).count() == len(world.users)
    assert queued["app_teardown"] == []
    assert not AuditEvent.objects.filter(action__in=["team.delete", "app.delete"]).exists()
