"""Destructive database actions have a way back (issue 11, item 9), against the real servers
(PostgreSQL: the tests' own password-auth cluster; MariaDB and Redis: the machine's).

- A restore first takes a safety backup (an ordinary Backup row, trigger `safety`), and a load that
  fails part way leaves the live data exactly as it was. The failing backups are crafted so that
  they pass every check made before loading (size, checksum, the format's validation) and fail in
  the middle of the load, after the load has already replaced part of the data:
  PostgreSQL: a CHECK constraint whose function was made stricter after the rows went in (the
  COPY fails after --clean dropped and re-created the tables); MariaDB: a real dump with a
  duplicate-key INSERT added after the first table was dropped and reloaded; Redis: a key file
  whose second value is not a valid DUMP payload.
- Deleting is recoverable for the plan's grace period: the credentials are refused at once, and
  undelete brings the data back with the same credentials; after the grace period the purge drops
  the server's database and user and deletes every backup file from storage.

Queued tasks run in-process as the worker would run them (`delay` is replaced by a direct call).
"""

import contextlib
import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pymysql
import pytest
import redis
from django.core.files.base import ContentFile
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.databases import backup_tasks, services, tasks
from apps.databases.backups import backup_capture, backup_restore, backup_storage
from apps.databases.models import Backup, BackupStatus, Database, DatabaseStatus
from apps.databases.provisioners import DatabaseSpec, provisioner_for
from apps.teams.models import Membership
from tests.conftest import TeamWorld, make_token, token_client
from tests.support.database_fixtures import ctx_of

ENGINES = ["postgres", "mysql", "redis"]


# --- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def backup_folder(settings, tmp_path) -> Path:
    folder = tmp_path / "backups"
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(folder)}},
    }
    return folder


@pytest.fixture(autouse=True)
def run_tasks_in_process(monkeypatch) -> None:
    """What the services enqueue runs here, with the arguments they enqueue it with."""
    for task in (
        backup_tasks.backup_run, backup_tasks.restore_run, tasks.database_provision, tasks.database_lock,
        tasks.database_deprovision,
    ):  # fmt: skip
        monkeypatch.setattr(task, "apply_async", lambda args, task=task, **options: task(*args))


@pytest.fixture
def tenant(team_a: TeamWorld, servers, django_capture_on_commit_callbacks) -> Iterator[Callable[[str], Database]]:
    """tenant(engine) -> an available database of team_a, made through the service and provisioned
    on the real server; whatever is left of it is dropped at teardown."""
    made: list[tuple[str, str, DatabaseSpec]] = []

    def make(engine: str) -> Database:
        with django_capture_on_commit_callbacks(execute=True):
            database = services.database_create(
                ctx=ctx_of(team_a), project=team_a.project, name=f"wb-{uuid.uuid4().hex[:8]}", engine=engine
            )
        database.refresh_from_db()
        assert database.status == DatabaseStatus.AVAILABLE, database.status_reason
        made.append((engine, services.admin_url_of(database), services.spec_for(database)))
        return database

    yield make
    for engine, admin_url, spec in made:
        with contextlib.suppress(Exception):  # best effort: never hide the test's own failure
            provisioner_for(engine, admin_url).drop(spec)


def on_commit(django_capture_on_commit_callbacks, call: Callable, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        return call(**kwargs)


def capture(database: Database, hooks) -> Backup:
    backup = on_commit(hooks, backup_capture, ctx=ctx_of_db(database), database=database)
    backup.refresh_from_db()
    assert backup.status == BackupStatus.SUCCEEDED, backup.error
    return backup


def restore(database: Database, backup: Backup, hooks) -> Database:
    on_commit(hooks, backup_restore, ctx=ctx_of_db(database), database=database, backup=backup, confirm=database.name)
    database.refresh_from_db()
    assert database.status == DatabaseStatus.AVAILABLE
    return database


def ctx_of_db(database: Database):
    user = Membership.objects.filter(team=database.team, role="owner").select_related("user").first().user
    return resolve_team(Actor.system("test", user=user), database.team.slug)


def planted(database: Database, content: bytes) -> Backup:
    """A succeeded backup whose file is `content`, with its size and checksum recorded (so every
    check made before loading accepts it)."""
    number = (Backup.objects.filter(database=database).order_by("-number").values_list("number", flat=True).first()
              or 0) + 1  # fmt: skip
    name = backup_storage().save(f"{database.team.slug}/{database.name}/{number}-planted", ContentFile(content))
    now = timezone.now()
    return Backup.objects.create(
        team=database.team, database=database, number=number, status=BackupStatus.SUCCEEDED, file_name=name,
        size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest(), started_at=now, finished_at=now,
    )  # fmt: skip


def stored(backup: Backup) -> bytes:
    return Path(backup_storage().path(backup.file_name)).read_bytes()


# --- the tenants' data, as the tenant sees it --------------------------------------------------------
def pg(spec: DatabaseSpec) -> psycopg.Connection:
    return psycopg.connect(host=spec.host, port=spec.port, user=spec.username, password=spec.password,
                           dbname=spec.db_name, autocommit=True, connect_timeout=5)  # fmt: skip


def my(spec: DatabaseSpec) -> pymysql.Connection:
    return pymysql.connect(host=spec.host, port=spec.port, user=spec.username, password=spec.password,
                           database=spec.db_name, autocommit=True, connect_timeout=5)  # fmt: skip


def rd(spec: DatabaseSpec) -> redis.Redis:
    return redis.Redis(host=spec.host, port=spec.port, username=spec.username, password=spec.password,
                       socket_connect_timeout=5)  # fmt: skip


def seed(database: Database, label: str) -> None:
    """Tables (PostgreSQL, MariaDB) or keys (Redis) holding `label`."""
    spec = services.spec_for(database)
    if database.engine == "postgres":
        with pg(spec) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text NOT NULL)")
            conn.execute("DELETE FROM items")
            conn.execute("INSERT INTO items VALUES (1, %s), (2, %s)", [f"{label}-1", f"{label}-2"])
    elif database.engine == "mysql":
        with my(spec) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, name VARCHAR(50) NOT NULL)")
            cur.execute("DELETE FROM items")
            cur.execute("INSERT INTO items VALUES (1, %s), (2, %s)", [f"{label}-1", f"{label}-2"])
    else:
        client = rd(spec)
        prefix = f"{database.db_name}:"
        client.set(prefix + "a", f"{label}-a")
        client.hset(prefix + "h", mapping={"label": label})
        client.close()


def state(database: Database) -> object:
    """Everything of the tenant's a restore could touch: objects and rows, or keys and values."""
    spec = services.spec_for(database)
    if database.engine == "postgres":
        with pg(spec) as conn:
            objects = conn.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' ORDER BY 1"
            ).fetchall()
            functions = conn.execute(
                "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n"
                " ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1"
            ).fetchall()
            tables = [name for name, kind in objects if kind == "r"]
            rows = {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall() for t in tables}
        return objects, functions, rows
    if database.engine == "mysql":
        with my(spec) as conn, conn.cursor() as cur:
            cur.execute("SHOW FULL TABLES")
            objects = sorted(cur.fetchall())
            cur.execute("SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = DATABASE()")
            triggers = sorted(cur.fetchall())
            rows = {}
            for name, _kind in objects:
                cur.execute(f"SELECT * FROM `{name}` ORDER BY 1")
                rows[name] = list(cur.fetchall())
        return objects, triggers, rows
    admin = redis.Redis.from_url(services.admin_url_of(database))
    prefix = f"{database.db_name}:".encode()
    keys = sorted(admin.scan_iter(match=prefix + b"*"))
    return {key: (admin.type(key), admin.dump(key)) for key in keys}


# --- a restore has a way back ------------------------------------------------------------------------
def test_mariadb_restore_failing_midway_leaves_the_live_data_exactly_as_it_was(
    tenant, django_capture_on_commit_callbacks
):
    hooks = django_capture_on_commit_callbacks
    database = tenant("mysql")
    seed(database, "old")
    good = capture(database, hooks)
    # The live data moves on: other rows, a table and a trigger the backup does not know.
    seed(database, "live")
    with my(services.spec_for(database)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE later (x INT PRIMARY KEY)")
        cur.execute("INSERT INTO later VALUES (7)")
        cur.execute("CREATE TRIGGER later_check BEFORE INSERT ON later FOR EACH ROW SET NEW.x = NEW.x + 1")
    before = state(database)
    # A real dump (valid header and footer) that fails after `items` was dropped and reloaded.
    lines = stored(good).splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(b"INSERT INTO `items`"))
    at = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith(b";")) + 1  # after that INSERT
    crafted = planted(database, b"".join([*lines[:at], b"INSERT INTO `items` VALUES (1,'duplicate');\n", *lines[at:]]))

    database = restore(database, crafted, hooks)

    assert state(database) == before
    assert "Duplicate entry" in database.status_reason
    assert "put back from safety backup" in database.status_reason
    assert crafted.restored_at is None


def test_postgres_restore_failing_midway_leaves_the_live_data_exactly_as_it_was(
    tenant, django_capture_on_commit_callbacks
):
    hooks = django_capture_on_commit_callbacks
    database = tenant("postgres")
    seed(database, "old")
    with pg(services.spec_for(database)) as conn:
        conn.execute("CREATE FUNCTION small(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 < 100'")
        conn.execute("CREATE TABLE checked (x int CHECK (small(x)))")
        conn.execute("INSERT INTO checked VALUES (50)")
        # Stricter now: the archive re-creates the function first, so reloading 50 fails.
        conn.execute("CREATE OR REPLACE FUNCTION small(int) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT $1 < 10'")
    crafted = capture(database, hooks)
    with pg(services.spec_for(database)) as conn:
        conn.execute("DROP TABLE checked")
        conn.execute("DROP FUNCTION small(int)")
        conn.execute("CREATE TABLE later (x int)")
        conn.execute("INSERT INTO later VALUES (7)")
    seed(database, "live")
    before = state(database)

    database = restore(database, crafted, hooks)

    assert state(database) == before
    assert "checked" in database.status_reason and "Nothing was changed" in database.status_reason


def test_redis_restore_failing_midway_leaves_the_live_data_exactly_as_it_was(
    tenant, django_capture_on_commit_callbacks
):
    hooks = django_capture_on_commit_callbacks
    database = tenant("redis")
    seed(database, "old")
    good = capture(database, hooks)
    seed(database, "live")
    before = state(database)
    # The second record's value is not a DUMP payload: RESTORE refuses it after the first went in.
    from apps.databases import dumps

    records = dumps.redis_read(Path(backup_storage().path(good.file_name)))
    assert len(records) == 2
    body = dumps.REDIS_MAGIC + dumps._U16.pack(dumps.REDIS_VERSION)
    for index, record in enumerate(records):
        payload = record.payload if index == 0 else b"\x00not a dump payload\x09\x00" + b"\x00" * 8
        body += b"R" + dumps._U32.pack(len(record.key)) + record.key + dumps._I64.pack(record.pttl)
        body += dumps._U32.pack(len(payload)) + payload
    crafted = planted(database, body + b"E" + dumps._U64.pack(len(records)))

    database = restore(database, crafted, hooks)

    assert state(database) == before
    assert "Nothing was changed" in database.status_reason


def test_no_safety_backup_no_restore(tenant, django_capture_on_commit_callbacks):
    """When the safety backup cannot be taken (here: mariadb-dump refuses a view whose table is
    gone), nothing is loaded."""
    hooks = django_capture_on_commit_callbacks
    database = tenant("mysql")
    seed(database, "old")
    old = capture(database, hooks)
    seed(database, "live")
    with my(services.spec_for(database)) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE gone (x INT)")
        cur.execute("CREATE VIEW broken AS SELECT x FROM gone")
        cur.execute("DROP TABLE gone")
    before = state_rows(database)

    database = restore(database, old, hooks)

    assert state_rows(database) == before
    safety = Backup.objects.get(database=database, trigger="safety")
    assert safety.status == "failed"
    assert f"the safety backup #{safety.number} of the current data failed" in database.status_reason
    assert "Nothing was changed" in database.status_reason


def state_rows(database: Database) -> list:
    with my(services.spec_for(database)) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM items ORDER BY 1")
        return list(cur.fetchall())


@pytest.mark.parametrize("engine", ENGINES)
def test_a_restore_leaves_a_safety_backup_that_brings_the_data_from_before_back(
    engine, tenant, django_capture_on_commit_callbacks
):
    hooks = django_capture_on_commit_callbacks
    database = tenant(engine)
    seed(database, "old")
    old = capture(database, hooks)
    seed(database, "live")
    live = state(database)

    database = restore(database, old, hooks)
    assert state(database) != live
    assert database.status_reason == ""

    safety = Backup.objects.get(database=database, trigger="safety")
    assert (safety.status, safety.number) == ("succeeded", 2)
    assert safety.reason == "Taken automatically before restoring backup #1."
    assert AuditEvent.objects.get(action="database.restore").data == {"backup": 1, "safety_backup": 2}
    # Listed with the others, as people see them.
    client = token_client(_owner_token(database))
    listed = client.get(f"/api/v1/teams/{database.team.slug}/databases/{database.name}/backups/").json()["results"]
    assert [(b["number"], b["trigger"], b["reason"]) for b in listed] == [
        (2, "safety", safety.reason),
        (1, "manual", ""),
    ]

    database = restore(database, safety, hooks)
    assert state(database) == live


def _owner_token(database: Database) -> str:
    owner = Membership.objects.get(team=database.team, role="owner").user
    return make_token(database.team, owner)[1]


# --- deleting has a way back -------------------------------------------------------------------------
def connects(database: Database, spec: DatabaseSpec) -> object:
    """What the tenant reads with these credentials (raises when they are refused)."""
    if database.engine == "postgres":
        with pg(spec) as conn:
            return conn.execute("SELECT name FROM items ORDER BY id").fetchall()
    if database.engine == "mysql":
        with my(spec) as conn, conn.cursor() as cur:
            cur.execute("SELECT name FROM items ORDER BY id")
            return cur.fetchall()
    client = rd(spec)
    try:
        return client.get(f"{database.db_name}:a")
    finally:
        client.close()


REFUSED = (psycopg.OperationalError, pymysql.err.OperationalError, redis.AuthenticationError, redis.ResponseError)


@pytest.mark.parametrize("engine", ENGINES)
def test_delete_then_undelete_brings_the_data_back_with_the_same_credentials(
    engine, tenant, django_capture_on_commit_callbacks
):
    database = tenant(engine)
    seed(database, "kept")
    spec = services.spec_for(database)
    data = connects(database, spec)
    client = token_client(_owner_token(database))
    url = f"/api/v1/teams/{database.team.slug}/databases/{database.name}/"

    with django_capture_on_commit_callbacks(execute=True):
        response = client.delete(url, {"confirm": database.name}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "deleted"
    # Apps lose access at once; the data is kept.
    with pytest.raises(REFUSED):
        connects(database, spec)
    assert client.get(url).status_code == 404

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url + "undelete/", format="json")
    assert response.status_code == 202, response.json()

    database.refresh_from_db()
    assert database.status == DatabaseStatus.AVAILABLE, database.status_reason
    assert services.spec_for(database) == spec  # the same credentials…
    assert connects(database, spec) == data  # …work again, on the same data
    assert client.get(url).json()["status"] == "available"


@pytest.mark.parametrize("engine", ENGINES)
def test_after_the_grace_period_the_purge_drops_the_database_and_deletes_its_backup_files(
    engine, tenant, django_capture_on_commit_callbacks, backup_folder
):
    hooks = django_capture_on_commit_callbacks
    database = tenant(engine)
    seed(database, "doomed")
    backups = [capture(database, hooks), capture(database, hooks)]
    files = [Path(backup_storage().path(b.file_name)) for b in backups]
    assert all(f.exists() for f in files)
    admin_url, spec = services.admin_url_of(database), services.spec_for(database)
    on_commit(hooks, services.database_delete, ctx=ctx_of_db(database), database=database, confirm=database.name)
    database.refresh_from_db()
    assert database.purge_after > timezone.now() + timedelta(hours=71)

    # Within the grace period the purge leaves it alone.
    assert tasks.purge_deleted_databases() == 0
    assert server_side_exists(engine, admin_url, spec)
    assert all(f.exists() for f in files)

    Database.objects.filter(pk=database.pk).update(purge_after=timezone.now() - timedelta(seconds=1))
    assert tasks.purge_deleted_databases() == 1

    assert not server_side_exists(engine, admin_url, spec)
    assert not any(f.exists() for f in files)
    assert not Backup.objects.filter(pk__in=[b.pk for b in backups]).exists()
    assert not Database.objects.filter(pk=database.pk).exists()
    purge = AuditEvent.objects.get(action="database.purge", target_id=str(database.pk))
    assert purge.data == {"backup_files_deleted": 2}
    assert tasks.purge_deleted_databases() == 0  # nothing left to do


def test_the_purge_runs_on_the_beat_schedule(settings):
    assert tasks.purge_deleted_databases.name in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}


def server_side_exists(engine: str, admin_url: str, spec: DatabaseSpec) -> bool:
    """Whether the server still has the tenant's database, user or keys (asked as administrator)."""
    if engine == "postgres":
        with psycopg.connect(admin_url, autocommit=True) as conn:
            role = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [spec.username]).fetchone()
            data = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [spec.db_name]).fetchone()
        return bool(role or data)
    if engine == "mysql":
        from apps.databases.provisioners.mysql import MySQLProvisioner

        with MySQLProvisioner(admin_url)._admin() as cur:
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [spec.db_name])
            data = cur.fetchone()
            cur.execute("SELECT 1 FROM mysql.user WHERE user = %s", [spec.username])
            user = cur.fetchone()
        return bool(data or user)
    client = redis.Redis.from_url(admin_url)
    try:
        keys = list(client.scan_iter(match=f"{spec.db_name}:*"))
        users = client.execute_command("ACL", "USERS")
    finally:
        client.close()
    return bool(keys) or spec.username.encode() in users
