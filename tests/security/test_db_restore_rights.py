"""Restores run with the tenant's own rights (issue 11, item 1).

A backup's content is the tenant's: loading it runs code the tenant wrote. These attacks go through
the platform's real restore path (backup_capture / backup_restore and their tasks) against real
servers: PostgreSQL is the tests' own password-auth cluster (`pg_cluster`), MariaDB the machine's.

- PostgreSQL: a function behind a CHECK constraint does `RESET ROLE; ALTER ROLE <tenant> SUPERUSER`.
  It runs for every row pg_restore loads; in a session that logged in as the superuser (even after
  `--role=<tenant>`) RESET ROLE returns to the superuser and the ALTER succeeds. After the restore
  the tenant must still be an ordinary role.
- MariaDB: a backup file carrying statements aimed at the administrator (a procedure with
  `DEFINER=root` and SQL SECURITY DEFINER that grants everything, a direct GRANT, a SET GLOBAL). The
  platform's own dumps never contain them, so the file in the backup storage is rewritten (as a
  tampered store, a future upload, or a dump-format bug would leave it); its checksum is recorded
  so the restore accepts it. Nothing of it may take effect.
"""

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest

from apps.databases import backup_tasks, services
from apps.databases.backups import backup_capture, backup_restore, backup_storage
from apps.databases.dumps import sha256_of
from apps.databases.models import Backup, Database, DatabaseStatus
from tests.conftest import TeamWorld
from tests.support.database_fixtures import MARIADB_ADMIN_URL, ctx_of, provisioned_database


@pytest.fixture(autouse=True)
def backup_folder(settings, tmp_path) -> Path:
    folder = tmp_path / "backups"
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(folder)}},
    }
    return folder


@pytest.fixture
def tenant(team_a: TeamWorld, pg_cluster) -> Iterator[Callable[[str], Database]]:
    """tenant(engine) -> an available database of team_a on the real server, dropped at teardown."""
    admin_urls = {"postgres": pg_cluster.admin_url, "mysql": MARIADB_ADMIN_URL}
    made: list[Database] = []

    def make(engine: str) -> Database:
        server = services.server_register(engine=engine, admin_url=admin_urls[engine], name=f"{engine}-rights")
        database = provisioned_database(team_a, server, admin_urls[engine], prefix="rr")
        made.append(database)
        return database

    yield make
    for database in made:
        with contextlib.suppress(Exception):  # best effort: never hide the test's own failure
            services.provisioner_of(database).drop(services.spec_for(database))


def capture(team_a: TeamWorld, database: Database, django_capture_on_commit_callbacks) -> Backup:
    with django_capture_on_commit_callbacks(execute=False):
        backup = backup_capture(ctx=ctx_of(team_a), database=database)
    backup_tasks.backup_run(backup.pk)
    backup.refresh_from_db()
    assert backup.status == "succeeded", backup.error
    return backup


def restore(team_a: TeamWorld, database: Database, backup: Backup, django_capture_on_commit_callbacks) -> None:
    """The platform's restore path: the request (as the team's owner), then its task."""
    with django_capture_on_commit_callbacks(execute=False):  # the task runs here, not through the broker
        backup_restore(ctx=ctx_of(team_a), database=database, backup=backup, confirm=database.name)
    backup_tasks.restore_run(backup.pk)
    database.refresh_from_db()


# --- PostgreSQL --------------------------------------------------------------------------------------
ESCALATE = """
CREATE FUNCTION public.escalate(x integer) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
    BEGIN
        RESET ROLE;  -- back to whoever logged in
        EXECUTE 'ALTER ROLE ' || quote_ident({role}) || ' SUPERUSER';
    EXCEPTION WHEN OTHERS THEN
        NULL;  -- as the tenant this fails: stay quiet so the row still loads
    END;
    RETURN x IS NOT NULL;
END
$fn$;
CREATE TABLE public.items (x integer CHECK (public.escalate(x)));
INSERT INTO public.items VALUES (1), (2), (3);
"""


def test_postgres_a_check_constraint_cannot_make_the_tenant_a_superuser_during_restore(
    team_a, tenant, pg_cluster, django_capture_on_commit_callbacks
):
    database = tenant("postgres")
    spec = services.spec_for(database)
    tenant_conn = {"host": "127.0.0.1", "port": pg_cluster.port, "user": spec.username, "password": spec.password,
                   "dbname": spec.db_name, "autocommit": True, "connect_timeout": 5}  # fmt: skip
    with psycopg.connect(**tenant_conn) as conn:
        conn.execute(ESCALATE.replace("{role}", f"'{spec.username}'"))
    backup = capture(team_a, database, django_capture_on_commit_callbacks)
    with psycopg.connect(**tenant_conn) as conn:
        conn.execute("DELETE FROM public.items WHERE x = 3")

    restore(team_a, database, backup, django_capture_on_commit_callbacks)

    with psycopg.connect(pg_cluster.admin_url, autocommit=True) as admin:
        rolsuper = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [spec.username]).fetchone()
    assert rolsuper == (False,), "the restore ran the tenant's function with the superuser's rights"
    # And the restore itself worked, as the tenant: the data is back, the objects are the tenant's.
    assert database.status == DatabaseStatus.AVAILABLE and database.status_reason == "", database.status_reason
    with psycopg.connect(**tenant_conn) as conn:
        assert conn.execute("SELECT x FROM public.items ORDER BY x").fetchall() == [(1,), (2,), (3,)]
        assert conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'items'").fetchone() == (
            spec.username,
        )


# --- MariaDB -----------------------------------------------------------------------------------------
def root() -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True, connect_timeout=5)


@pytest.fixture
def slow_launch_time() -> Iterator[int]:
    """A harmless global variable the hostile file tries to set; put back whatever happens."""
    with root() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT @@GLOBAL.slow_launch_time")
        original = int(cursor.fetchone()[0])
    yield original
    with root() as conn, conn.cursor() as cursor:
        cursor.execute("SET GLOBAL slow_launch_time = %s", [original])


def grants_of(username: str) -> list[str]:
    with root() as conn, conn.cursor() as cursor:
        cursor.execute(f"SHOW GRANTS FOR '{username}'@'%'")
        return sorted(row[0] for row in cursor.fetchall())


def test_mariadb_a_backup_aimed_at_the_administrator_gains_nothing(
    team_a, tenant, slow_launch_time, django_capture_on_commit_callbacks
):
    database = tenant("mysql")
    spec = services.spec_for(database)
    tenant_conn = {"host": "127.0.0.1", "port": 3306, "user": spec.username, "password": spec.password,
                   "database": spec.db_name, "autocommit": True, "connect_timeout": 5}  # fmt: skip
    with pymysql.connect(**tenant_conn) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE items (id INT PRIMARY KEY)")
        cursor.execute("INSERT INTO items VALUES (1), (2)")
    grants_before = grants_of(spec.username)
    backup = capture(team_a, database, django_capture_on_commit_callbacks)

    # The hostile statements go just before the dump's last lines (its footer stays valid).
    path = Path(backup_storage().path(backup.file_name))
    lines = path.read_bytes().splitlines(keepends=True)
    hostile = (
        f"CREATE DEFINER=`root`@`localhost` PROCEDURE `escalate`() SQL SECURITY DEFINER "
        f"GRANT ALL PRIVILEGES ON *.* TO '{spec.username}'@'%' WITH GRANT OPTION;\n"
        f"GRANT ALL PRIVILEGES ON *.* TO '{spec.username}'@'%';\n"
        f"SET GLOBAL slow_launch_time = {slow_launch_time + 7};\n"
    ).encode()
    path.write_bytes(b"".join(lines[:-2]) + hostile + b"".join(lines[-2:]))
    Backup.objects.filter(pk=backup.pk).update(size_bytes=path.stat().st_size, sha256=sha256_of(path))
    backup.refresh_from_db()

    restore(team_a, database, backup, django_capture_on_commit_callbacks)

    assert grants_of(spec.username) == grants_before
    with root() as conn, conn.cursor() as cursor:
        cursor.execute("SELECT @@GLOBAL.slow_launch_time")
        assert int(cursor.fetchone()[0]) == slow_launch_time
        cursor.execute("SELECT DEFINER FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s", [spec.db_name])
        assert all(not definer.startswith("root@") for (definer,) in cursor.fetchall())
    # The tenant cannot call its way up either, and the server said why the load stopped.
    with pymysql.connect(**tenant_conn) as conn, conn.cursor() as cursor, contextlib.suppress(pymysql.MySQLError):
        cursor.execute("CALL escalate()")
    assert grants_of(spec.username) == grants_before
    assert "denied" in database.status_reason.lower(), database.status_reason


# --- MongoDB -----------------------------------------------------------------------------------------
def test_mongodb_restore_authenticates_as_the_tenant_command_line_only(tmp_path, monkeypatch):
    """No MongoDB server or tools can be installed here, so this attack cannot be run: what is checked
    is that mongorestore is handed the tenant's credentials (authSource its own database, where its
    readWrite-only user lives), never the administrator's, and that the private file is gone after."""
    import gzip

    from apps.databases import dumps
    from apps.databases.provisioners import DatabaseSpec

    spec = DatabaseSpec(db_name="ps7_shop", username="ps7_shop", password="tenant-pw", host="db", port=27017)
    admin_url = "mongodb://root:s3cret%21@mongo.internal:27017/admin?tls=true&authSource=admin"
    archive = tmp_path / "dump.archive.gz"
    archive.write_bytes(gzip.compress(dumps.MONGO_ARCHIVE_MAGIC + b"\x00" * 100))
    seen: dict[str, str] = {}

    def run_tool(args, **kwargs):
        config = next(arg.split("=", 1)[1] for arg in args if arg.startswith("--config="))
        seen["args"], seen["config"] = " ".join(args), Path(config).read_text()

    monkeypatch.setattr(dumps, "run_tool", run_tool)
    dumps.mongodb_load(admin_url, spec, archive)

    assert seen["config"] == 'uri: "mongodb://ps7_shop:tenant-pw@mongo.internal:27017/?tls=true&authSource=ps7_shop"\n'
    assert "s3cret" not in seen["config"] + seen["args"] and "root" not in seen["config"]
    assert not list(tmp_path.glob("mongo-*.yaml"))
