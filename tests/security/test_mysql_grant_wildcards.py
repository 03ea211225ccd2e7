"""A MySQL/MariaDB grant names exactly one database (issue 11, item 2).

In a database-level grant `_` matches any one character and `%` any run of them, and every name the
platform generates has underscores (`ps<id>_<name>`). The attack, on the machine's real MariaDB: two
tenant databases whose names collide under wildcard matching (`<tag>_a_b` and `<tag>xaxb`); the first
tenant's user connects to the second's database. Each must reach only its own."""

import contextlib
import uuid
from collections.abc import Iterator

import pymysql
import pytest

from apps.databases.provisioners import DatabaseSpec
from apps.databases.provisioners.mysql import MySQLProvisioner, grant_pattern
from tests.support.database_fixtures import MARIADB_ADMIN_URL


def spec(db_name: str, username: str) -> DatabaseSpec:
    return DatabaseSpec(db_name=db_name, username=username, password=uuid.uuid4().hex, host="127.0.0.1", port=3306)


def connect(s: DatabaseSpec, database: str) -> pymysql.Connection:
    return pymysql.connect(host=s.host, port=s.port, user=s.username, password=s.password, database=database,
                           connect_timeout=5, autocommit=True)  # fmt: skip


@pytest.fixture
def provisioner() -> Iterator[tuple[MySQLProvisioner, list[DatabaseSpec]]]:
    made: list[DatabaseSpec] = []
    yield MySQLProvisioner(MARIADB_ADMIN_URL), made
    for s in made:
        with contextlib.suppress(Exception):
            MySQLProvisioner(MARIADB_ADMIN_URL).drop(s)


def test_databases_colliding_under_wildcards_each_reach_only_their_own(provisioner):
    mysql, made = provisioner
    tag = f"wc{uuid.uuid4().hex[:6]}"
    underscored = spec(f"{tag}_a_b", f"{tag}_u1")  # its grant, unescaped, would match the next name
    lookalike = spec(f"{tag}xaxb", f"{tag}_u2")
    for s in (underscored, lookalike):
        made.append(s)
        mysql.ensure(s)
    with connect(lookalike, lookalike.db_name) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TABLE secrets (value TEXT)")
        cursor.execute("INSERT INTO secrets VALUES ('lookalike-only')")

    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        connect(underscored, lookalike.db_name)
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        connect(lookalike, underscored.db_name)
    # Nor by naming it from inside its own connection.
    with connect(underscored, underscored.db_name) as conn, conn.cursor() as cursor:
        with pytest.raises(pymysql.err.OperationalError, match="denied"):
            cursor.execute(f"SELECT value FROM `{lookalike.db_name}`.secrets")
        cursor.execute("SHOW DATABASES")
        assert {row[0] for row in cursor.fetchall()} - {"information_schema"} == {underscored.db_name}
        cursor.execute("CREATE TABLE mine (x INT)")  # and its own database works as before


def test_ensure_replaces_a_wildcard_grant_left_by_an_older_version(provisioner):
    """Servers provisioned before the fix hold grants on the unescaped name: ensure (run by every
    provision task) takes them back."""
    mysql, made = provisioner
    tag = f"wc{uuid.uuid4().hex[:6]}"
    old, neighbour = spec(f"{tag}_a_b", f"{tag}_u1"), spec(f"{tag}xaxb", f"{tag}_u2")
    made += [old, neighbour]
    mysql.ensure(neighbour)
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with admin, admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{old.db_name}`")
        cursor.execute(f"CREATE USER '{old.username}'@'%%' IDENTIFIED BY %s", [old.password])
        cursor.execute(f"GRANT ALL PRIVILEGES ON `{old.db_name}`.* TO '{old.username}'@'%'")
    connect(old, neighbour.db_name).close()  # the hole, as it was

    mysql.ensure(old)

    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        connect(old, neighbour.db_name)
    connect(old, old.db_name).close()


def test_the_grant_pattern_escapes_both_wildcards():
    assert grant_pattern("ps1_a_b") == "ps1\\_a\\_b"
    assert grant_pattern("x%y") == "x\\%%y"  # `\%`, with the % doubled for pymysql's formatting


def test_reapplying_access_escapes_the_grants_of_existing_databases(team_a, provisioner):
    """After an upgrade, `reapply_database_access` converges every available database's user."""
    from io import StringIO

    from django.core.management import call_command

    from apps.databases import services
    from apps.databases.models import Database, DatabaseStatus
    from apps.secrets import crypto

    mysql, made = provisioner
    tag = f"wc{uuid.uuid4().hex[:6]}"
    neighbour = spec(f"{tag}xaxb", f"{tag}_u2")
    made.append(neighbour)
    mysql.ensure(neighbour)
    server = services.server_register(engine="mysql", admin_url=MARIADB_ADMIN_URL, name="mariadb-wildcards")
    database = Database.objects.create(
        team=team_a.team, project=team_a.project, name="old", engine="mysql", server=server,
        status=DatabaseStatus.AVAILABLE, db_name=f"{tag}_a_b", username=f"{tag}_u1",
        password_encrypted=crypto.encrypt(services.new_password()), host="127.0.0.1", port=3306,
    )  # fmt: skip
    old = services.spec_for(database)
    made.append(old)
    with root_cursor() as cursor:  # as the previous version left it: the unescaped grant
        cursor.execute(f"CREATE DATABASE `{old.db_name}`")
        cursor.execute(f"CREATE USER '{old.username}'@'%%' IDENTIFIED BY %s", [old.password])
        cursor.execute(f"GRANT ALL PRIVILEGES ON `{old.db_name}`.* TO '{old.username}'@'%'")
    connect(old, neighbour.db_name).close()

    out = StringIO()
    call_command("reapply_database_access", "--engine", "mysql", stdout=out, stderr=StringIO())

    assert "0 failed" in out.getvalue()
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        connect(old, neighbour.db_name)
    connect(old, old.db_name).close()


@contextlib.contextmanager
def root_cursor() -> Iterator:
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with conn, conn.cursor() as cursor:
        yield cursor
