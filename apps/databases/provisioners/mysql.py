"""MySQL / MariaDB: a database and a user with every privilege on it and nothing else.

The grant names exactly one database: `_` and `%` in a database-level grant are wildcards, so the
name is escaped there (`grant_pattern`); CREATE / DROP DATABASE take the plain name."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pymysql

from apps.databases.provisioners.base import DatabaseSpec, ProvisionerError, Usage


class MySQLProvisioner:
    engine = "mysql"

    def __init__(self, admin_url: str, *, connect_timeout: int = 10) -> None:
        parts = urlsplit(admin_url)
        self._connect_args: dict[str, Any] = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 3306,
            "user": unquote(parts.username or "root"),
            "password": unquote(parts.password or ""),
            "connect_timeout": connect_timeout,
            "autocommit": True,
        }

    @contextmanager
    def _admin(self) -> Iterator[Any]:
        try:
            conn = pymysql.connect(**self._connect_args)
        except pymysql.MySQLError as exc:
            where = f"{self._connect_args['host']}:{self._connect_args['port']}"
            raise ProvisionerError(f"cannot connect to MySQL at {where} as its administrator: {_text(exc)}") from None
        try:
            with conn.cursor() as cursor:
                yield cursor
        except pymysql.MySQLError as exc:
            raise ProvisionerError(f"MySQL refused: {_text(exc)}") from None
        finally:
            conn.close()

    def server_version(self) -> str:
        with self._admin() as cursor:
            cursor.execute("SELECT VERSION()")
            return str(cursor.fetchone()[0])

    def ensure(self, spec: DatabaseSpec) -> None:
        # Names are checked by DatabaseSpec (a-z, 0-9, _), so quoting them is safe; values go as parameters
        # (every statement gets a parameter list, so "%" is written "%%" throughout).
        user = _user(spec.username)
        with self._admin() as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{spec.db_name}` CHARACTER SET utf8mb4", [])
            cursor.execute(f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY %s", [spec.password])
            cursor.execute(
                f"ALTER USER {user} IDENTIFIED BY %s WITH MAX_USER_CONNECTIONS %s",
                [spec.password, spec.connection_limit],
            )
            # A grant made before names were escaped matched every database its `_` could stand
            # for: take it back (an error means there is none), then grant on the one database.
            with contextlib.suppress(pymysql.MySQLError):
                cursor.execute(f"REVOKE ALL PRIVILEGES ON `{spec.db_name}`.* FROM {user}", [])
            cursor.execute(f"GRANT ALL PRIVILEGES ON `{grant_pattern(spec.db_name)}`.* TO {user}", [])

    def set_password(self, spec: DatabaseSpec) -> None:
        with self._admin() as cursor:
            cursor.execute(f"ALTER USER {_user(spec.username)} IDENTIFIED BY %s", [spec.password])
            self._kill_sessions(cursor, spec.username)

    def drop(self, spec: DatabaseSpec) -> None:
        with self._admin() as cursor:
            self._kill_sessions(cursor, spec.username)
            cursor.execute(f"DROP DATABASE IF EXISTS `{spec.db_name}`", [])
            cursor.execute(f"DROP USER IF EXISTS {_user(spec.username)}", [])

    def usage(self, spec: DatabaseSpec) -> Usage:
        with self._admin() as cursor:
            cursor.execute(
                "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables"
                " WHERE table_schema = %s",
                [spec.db_name],
            )
            size = int(cursor.fetchone()[0])
            cursor.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE user = %s", [spec.username])
            connections = int(cursor.fetchone()[0])
        return Usage(size_bytes=size, connections=connections)

    def url(self, spec: DatabaseSpec) -> str:
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        return (
            f"mysql://{quote(spec.username, safe='')}:{quote(spec.password, safe='')}@{host}:{spec.port}/{spec.db_name}"
        )

    @staticmethod
    def _kill_sessions(cursor: Any, username: str) -> None:
        cursor.execute("SELECT id FROM information_schema.processlist WHERE user = %s", [username])
        for (session_id,) in cursor.fetchall():
            with contextlib.suppress(pymysql.MySQLError):  # it ended by itself meanwhile
                cursor.execute("KILL %s", [int(session_id)])


def grant_pattern(db_name: str) -> str:
    """The database name as a database-level grant reads it: there `_` and `%` are wildcards (`_`
    any one character, `%` any run), so `ps1_a_b` would also grant `ps1xaxb`. Escaped with a
    backslash they match only themselves. (Inside backquotes the backslash is kept as written, and
    the server's pattern matcher reads it as the escape.) Doubled for pymysql's %-formatting, as
    every statement here has a parameter list."""
    escaped = db_name.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
    return escaped.replace("%", "%%")


def _user(username: str) -> str:
    """The account from any host, quoted for a statement that has parameters."""
    return f"'{username}'@'%%'"


def _text(exc: Exception) -> str:
    args = getattr(exc, "args", ())
    return str(args[1] if len(args) > 1 else exc)[:300]
