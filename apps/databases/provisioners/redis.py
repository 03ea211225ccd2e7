"""Redis: an ACL user limited to its own key prefix ("<db_name>:") and to safe commands.

Commands that would show other tenants' key or channel names whatever the key patterns say (SCAN,
KEYS, RANDOMKEY, DBSIZE, PUBSUB CHANNELS) and every command Redis classes as dangerous or as
administration are denied; so is SELECT (the prefix is the tenant's space, in database 0).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import redis

from apps.databases.provisioners.base import DatabaseSpec, ProvisionerError, Usage

ALLOWED_CATEGORIES = (
    "+@read", "+@write", "+@keyspace", "+@string", "+@list", "+@hash", "+@set", "+@sortedset", "+@bitmap",
    "+@hyperloglog", "+@geo", "+@stream", "+@pubsub", "+@transaction", "+@connection", "+@scripting",
)  # fmt: skip
DENIED = ("-@dangerous", "-@admin", "-scan", "-keys", "-randomkey", "-dbsize", "-pubsub", "-select", "-swapdb",
          "-move", "-migrate", "-script|flush", "-function")  # fmt: skip
SIZE_SAMPLE_KEYS = 10_000  # beyond this many keys, the size is estimated from a sample


class RedisProvisioner:
    engine = "redis"

    def __init__(self, admin_url: str, *, connect_timeout: float = 10.0) -> None:
        self.admin_url = admin_url
        self.connect_timeout = connect_timeout

    @contextmanager
    def _admin(self) -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(self.admin_url, socket_connect_timeout=self.connect_timeout, socket_timeout=30)
        try:
            yield client
        except redis.ConnectionError as exc:
            raise ProvisionerError(f"cannot connect to Redis as its administrator: {exc}") from None
        except redis.RedisError as exc:
            raise ProvisionerError(f"Redis refused: {exc}") from None
        finally:
            client.close()

    def server_version(self) -> str:
        with self._admin() as client:
            return str(client.info("server")["redis_version"])

    def rules(self, spec: DatabaseSpec) -> list[str]:
        prefix = f"{spec.db_name}:"
        return [
            "reset", "on", f">{spec.password}", f"~{prefix}*", f"&{prefix}*", "-@all", *ALLOWED_CATEGORIES, *DENIED,
        ]  # fmt: skip

    def ensure(self, spec: DatabaseSpec) -> None:
        with self._admin() as client:
            client.execute_command("ACL", "SETUSER", spec.username, *self.rules(spec))
            _save_acl(client)

    def set_password(self, spec: DatabaseSpec) -> None:
        with self._admin() as client:
            client.execute_command("ACL", "SETUSER", spec.username, "resetpass", f">{spec.password}")
            _save_acl(client)
            client.execute_command("CLIENT", "KILL", "USER", spec.username)

    def drop(self, spec: DatabaseSpec) -> None:
        with self._admin() as client:
            client.execute_command("ACL", "DELUSER", spec.username)
            _save_acl(client)
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{spec.db_name}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)

    def usage(self, spec: DatabaseSpec) -> Usage:
        with self._admin() as client:
            keys = 0
            sampled = 0
            size = 0
            for key in client.scan_iter(match=f"{spec.db_name}:*", count=1000):
                keys += 1
                if sampled < SIZE_SAMPLE_KEYS:
                    size += int(client.memory_usage(key) or 0)
                    sampled += 1
            estimate = size if keys == sampled else int(size * keys / max(1, sampled))
            clients = client.client_list()
            connections = sum(1 for c in clients if c.get("user") == spec.username)
        return Usage(size_bytes=estimate, connections=connections)

    def url(self, spec: DatabaseSpec) -> str:
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        return f"redis://{quote(spec.username, safe='')}:{quote(spec.password, safe='')}@{host}:{spec.port}/0"


def _save_acl(client: redis.Redis) -> None:
    """Persist the users when the server has an ACL file (else they live until it restarts: the
    reconciler-style `ensure` on every provision task brings them back)."""
    with contextlib.suppress(redis.ResponseError):  # no aclfile configured
        client.execute_command("ACL", "SAVE")
