"""MongoDB: a user defined in the tenant's own database with the readWrite role on that database and
nothing else; apps authenticate against that database (``authSource=<db>``).

MongoDB creates a database on its first write, so "the database exists" means "its user exists". It
has no per-user connection limit: ``DatabaseSpec.connection_limit`` is not enforced here.

No MongoDB server can be installed on the machines PandaStack is developed on: this module is written
against the server's documented commands and tested against a stand-in client that records them
(tests/databases/test_mongodb.py); it has not been run against a real server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pymongo
import pymongo.errors

from apps.databases.provisioners.base import DatabaseSpec, ProvisionerError, Usage

# The server's error codes (src/mongo/base/error_codes.yml).
USER_NOT_FOUND = 11
USER_ALREADY_EXISTS = (51003, 11000)  # 11000 (DuplicateKey) from servers older than 4.2

# ``client_factory(admin_url, **options)`` returns a client: ``client[name].command(document)`` and
# ``client.close()`` are all this module uses, so a stand-in can record what would be sent.
ClientFactory = Callable[..., Any]


class MongoProvisioner:
    engine = "mongodb"

    def __init__(
        self, admin_url: str, *, connect_timeout: float = 10.0, client_factory: ClientFactory = pymongo.MongoClient
    ) -> None:
        self.admin_url = admin_url
        self.connect_timeout = connect_timeout
        self.client_factory = client_factory

    @contextmanager
    def _admin(self) -> Iterator[Any]:
        where = _where(self.admin_url)
        timeout_ms = int(self.connect_timeout * 1000)
        try:
            # The client connects lazily (on the first command), so a server that is down fails below.
            client = self.client_factory(
                self.admin_url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
                socketTimeoutMS=30_000, appname="pandastack",
            )  # fmt: skip
        except (pymongo.errors.PyMongoError, ValueError, TypeError) as exc:
            raise ProvisionerError(
                f"the administrator URL of MongoDB at {where} is not usable: {_first_line(exc)}"
            ) from None
        try:
            yield client
        except pymongo.errors.OperationFailure as exc:
            raise ProvisionerError(f"MongoDB refused: {_refusal(exc)}") from None
        except pymongo.errors.ConnectionFailure as exc:  # server selection timeouts included
            raise ProvisionerError(
                f"cannot connect to MongoDB at {where} as its administrator: {_first_line(exc)}"
            ) from None
        except pymongo.errors.PyMongoError as exc:
            raise ProvisionerError(f"MongoDB failed: {_first_line(exc)}") from None
        finally:
            client.close()

    def server_version(self) -> str:
        with self._admin() as client:
            return str(client["admin"].command({"buildInfo": 1})["version"])

    def ensure(self, spec: DatabaseSpec) -> None:
        roles = [{"role": "readWrite", "db": spec.db_name}]
        with self._admin() as client:
            database = client[spec.db_name]
            found = database.command({"usersInfo": {"user": spec.username, "db": spec.db_name}})
            if found.get("users"):
                database.command({"updateUser": spec.username, "pwd": spec.password, "roles": roles})
                return
            try:
                database.command({"createUser": spec.username, "pwd": spec.password, "roles": roles})
            except pymongo.errors.OperationFailure as exc:
                if exc.code not in USER_ALREADY_EXISTS:
                    raise
                # Another worker created it since our look-up: converge it all the same.
                database.command({"updateUser": spec.username, "pwd": spec.password, "roles": roles})

    def set_password(self, spec: DatabaseSpec) -> None:
        """The new password is required from the next authentication on. The user's sessions are
        killed (with their running operations and cursors); MongoDB has no command to close another
        user's connections, so a connection that authenticated before stays authenticated until it
        closes — clients reconnect with the new URL when their app is redeployed."""
        with self._admin() as client:
            client[spec.db_name].command({"updateUser": spec.username, "pwd": spec.password})
            self._kill_sessions(client, spec)

    def drop(self, spec: DatabaseSpec) -> None:
        with self._admin() as client:
            database = client[spec.db_name]
            self._kill_sessions(client, spec)
            try:
                database.command({"dropUser": spec.username})
            except pymongo.errors.OperationFailure as exc:
                if exc.code != USER_NOT_FOUND:
                    raise
            database.command({"dropDatabase": 1})

    def usage(self, spec: DatabaseSpec) -> Usage:
        with self._admin() as client:
            stats = client[spec.db_name].command({"dbStats": 1, "scale": 1})
            # "$all" includes idle connections; the other fields filter the operations reported.
            report = client["admin"].command(
                {
                    "currentOp": 1,
                    "$all": True,
                    "effectiveUsers": {"$elemMatch": {"user": spec.username, "db": spec.db_name}},
                }
            )
        connections = {op["connectionId"] for op in report.get("inprog", []) if "connectionId" in op}
        return Usage(size_bytes=_size(stats), connections=len(connections))

    def url(self, spec: DatabaseSpec) -> str:
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        credentials = f"{quote(spec.username, safe='')}:{quote(spec.password, safe='')}"
        return f"mongodb://{credentials}@{host}:{spec.port}/{spec.db_name}?authSource={spec.db_name}"

    @staticmethod
    def _kill_sessions(client: Any, spec: DatabaseSpec) -> None:
        pattern = {"users": [{"user": spec.username, "db": spec.db_name}]}
        client["admin"].command({"killAllSessionsByPattern": [pattern]})


def _size(stats: Mapping[str, Any]) -> int:
    """Bytes on disk: data and indexes (``totalSize`` where the server reports it), else the data's size."""
    if "totalSize" in stats:
        return int(stats["totalSize"])
    if "storageSize" in stats:
        return int(stats["storageSize"]) + int(stats.get("indexSize", 0))
    return int(stats.get("dataSize", 0))


def _where(admin_url: str) -> str:
    """The host list of a MongoDB URL, without its credentials."""
    rest = admin_url.split("://", 1)[-1]
    hosts = rest.rsplit("@", 1)[-1].split("/", 1)[0].split("?", 1)[0]
    return hosts or "(no host)"


def _refusal(exc: pymongo.errors.OperationFailure) -> str:
    # The server's own message and code, without the "full error" document pymongo appends.
    details = exc.details or {}
    message = details.get("errmsg") or _first_line(exc)
    return f"{message} (code {exc.code})" if exc.code is not None else str(message)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
