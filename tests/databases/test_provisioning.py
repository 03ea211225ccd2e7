"""Provisioning on real servers (the shared placement): each engine's database and user exist,
the issued credentials work and a wrong password is refused, tenants cannot reach each other,
rotation refuses the old password, attachment gives apps the URL, deletion leaves nothing."""

import contextlib
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psycopg
import pymysql
import pytest
import redis
from django.utils import timezone

from apps.databases import services, tasks
from apps.databases.models import Database, DatabaseAttachment
from apps.deployments.models import App
from apps.secrets.selectors import environment_from_versions, version_ids_for_app
from tests.conftest import make_team
from tests.support.database_fixtures import ctx_of

ROOT = Path(__file__).resolve().parent.parent.parent


def unique(prefix: str = "db") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def made(servers):
    """Databases made by a test; dropped from their servers at teardown whatever happened."""
    created: list[Database] = []
    yield created
    for database in created:
        database.refresh_from_db()
        with contextlib.suppress(Exception):  # best effort cleanup
            services.provisioner_of(database).drop(services.spec_for(database))


def provision(world, engine: str, made: list, name: str | None = None) -> Database:
    database = services.database_create(ctx=ctx_of(world), project=world.project, name=name or unique(), engine=engine)
    made.append(database)
    tasks.database_provision(database.pk)
    database.refresh_from_db()
    assert database.status == "available", database.status_reason
    return database


def credentials(database: Database, **override) -> dict:
    return {**services.database_reveal(ctx=ctx_of_team(database), database=database), **override}


def ctx_of_team(database: Database):
    from apps.teams.models import Membership

    owner = Membership.objects.filter(team=database.team, role="owner").select_related("user").first().user
    from apps.core.access import resolve_team
    from apps.core.actors import Actor

    return resolve_team(Actor.system("test", user=owner), database.team.slug)


# --- connecting as the tenant ------------------------------------------------------------------------
def pg_connect(c: dict, dbname: str | None = None) -> psycopg.Connection:
    return psycopg.connect(host=c["host"], port=c["port"], user=c["username"], password=c["password"],
                           dbname=dbname or c["database"], connect_timeout=5, autocommit=True)  # fmt: skip


def mysql_connect(c: dict, database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host=c["host"], port=c["port"], user=c["username"], password=c["password"],
                           database=database or c["database"], connect_timeout=5, autocommit=True)  # fmt: skip


def redis_connect(c: dict) -> redis.Redis:
    return redis.Redis(host=c["host"], port=c["port"], username=c["username"], password=c["password"])


def test_postgres_database_works_with_its_credentials_only(team_a, made):
    database = provision(team_a, "postgres", made)
    c = credentials(database)
    assert c["url"] == f"postgres://{c['username']}:{c['password']}@127.0.0.1:{c['port']}/{c['database']}"
    with pg_connect(c) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('hello')")
        assert conn.execute("SELECT body FROM notes").fetchone() == ("hello",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        pg_connect({**c, "password": "wrong"})
    with pg_connect(c) as conn:  # an ordinary user: no superuser, no role or database creation
        assert conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone() == (False, False, False)


def test_mysql_database_works_with_its_credentials_only(team_a, made):
    database = provision(team_a, "mysql", made)
    c = credentials(database)
    with mysql_connect(c) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE notes (body TEXT)")
        cursor.execute("INSERT INTO notes VALUES ('hello')")
        cursor.execute("SELECT body FROM notes")
        assert cursor.fetchone() == ("hello",)
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        mysql_connect({**c, "password": "wrong"})
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        mysql_connect(c, database="mysql")


def test_redis_user_is_held_to_its_prefix_and_safe_commands(team_a, made):
    database = provision(team_a, "redis", made)
    c = credentials(database)
    prefix = f"{c['database']}:"
    client = redis_connect(c)
    client.set(f"{prefix}greeting", "hello")
    assert client.get(f"{prefix}greeting") == b"hello"
    for forbidden in (lambda: client.get("other:key"), lambda: client.keys("*"), lambda: client.scan(0),
                      lambda: client.flushall(), lambda: client.config_get("*"), lambda: client.dbsize()):  # fmt: skip
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis_connect({**c, "password": "wrong"}).ping()


def test_one_tenant_cannot_reach_anothers_database_or_keys(team_a, made):
    bravo = make_team("bravo")
    for engine in ("postgres", "mysql", "redis"):
        mine = credentials(provision(team_a, engine, made))
        theirs = credentials(provision(bravo, engine, made))
        if engine == "postgres":
            with pytest.raises(psycopg.OperationalError, match="permission denied"):
                pg_connect(mine, dbname=theirs["database"])
        elif engine == "mysql":
            with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
                mysql_connect(mine, database=theirs["database"])
        else:
            redis_connect(theirs).set(f"{theirs['database']}:secret", "x")
            with pytest.raises(redis.exceptions.NoPermissionError):
                redis_connect(mine).get(f"{theirs['database']}:secret")


@pytest.mark.parametrize("engine", ["postgres", "mysql", "redis"])
def test_rotation_refuses_the_old_password_and_attached_apps_get_the_new_url(team_a, made, engine):
    database = provision(team_a, engine, made)
    app = App.objects.create(team=team_a.team, project=team_a.project, name="web")
    attachment = services.database_attach(ctx=ctx_of(team_a), database=database, app=app)
    env_name = attachment.env_name
    old = credentials(database)
    assert environment_from_versions(version_ids_for_app(app))[env_name] == old["url"]
    tasks.database_rotate_credentials(database.pk)
    database.refresh_from_db()
    new = credentials(database)
    assert new["password"] != old["password"] and database.credentials_rotated_at is not None
    assert environment_from_versions(version_ids_for_app(app))[env_name] == new["url"]
    connect = {"postgres": pg_connect, "mysql": mysql_connect, "redis": lambda c: redis_connect(c).ping()}[engine]
    refused = {"postgres": psycopg.OperationalError, "mysql": pymysql.err.OperationalError,
               "redis": redis.exceptions.AuthenticationError}[engine]  # fmt: skip
    with pytest.raises(refused):
        connect(old)
    connect(new)


def test_detach_and_delete_leave_nothing(team_a, made):
    database = provision(team_a, "postgres", made)
    app = App.objects.create(team=team_a.team, project=team_a.project, name="web")
    services.database_attach(ctx=ctx_of(team_a), database=database, app=app, env_name="PRIMARY_DB")
    services.database_detach(ctx=ctx_of(team_a), database=database, app=app)
    assert "PRIMARY_DB" not in environment_from_versions(version_ids_for_app(app))
    services.database_attach(ctx=ctx_of(team_a), database=database, app=app)
    c = credentials(database)
    services.database_delete(ctx=ctx_of(team_a), database=database, confirm=database.name)
    assert not DatabaseAttachment.objects.exists()
    assert "DATABASE_URL" not in environment_from_versions(version_ids_for_app(app))
    database.refresh_from_db()
    assert database.status == "deleted" and database.deleted_at is not None and database.purge_after is not None
    tasks.database_lock(database.pk)  # recoverable until its grace period ends, but refused at once
    with pytest.raises(psycopg.OperationalError):
        pg_connect(c)
    admin = services.admin_url_of(database)
    Database.objects.filter(pk=database.pk).update(purge_after=timezone.now())  # the grace period ends
    assert tasks.purge_deleted_databases() == 1
    assert not Database.objects.filter(pk=database.pk).exists()
    made.remove(database)  # purged: nothing left to drop
    with psycopg.connect(admin, autocommit=True) as conn:
        assert not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [c["username"]]).fetchone()
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [c["database"]]).fetchone()
    # The name is free again.
    provision(team_a, "postgres", made, name=database.name)


def test_no_server_registered_is_a_clear_conflict(team_a, db):
    from apps.core.errors import Conflict

    with pytest.raises(Conflict, match="registerserver"):
        services.database_create(ctx=ctx_of(team_a), project=team_a.project, name="x", engine="postgres")
    assert not Database.objects.exists()


def test_registering_a_server_with_wrong_credentials_is_refused(db, pg_cluster):
    from apps.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="password authentication failed"):
        services.server_register(
            engine="postgres", admin_url=pg_cluster.admin_url.replace(":" + pg_cluster.superuser_password, ":nope")
        )
    with pytest.raises(ValidationFailed, match="Invalid admin URL"):
        services.server_register(engine="postgres", admin_url="mysql://root@127.0.0.1/")


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import django
    django.setup()
    import psycopg
    from apps.databases import tasks
    real_execute = psycopg.Connection.execute

    def execute(self, query, *args, **kwargs):
        text = query.as_string(self) if hasattr(query, "as_string") else str(query)
        if text.startswith("CREATE DATABASE"):
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies right after creating the role
        return real_execute(self, query, *args, **kwargs)

    psycopg.Connection.execute = execute
    tasks.database_provision(int(sys.argv[1]))
    """
)


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_provision_leaves_nothing_half_made_after_the_retry(team_a, made, settings):
    """A real process is SIGKILLed between creating the role and creating the database; running the
    task again (what the redelivered message does) finishes the job."""
    from django.db import connection

    database = services.database_create(ctx=ctx_of(team_a), project=team_a.project, name=unique(), engine="postgres")
    made.append(database)
    db = connection.settings_dict
    env = {
        "DJANGO_SETTINGS_MODULE": "pandastack.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PATH": "/usr/bin:/bin",
    }
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(database.pk)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    spec = services.spec_for(database)
    with psycopg.connect(services.admin_url_of(database), autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [spec.username]).fetchone()  # half made
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [spec.db_name]).fetchone()
    database.refresh_from_db()
    assert database.status == "provisioning"
    tasks.database_provision(database.pk)  # the retry
    database.refresh_from_db()
    assert database.status == "available"
    with pg_connect(credentials(database)) as conn:
        conn.execute("CREATE TABLE t (x int)")


def test_attaching_never_overwrites_a_variable_the_team_set(team_a, made):
    from apps.core.errors import ValidationFailed
    from apps.secrets.services import Scope, variables_set

    database = provision(team_a, "redis", made)
    app = App.objects.create(team=team_a.team, project=team_a.project, name="web")
    variables_set(ctx=ctx_of(team_a), scope=Scope(level="app", app=app), values={"REDIS_URL": "redis://mine"},
                  restart=False)  # fmt: skip
    with pytest.raises(ValidationFailed, match="already has a variable REDIS_URL"):
        services.database_attach(ctx=ctx_of(team_a), database=database, app=app)
    assert environment_from_versions(version_ids_for_app(app))["REDIS_URL"] == "redis://mine"
    services.database_attach(ctx=ctx_of(team_a), database=database, app=app, env_name="CACHE_URL")
    assert environment_from_versions(version_ids_for_app(app))["CACHE_URL"].startswith("redis://ps")


def test_two_usage_passes_at_once_report_a_size_crossing_once(team_a, made):
    """Two beats send the usage refresh twice: a second pass runs whole while the first is measuring
    (both read the size stored before the crossing). One `database.size_exceeded` event, not two."""
    from unittest import mock

    from apps.databases.provisioners.postgres import PostgresProvisioner
    from apps.events.models import PlatformEvent

    database = provision(team_a, "postgres", made)
    team_a.team.plan.max_database_size_mb = 1  # an empty PostgreSQL database holds several MiB
    team_a.team.plan.save()
    Database.objects.filter(pk=database.pk).update(size_bytes=2**19)  # the last measurement: under the limit
    measure = PostgresProvisioner.usage
    passes = []

    def usage_while_another_pass_runs(self, spec):
        if not passes:
            passes.append("second")
            tasks.refresh_usage()  # the other beat's pass, from start to end
        return measure(self, spec)

    with mock.patch.object(PostgresProvisioner, "usage", usage_while_another_pass_runs):
        tasks.refresh_usage()
    database.refresh_from_db()
    assert database.size_bytes > 2**20
    events = PlatformEvent.objects.filter(kind="database.size_exceeded", subject_id=str(database.pk))
    assert events.count() == 1
    tasks.refresh_usage()  # still over: no new crossing
    assert events.count() == 1
