"""What the platform asks of a database engine, whatever the placement.

A provisioner talks to one server as its administrator (a shared server operators registered, or a
dedicated container's own superuser) and manages one tenant database on it: the database (for
Redis: a key prefix) and a user that can reach only that database. Every method is idempotent, so a
task killed half-way is simply run again: `ensure` converges to "the database and the user exist,
with this password and these limits", `drop` to "neither exists".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

# Names the platform generates (never user input): they are also SQL identifiers and Redis key prefixes.
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class ProvisionerError(Exception):
    """The server refused or could not be reached; the message says what to do (no passwords)."""


@dataclass(frozen=True)
class DatabaseSpec:
    """One tenant database: its name (the key prefix for Redis), its user and password, where apps
    reach it, and its connection limit."""

    db_name: str
    username: str
    password: str
    host: str
    port: int
    connection_limit: int = 10

    def __post_init__(self) -> None:
        for label, value in (("database name", self.db_name), ("user name", self.username)):
            if not SAFE_NAME.fullmatch(value):
                raise ValueError(f"unsafe {label} {value!r}")

    def __repr__(self) -> str:  # never show the password
        return f"DatabaseSpec(db_name={self.db_name!r}, username={self.username!r}, host={self.host!r})"


@dataclass(frozen=True)
class Usage:
    size_bytes: int
    connections: int


class Provisioner(Protocol):
    engine: str

    def server_version(self) -> str:
        """The server's version (checks the admin credentials)."""
        ...

    def ensure(self, spec: DatabaseSpec) -> None:
        """The database and its user exist, the user has this password and limit and can reach
        only this database."""
        ...

    def set_password(self, spec: DatabaseSpec) -> None:
        """Give the user `spec.password`; the old password stops working and the user's open
        sessions are ended."""
        ...

    def drop(self, spec: DatabaseSpec) -> None:
        """Remove the database (its data) and its user; nothing left is fine."""
        ...

    def usage(self, spec: DatabaseSpec) -> Usage:
        """Size on the server and open connections of the user."""
        ...

    def url(self, spec: DatabaseSpec) -> str:
        """The connection URL apps receive (it contains the password)."""
        ...


def provisioner_for(engine: str, admin_url: str) -> Provisioner:
    """The provisioner of `engine` administering the server at `admin_url`."""
    if engine == "postgres":
        from apps.databases.provisioners.postgres import PostgresProvisioner

        return PostgresProvisioner(admin_url)
    if engine == "mysql":
        from apps.databases.provisioners.mysql import MySQLProvisioner

        return MySQLProvisioner(admin_url)
    if engine == "redis":
        from apps.databases.provisioners.redis import RedisProvisioner

        return RedisProvisioner(admin_url)
    if engine == "mongodb":
        from apps.databases.provisioners.mongodb import MongoProvisioner

        return MongoProvisioner(admin_url)
    raise ProvisionerError(f"unknown engine {engine!r}")
