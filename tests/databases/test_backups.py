"""Backups and restores against the real servers (PostgreSQL: the tests' own password-protected
cluster; MariaDB and Redis: the machine's), run in-process by calling the task functions.

Each test makes its tenant databases directly on the servers with the provisioners (unique names,
dropped at teardown) and keeps its backup files in a folder of its own. MongoDB has no server or
client tools on this machine: only its command lines and its archive check are tested."""

import contextlib
import gzip
import hashlib
import io
import os
import struct
import subprocess
from datetime import timedelta
from pathlib import Path

import psycopg
import pymysql
import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.actors import Actor
from apps.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from apps.databases import backup_tasks, dumps, services
from apps.databases.backups import (
    _backup_if_due,
    backup_capture,
    backup_open,
    backup_restore,
    backup_storage,
    due_for_backup,
    give_up_stale,
    scheduled_backups,
)
from apps.databases.dumps import BackupError, DatabaseSpec
from apps.databases.models import Backup, Database, DatabaseStatus
from apps.events.models import PlatformEvent
from apps.secrets import crypto
from tests.support.database_fixtures import ctx_of, provisioned_database


@pytest.fixture(autouse=True)
def backup_folder(settings, tmp_path) -> Path:
    folder = tmp_path / "backups"
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder), "file_permissions_mode": 0o600, "directory_permissions_mode": 0o700},
        },
    }
    return folder


@pytest.fixture
def tenants(servers, team_a):
    """make(engine, world=team_a) -> an available Database provisioned on the real server; every one
    made is dropped from its server at teardown."""
    made: list[Database] = []

    def make(engine: str, world=None) -> Database:
        world = world or team_a
        server = servers[engine]
        database = provisioned_database(world, server, crypto.decrypt(server.admin_url_encrypted), prefix="bk")
        made.append(database)
        return database

    yield make
    for database in made:
        with contextlib.suppress(Exception):  # best effort: never hide the test's own failure
            services.provisioner_of(database).drop(services.spec_for(database))


def capture(database: Database, django_capture_on_commit_callbacks, **kw) -> Backup:
    """A manual backup through the service, then its task run here."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        backup = backup_capture(ctx=ctx_of_db(database), database=database, **kw)
    assert len(callbacks) == 1  # the task is enqueued once the transaction commits
    database.refresh_from_db()
    assert database.status == DatabaseStatus.BACKING_UP
    backup_tasks.backup_run(backup.pk)
    backup.refresh_from_db()
    database.refresh_from_db()
    assert database.status == DatabaseStatus.AVAILABLE
    return backup


def restore(database: Database, backup: Backup, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        backup_restore(ctx=ctx_of_db(database), database=database, backup=backup, confirm=database.name)
    assert len(callbacks) == 1
    database.refresh_from_db()
    assert database.status == DatabaseStatus.RESTORING
    backup_tasks.restore_run(backup.pk)
    database.refresh_from_db()
    backup.refresh_from_db()
    assert database.status == DatabaseStatus.AVAILABLE


def ctx_of_db(database: Database, role: str = "owner"):
    from apps.core.access import resolve_team
    from apps.core.actors import Actor
    from apps.teams.models import Membership

    user = Membership.objects.filter(team=database.team, role=role).select_related("user").first().user
    return resolve_team(Actor.system("test", user=user), database.team.slug)


def stored_path(backup: Backup) -> Path:
    return Path(backup_storage().path(backup.file_name))


# --- talking to the tenants' data (as the tenant) ----------------------------------------------------
def pg(database: Database) -> psycopg.Connection:
    spec = services.spec_for(database)
    return psycopg.connect(host=spec.host, port=spec.port, user=spec.username, password=spec.password,
                           dbname=spec.db_name, autocommit=True, connect_timeout=5)  # fmt: skip


def pg_rows(database: Database) -> list[tuple]:
    with pg(database) as conn:
        return conn.execute("SELECT id, name FROM items ORDER BY id").fetchall()


def my(database: Database) -> pymysql.Connection:
    spec = services.spec_for(database)
    return pymysql.connect(host=spec.host, port=spec.port, user=spec.username, password=spec.password,
                           database=spec.db_name, autocommit=True, connect_timeout=5)  # fmt: skip


def my_rows(database: Database) -> list[tuple]:
    with my(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, name, audit FROM items ORDER BY id")
        return [tuple(row) for row in cur.fetchall()]


def admin_redis(database: Database) -> redis.Redis:
    return redis.Redis.from_url(services.admin_url_of(database))


def redis_state(database: Database) -> dict[bytes, object]:
    """Every key of the tenant (without its prefix) and its value."""
    client = admin_redis(database)
    prefix = f"{database.db_name}:".encode()
    state: dict[bytes, object] = {}
    for key in client.scan_iter(match=prefix + b"*"):
        kind = client.type(key)
        value = {
            b"string": client.get,
            b"hash": client.hgetall,
            b"list": lambda k: client.lrange(k, 0, -1),
            b"set": client.smembers,
        }[kind](key)
        state[key[len(prefix) :]] = value
    return state


# --- seeding and changing data, per engine -----------------------------------------------------------
def seed(database: Database) -> None:
    if database.engine == "postgres":
        with pg(database) as conn:
            conn.execute("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL UNIQUE)")
            conn.execute("INSERT INTO items (name) VALUES ('apple'), ('banana'), ('cherry')")
            conn.execute("CREATE VIEW item_names AS SELECT name FROM items")
    elif database.engine == "mysql":
        with my(database) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), audit VARCHAR(60))")
            # A trigger (--triggers) whose DEFINER is the tenant: the load keeps it working.
            cur.execute("CREATE TRIGGER items_audit BEFORE INSERT ON items FOR EACH ROW SET NEW.audit = 'trigger'")
            cur.execute("INSERT INTO items (name) VALUES ('apple'), ('banana'), ('cherry')")
            cur.execute("INSERT INTO items (name) VALUES (%s)", ["multi\nline 'quoted' \\ text"])
    else:
        client = admin_redis(database)
        p = f"{database.db_name}:"
        client.set(p + "greeting", "hello")
        client.set(p + "binary", bytes(range(256)))
        client.set(p + "session", "s1", px=3_600_000)
        client.hset(p + "user:1", mapping={"name": "ann", "plan": "pro"})
        client.rpush(p + "queue", "a", "b", "c")
        client.sadd(p + "tags", "x", "y")


def change(database: Database) -> None:
    if database.engine == "postgres":
        with pg(database) as conn:
            conn.execute("UPDATE items SET name = 'APPLE' WHERE name = 'apple'")
            conn.execute("DELETE FROM items WHERE name = 'banana'")
            conn.execute("INSERT INTO items (name) VALUES ('durian')")
            conn.execute("DROP VIEW item_names")
    elif database.engine == "mysql":
        with my(database) as conn, conn.cursor() as cur:
            cur.execute("UPDATE items SET name = 'APPLE' WHERE name = 'apple'")
            cur.execute("DELETE FROM items WHERE name = 'banana'")
            cur.execute("DROP TRIGGER items_audit")
            cur.execute("INSERT INTO items (name) VALUES ('durian')")
    else:
        client = admin_redis(database)
        p = f"{database.db_name}:"
        client.set(p + "greeting", "changed")
        client.delete(p + "queue")
        client.set(p + "added-later", "new")
        client.hset(p + "user:1", "plan", "free")


def state_of(database: Database) -> object:
    if database.engine == "postgres":
        with pg(database) as conn:
            view = conn.execute("SELECT count(*) FROM pg_views WHERE viewname = 'item_names'").fetchone()[0]
        return pg_rows(database), view
    if database.engine == "mysql":
        return my_rows(database)
    return redis_state(database)


ENGINES = ["postgres", "mysql", "redis"]


# --- round trips -------------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
def test_capture_then_restore_brings_the_original_data_back(engine, tenants, django_capture_on_commit_callbacks):
    database = tenants(engine)
    seed(database)
    original = state_of(database)

    backup = capture(database, django_capture_on_commit_callbacks)

    assert backup.status == "succeeded", backup.error
    assert backup.number == 1 and backup.trigger == "manual"
    assert backup.started_at and backup.finished_at
    path = stored_path(backup)
    assert backup.file_name.startswith(f"{database.team.slug}/{database.name}/1-")
    assert backup.size_bytes == path.stat().st_size > 0
    assert backup.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.stat().st_mode & 0o777 == 0o600  # the tenant's data: readable by the platform only
    assert AuditEvent.objects.filter(action="database.backup", target_id=str(database.pk)).exists()

    change(database)
    assert state_of(database) != original
    restore(database, backup, django_capture_on_commit_callbacks)

    assert state_of(database) == original
    assert backup.restored_at is not None
    assert database.status_reason == ""
    assert AuditEvent.objects.filter(action="database.restore", target_id=str(database.pk)).exists()


def test_postgres_restored_objects_belong_to_the_tenant(tenants, django_capture_on_commit_callbacks):
    database = tenants("postgres")
    seed(database)
    backup = capture(database, django_capture_on_commit_callbacks)
    restore(database, backup, django_capture_on_commit_callbacks)
    with pg(database) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'").fetchone()[0]
        assert owner == database.username
        conn.execute("INSERT INTO items (name) VALUES ('elderberry')")  # the sequence came back too
        conn.execute("DROP TABLE items CASCADE")  # the tenant may still do anything with its objects


def test_mysql_restore_keeps_triggers_and_awkward_text(tenants, django_capture_on_commit_callbacks):
    database = tenants("mysql")
    seed(database)
    backup = capture(database, django_capture_on_commit_callbacks)
    change(database)
    restore(database, backup, django_capture_on_commit_callbacks)
    with my(database) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO items (name) VALUES ('fig')")
        cur.execute("SELECT audit FROM items WHERE name = 'fig'")
        assert cur.fetchone()[0] == "trigger"
        cur.execute("SELECT name FROM items WHERE id = 4")
        assert cur.fetchone()[0] == "multi\nline 'quoted' \\ text"


def test_redis_backup_holds_only_the_tenants_keys_and_restore_leaves_other_tenants_alone(
    tenants, django_capture_on_commit_callbacks
):
    database, neighbour = tenants("redis"), tenants("redis")
    seed(database)
    seed(neighbour)
    backup = capture(database, django_capture_on_commit_callbacks)

    records = dumps.redis_read(stored_path(backup))
    assert {r.key for r in records} == {b"greeting", b"binary", b"session", b"user:1", b"queue", b"tags"}
    assert next(r for r in records if r.key == b"session").pttl > 3_500_000
    assert next(r for r in records if r.key == b"greeting").pttl == -1

    change(database)
    change(neighbour)
    neighbours_state = redis_state(neighbour)
    restore(database, backup, django_capture_on_commit_callbacks)

    assert b"added-later" not in redis_state(database)
    assert redis_state(neighbour) == neighbours_state  # its own changes, untouched
    client = admin_redis(database)
    assert 3_500_000 < client.pttl(f"{database.db_name}:session") <= 3_600_000
    assert client.ttl(f"{database.db_name}:greeting") == -1
    assert not list(client.scan_iter(match=f"{database.db_name}:__pandastack_restore_*"))  # no staging left


# --- damaged files -----------------------------------------------------------------------------------
def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + 8, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("damage", "says"), [(flip_bytes, "checksum does not match"), (truncate, "bytes")])
def test_a_damaged_backup_file_fails_the_restore_and_changes_nothing(
    engine, damage, says, tenants, django_capture_on_commit_callbacks
):
    database = tenants(engine)
    seed(database)
    backup = capture(database, django_capture_on_commit_callbacks)
    change(database)
    current = state_of(database)
    damage(stored_path(backup))

    restore(database, backup, django_capture_on_commit_callbacks)

    assert state_of(database) == current
    assert database.status_reason.startswith("Restore from backup #1 failed: the file of backup #1 is damaged")
    assert says in database.status_reason and database.status_reason.endswith("Nothing was changed.")
    assert backup.restored_at is None
    event = PlatformEvent.objects.get(kind="database.restore_failed", subject_id=str(database.pk))
    assert event.severity == "error" and event.data == {"backup": 1}


@pytest.mark.parametrize("engine", ENGINES)
def test_the_loaders_refuse_a_truncated_dump_before_changing_anything(engine, tenants, tmp_path):
    """Beneath the checksum: a file that was incomplete when it was stored (or a foreign one) is
    refused by the engine's own load, and the data stays as it is."""
    database = tenants(engine)
    seed(database)
    fmt = dumps.format_for(engine)
    admin_url, spec = services.admin_url_of(database), services.spec_for(database)
    path = tmp_path / f"dump.{fmt.extension}"
    fmt.dump(admin_url, spec, path)
    change(database)
    current = state_of(database)
    truncate(path)

    with pytest.raises(BackupError) as failure:
        fmt.load(admin_url, spec, path)

    assert state_of(database) == current
    assert spec.password not in str(failure.value)
    foreign = tmp_path / "foreign"
    foreign.write_bytes(b"SELECT 1;\n" * 100)
    with pytest.raises(BackupError):
        fmt.load(admin_url, spec, foreign)
    assert state_of(database) == current


def test_a_redis_payload_redis_rejects_is_staged_only_and_nothing_changes(tenants, tmp_path):
    """A well-formed file whose DUMP payload is damaged: RESTORE refuses it while staging, so the
    swap never runs and the staging keys are removed."""
    database = tenants("redis")
    seed(database)
    admin_url, spec = services.admin_url_of(database), services.spec_for(database)
    path = tmp_path / "dump.rediskeys"
    dumps.redis_dump(admin_url, spec, path)
    records = dumps.redis_read(path)
    damaged = tmp_path / "damaged.rediskeys"
    with damaged.open("wb") as out:  # the same file with one payload's last byte (its checksum) changed
        out.write(dumps.REDIS_MAGIC + struct.pack(">H", dumps.REDIS_VERSION))
        for i, r in enumerate(records):
            payload = r.payload[:-1] + bytes([r.payload[-1] ^ 0xFF]) if i == len(records) - 1 else r.payload
            out.write(b"R" + struct.pack(">I", len(r.key)) + r.key + struct.pack(">q", r.pttl))
            out.write(struct.pack(">I", len(payload)) + payload)
        out.write(b"E" + struct.pack(">Q", len(records)))
    change(database)
    current = state_of(database)

    with pytest.raises(BackupError, match="nothing was changed"):
        dumps.redis_load(admin_url, spec, damaged)

    assert state_of(database) == current


# --- retention, schedule, idempotency ----------------------------------------------------------------
def test_retention_keeps_the_plans_number_of_backups_and_deletes_older_files(
    tenants, django_capture_on_commit_callbacks
):
    database = tenants("redis")
    seed(database)
    plan = database.team.plan
    plan.backups_kept = 2
    plan.save()
    made = [capture(database, django_capture_on_commit_callbacks) for _ in range(3)]
    assert all(b.status == "succeeded" for b in made)
    oldest_file = backup_storage().path(made[0].file_name)

    kept = list(Backup.objects.filter(database=database).order_by("number").values_list("number", flat=True))
    assert kept == [2, 3]
    assert not Path(oldest_file).exists()
    assert all(stored_path(b).exists() for b in made[1:])
    assert capture(database, django_capture_on_commit_callbacks).number == 4  # numbers never repeat


def test_scheduled_backups_follow_the_plans_interval(tenants):
    database = tenants("redis")
    plan = database.team.plan
    plan.backup_interval_hours = 24
    plan.save()
    now = timezone.now()

    assert scheduled_backups(now) == 1
    backup = Backup.objects.get(database=database)
    assert backup.trigger == "scheduled" and backup.created_by_label == "system (backup-scheduler)"
    assert scheduled_backups(now) == 0  # busy backing up
    backup_tasks.backup_run(backup.pk)
    backup.refresh_from_db()
    assert backup.status == "succeeded"

    assert scheduled_backups(now + timedelta(hours=23)) == 0
    assert scheduled_backups(now + timedelta(hours=24, minutes=1)) == 1
    latest = Backup.objects.filter(database=database).order_by("-number").first()
    assert latest.number == 2 and latest.trigger == "scheduled"
    backup_tasks.backup_run(latest.pk)

    plan.backup_interval_hours = 0  # no scheduled backups on this plan
    plan.save()
    assert scheduled_backups(now + timedelta(days=30)) == 0
    assert django_settings.CELERY_BEAT_SCHEDULE["database-backups"] == {
        "task": "databases.scheduled_backups",
        "schedule": 300.0,
    }


def test_two_scheduled_passes_at_once_take_one_backup(tenants):
    """Two beats send the pass twice. The second pass read its list before the first queued the
    backup, and the backup finished meanwhile (the database is available again): asked again under
    the database's lock, it is not due, and no second backup is taken."""
    database = tenants("redis")
    database.team.plan.backup_interval_hours = 24
    database.team.plan.save()
    now = timezone.now()
    second_pass_read = [d.pk for d in due_for_backup(now)]
    assert second_pass_read == [database.pk]
    assert scheduled_backups(now) == 1  # the first pass
    backup_tasks.backup_run(Backup.objects.get(database=database).pk)
    database.refresh_from_db()
    assert database.status == "available"
    actor = Actor.system("backup-scheduler")
    assert [_backup_if_due(pk, now=now, actor=actor) for pk in second_pass_read] == [False]
    assert Backup.objects.filter(database=database).count() == 1


def test_a_manual_backup_does_not_count_for_the_schedule(tenants, django_capture_on_commit_callbacks):
    database = tenants("redis")
    capture(database, django_capture_on_commit_callbacks)
    assert scheduled_backups() == 1


def test_work_whose_worker_disappeared_is_given_up(tenants):
    database = tenants("redis")
    backup = Backup.objects.create(team=database.team, database=database, number=1, status="running",
                                   started_at=timezone.now() - timedelta(hours=3))  # fmt: skip
    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.BACKING_UP)
    restoring = tenants("redis")
    Database.objects.filter(pk=restoring.pk).update(
        status=DatabaseStatus.RESTORING, updated_at=timezone.now() - timedelta(hours=3)
    )
    # Its heartbeat stopped a moment longer ago than the stale time: its worker died.
    silent = timezone.now() - timedelta(seconds=django_settings.PANDASTACK_WORKER_STALE_SECONDS + 1)
    Backup.objects.filter(pk=backup.pk).update(updated_at=silent)

    assert give_up_stale(timezone.now()) == 2

    backup.refresh_from_db()
    database.refresh_from_db()
    restoring.refresh_from_db()
    assert backup.status == "failed" and "never finished" in backup.error and "worker stopped" in backup.error
    assert database.status == restoring.status == DatabaseStatus.AVAILABLE
    assert "never finished" in restoring.status_reason
    assert PlatformEvent.objects.filter(kind="database.backup_failed", subject_id=str(database.pk)).exists()
    assert PlatformEvent.objects.filter(kind="database.restore_failed", subject_id=str(restoring.pk)).exists()


def test_a_backup_whose_worker_died_while_writing_its_file_is_failed_and_its_partial_file_deleted(tenants):
    database = tenants("redis")
    partial = backup_storage().save(f"{database.team.slug}/{database.name}/1-partial.rdbx", io.BytesIO(b"half"))
    backup = Backup.objects.create(team=database.team, database=database, number=1, status="running",
                                   started_at=timezone.now(), file_name=partial)  # fmt: skip
    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.BACKING_UP)

    assert give_up_stale() == 0  # its heartbeat is fresh: a worker is still writing it
    silent = timezone.now() - timedelta(seconds=django_settings.PANDASTACK_WORKER_STALE_SECONDS + 1)
    Backup.objects.filter(pk=backup.pk).update(updated_at=silent)
    assert give_up_stale() == 1

    backup.refresh_from_db()
    assert (backup.status, backup.file_name, backup.sha256) == ("failed", "", "")
    assert "its partial file was deleted" in backup.error
    assert not backup_storage().exists(partial)
    assert Database.objects.get(pk=database.pk).status == DatabaseStatus.AVAILABLE


def test_backup_tasks_are_idempotent(tenants, django_capture_on_commit_callbacks):
    database = tenants("redis")
    seed(database)
    backup = capture(database, django_capture_on_commit_callbacks)
    first = (backup.file_name, backup.sha256, backup.finished_at)

    backup_tasks.backup_run(backup.pk)  # finished: left alone
    backup.refresh_from_db()
    assert (backup.file_name, backup.sha256, backup.finished_at) == first

    # Running under a worker whose heartbeat is fresh: a second (redelivered) message leaves it to it.
    partial = backup_storage().save(f"{database.team.slug}/{database.name}/partial", io.BytesIO(b"x"))
    Backup.objects.filter(pk=backup.pk).update(status="running", file_name=partial, updated_at=timezone.now())
    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.BACKING_UP)
    backup_tasks.backup_run(backup.pk)
    backup.refresh_from_db()
    assert (backup.status, backup.file_name) == ("running", partial)

    # A worker killed mid-way: still running, a partial file on record, and its heartbeat silent.
    silent = timezone.now() - timedelta(seconds=django_settings.PANDASTACK_WORKER_STALE_SECONDS + 1)
    Backup.objects.filter(pk=backup.pk).update(updated_at=silent)
    backup_tasks.backup_run(backup.pk)
    backup.refresh_from_db()
    assert backup.status == "succeeded" and backup.file_name != partial
    assert not backup_storage().exists(partial)

    backup_tasks.restore_run(backup.pk)  # not restoring: nothing happens
    backup.refresh_from_db()
    assert backup.restored_at is None


def test_a_failed_dump_is_recorded_with_its_reason_and_an_event(tenants, team_a, servers):
    """A database whose tenant database is missing on the server: pg_dump fails; the reason is kept
    (without the password), no file is left, the database is available again."""
    database = tenants("postgres")
    services.provisioner_of(database).drop(services.spec_for(database))
    backup = Backup.objects.create(team=database.team, database=database, number=1)
    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.BACKING_UP)

    backup_tasks.backup_run(backup.pk)

    backup.refresh_from_db()
    database.refresh_from_db()
    assert backup.status == "failed" and backup.error.startswith("pg_dump failed (exit 1)")
    assert database.db_name in backup.error
    assert backup.file_name == "" and not list(Path(backup_storage().location).rglob("*.pgdump"))
    assert database.status == DatabaseStatus.AVAILABLE
    event = PlatformEvent.objects.get(kind="database.backup_failed")
    assert event.severity == "error" and event.subject_id == str(database.pk)
    assert services.spec_for(database).password not in backup.error
    assert dumps.pg_connection(services.admin_url_of(database), "x")[1] not in backup.error


# --- requests: refusals and downloads ----------------------------------------------------------------
def test_download_returns_the_same_bytes_and_is_audited(tenants, django_capture_on_commit_callbacks, team_b):
    database = tenants("redis")
    seed(database)
    backup = capture(database, django_capture_on_commit_callbacks)

    handle, name = backup_open(ctx=ctx_of_db(database), backup=backup)
    with handle:
        data = handle.read()
    assert data == stored_path(backup).read_bytes()
    assert hashlib.sha256(data).hexdigest() == backup.sha256 and len(data) == backup.size_bytes
    assert name == f"{database.team.slug}-{database.name}-{Path(backup.file_name).name}"
    assert AuditEvent.objects.filter(action="database.backup_download", target_id=str(database.pk)).exists()

    with pytest.raises(PermissionDenied):
        backup_open(ctx=ctx_of_db(database, "developer"), backup=backup)
    with pytest.raises(NotFound):
        backup_open(ctx=ctx_of(team_b), backup=backup)


def test_requests_refuse_what_cannot_be_done(tenants, django_capture_on_commit_callbacks, team_b):
    database = tenants("redis")
    owner = ctx_of_db(database)
    with pytest.raises(PermissionDenied):
        backup_capture(ctx=ctx_of_db(database, "developer"), database=database)
    with pytest.raises(NotFound):
        backup_capture(ctx=ctx_of(team_b), database=database)

    backup = capture(database, django_capture_on_commit_callbacks)
    with pytest.raises(ValidationFailed) as wrong_name:
        backup_restore(ctx=owner, database=database, backup=backup, confirm="nope")
    assert wrong_name.value.fields == {"confirm": [f"Must be '{database.name}'."]}

    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.BACKING_UP)
    with pytest.raises(Conflict) as busy:
        backup_capture(ctx=owner, database=database)
    assert busy.value.code == "database_not_available"
    with pytest.raises(Conflict):
        backup_restore(ctx=owner, database=database, backup=backup, confirm=database.name)
    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.AVAILABLE)

    failed = Backup.objects.create(team=database.team, database=database, number=9, status="failed")
    with pytest.raises(Conflict) as not_succeeded:
        backup_restore(ctx=owner, database=database, backup=failed, confirm=database.name)
    assert not_succeeded.value.code == "backup_not_succeeded"
    with pytest.raises(Conflict):
        backup_open(ctx=owner, backup=failed)

    other = tenants("redis")
    with pytest.raises(NotFound):  # a backup of another database
        backup_restore(ctx=owner, database=other, backup=backup, confirm=other.name)

    stored_path(backup).unlink()
    with pytest.raises(Conflict) as missing:
        backup_open(ctx=owner, backup=backup)
    assert missing.value.code == "backup_file_missing"


def test_backups_are_numbered_per_database(tenants, django_capture_on_commit_callbacks):
    first, second = tenants("redis"), tenants("redis")
    assert capture(first, django_capture_on_commit_callbacks).number == 1
    assert capture(second, django_capture_on_commit_callbacks).number == 1
    assert capture(first, django_capture_on_commit_callbacks).number == 2


# --- the tools never see a password on their command line ----------------------------------------------
@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_passwords_never_reach_the_tools_command_lines(engine, tenants, tmp_path, monkeypatch):
    database = tenants(engine)
    seed(database)
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(args, **kwargs):
        seen.append(list(args))
        return real_run(args, **kwargs)

    monkeypatch.setattr(dumps.subprocess, "run", spy)
    admin_url, spec = services.admin_url_of(database), services.spec_for(database)
    fmt = dumps.format_for(engine)
    fmt.dump(admin_url, spec, tmp_path / "dump")
    fmt.load(admin_url, spec, tmp_path / "dump")

    admin_password = dumps.pg_connection(admin_url, "x")[1] if engine == "postgres" else ""
    assert seen
    for args in seen:
        for secret in filter(None, (spec.password, admin_password)):
            assert not any(secret in arg for arg in args), args
    if engine == "postgres":
        assert admin_password  # the tests' cluster has one: it went through PGPASSWORD
        # The load logs in as the tenant itself (no --role on an administrator's session).
        restore_args = next(args for args in seen if args[0].endswith("pg_restore") and "--list" not in args)
        assert not any(arg.startswith("--role") for arg in restore_args)
        assert any(arg.startswith(f"--dbname=postgresql://{spec.username}@") for arg in restore_args)
    else:
        load_args = seen[-1]
        assert f"--user={spec.username}" in load_args, load_args


# --- MongoDB: command lines only -----------------------------------------------------------------------
def test_mongodb_command_lines_only_no_mongodb_server_or_tools_can_run_here(tmp_path):
    """No MongoDB server or client tools are installable on this machine: the command lines, the
    private config file with the credentials and the archive check are tested; a real dump is not."""
    spec = DatabaseSpec(db_name="ps7_shop", username="ps7_shop", password="tenant-pw", host="db", port=27017)
    admin_url = "mongodb://root:s3cret%21@mongo.internal:27017/admin?tls=false"
    config = dumps.mongo_config(admin_url, tmp_path)
    archive = tmp_path / "dump.archive.gz"

    dump = dumps.mongodump_command(spec, archive, config)
    load = dumps.mongorestore_command(spec, archive, config)

    assert dump == ["mongodump", f"--config={config}", "--db=ps7_shop", f"--archive={archive}", "--gzip"]
    assert load == ["mongorestore", f"--config={config}", "--nsInclude=ps7_shop.*", "--drop",
                    f"--archive={archive}", "--gzip"]  # fmt: skip
    assert not any("s3cret" in arg for arg in dump + load)
    assert os.stat(config).st_mode & 0o777 == 0o600
    assert config.read_text() == 'uri: "mongodb://root:s3cret%21@mongo.internal:27017/?tls=false&authSource=admin"\n'
    config.unlink()

    good = tmp_path / "good.archive.gz"
    good.write_bytes(gzip.compress(dumps.MONGO_ARCHIVE_MAGIC + b"\x00" * 5000))
    dumps.mongo_validate(good)
    cut = tmp_path / "cut.archive.gz"
    cut.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(BackupError, match="truncated or damaged"):
        dumps.mongo_validate(cut)
    foreign = tmp_path / "foreign.archive.gz"
    foreign.write_bytes(gzip.compress(b"not an archive"))
    with pytest.raises(BackupError, match="not a mongodump archive"):
        dumps.mongo_validate(foreign)
    with pytest.raises(BackupError, match="not installed"):  # and the tools are indeed missing here
        dumps.mongodb_dump(admin_url, spec, archive)
    assert not list(tmp_path.glob("mongo-*.yaml"))  # the credentials file does not outlive the run


def test_the_newest_postgres_client_is_used():
    tool = dumps.pg_tool("pg_dump")
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), key=lambda p: int(p.parent.parent.name))
    assert tool == str(versions[-1])
