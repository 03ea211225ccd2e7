"""PostgreSQL: a role and a database it owns; PUBLIC may not connect to it; a connection limit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

from apps.databases.provisioners.base import DatabaseSpec, ProvisionerError, Usage


class PostgresProvisioner:
    engine = "postgres"

    def __init__(self, admin_url: str, *, connect_timeout: int = 10) -> None:
        self.admin_url = admin_url
        self.connect_timeout = connect_timeout

    @contextmanager
    def _admin(self, dbname: str | None = None) -> Iterator[psycopg.Connection]:
        parts = urlsplit(self.admin_url)
        try:
            conn = psycopg.connect(
                self.admin_url, autocommit=True, connect_timeout=self.connect_timeout,
                **({"dbname": dbname} if dbname else {}),
            )  # fmt: skip
        except psycopg.Error as exc:
            raise ProvisionerError(
                f"cannot connect to PostgreSQL at {parts.hostname}:{parts.port or 5432} as its administrator: "
                f"{_first_line(exc)}"
            ) from None
        try:
            yield conn
        except psycopg.Error as exc:
            raise ProvisionerError(f"PostgreSQL refused: {_first_line(exc)}") from None
        finally:
            conn.close()

    def server_version(self) -> str:
        with self._admin() as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])

    def ensure(self, spec: DatabaseSpec) -> None:
        role, database = sql.Identifier(spec.username), sql.Identifier(spec.db_name)
        options = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT {} PASSWORD {}")
        options = options.format(sql.Literal(spec.connection_limit), sql.Literal(spec.password))
        with self._admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [spec.username]).fetchone()
            try:
                conn.execute(sql.SQL(("ALTER" if exists else "CREATE") + " ROLE {} WITH ").format(role) + options)
            except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                # Made since we looked: by the statement of a worker killed while it waited on a lock,
                # which the server still ran after the worker was gone (a unique violation when both
                # statements were in flight at once).
                conn.execute(sql.SQL("ALTER ROLE {} WITH ").format(role) + options)
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [spec.db_name]).fetchone():
                # CREATE DATABASE cannot run in a transaction; a retry after a crash lands here again.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):  # same race
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, role))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(database, role))
        with self._admin(spec.db_name) as conn:
            # The tenant owns its schema; nobody else may create in it.
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(role))
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")

    def set_password(self, spec: DatabaseSpec) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(
                    sql.Identifier(spec.username), sql.Literal(spec.password)
                )
            )
            # Sessions opened with the old password end too.
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [spec.username])

    def drop(self, spec: DatabaseSpec) -> None:
        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(spec.db_name)))
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [spec.username]).fetchone():
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [spec.username]
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(spec.username)))

    def usage(self, spec: DatabaseSpec) -> Usage:
        with self._admin() as conn:
            size = conn.execute(
                "SELECT pg_database_size(datname) FROM pg_database WHERE datname = %s", [spec.db_name]
            ).fetchone()
            connections = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s",
                [spec.db_name, spec.username],
            ).fetchone()
        return Usage(size_bytes=int(size[0]) if size else 0, connections=int(connections[0]))

    def url(self, spec: DatabaseSpec) -> str:
        return (
            f"postgres://{quote(spec.username, safe='')}:{quote(spec.password, safe='')}@{_host(spec.host)}:{spec.port}"
            f"/{spec.db_name}"
        )


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
