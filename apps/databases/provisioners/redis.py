"""Redis: an ACL user limited to its own key prefix ("<db_name>:") and to safe commands.

Commands that would show other tenants' key or channel names whatever the key patterns say (SCAN,
KEYS, RANDOMKEY, DBSIZE, PUBSUB CHANNELS, CLIENT TRACKING, whose broadcast mode reports every key
changed on the server) and every command Redis classes as dangerous or as administration are
denied; so is SELECT (the prefix is the tenant's space, in database 0).

What a tenant may not do to its neighbours on a shared server, and what it still can:
- Scripts are refused (EVAL, EVALSHA, SCRIPT, FUNCTION, FCALL): Redis runs one script at a time and
  nothing else meanwhile, so a tenant's busy loop would stall every tenant (and `SCRIPT KILL` is a
  neighbour's only way out). Tenants that need scripts get a dedicated Redis.
- Memory cannot be capped per user: Redis has one `maxmemory` for the whole server. A shared server
  must have one (registration refuses a server without it), so a tenant filling it cannot take the
  host's memory; but within it one tenant can still crowd out the others (with an eviction policy
  their keys are evicted; with `noeviction` their writes fail). The platform measures each tenant's
  size (`usage`); hard isolation of memory is what the dedicated placement is for.
- CPU: one slow command (a big SUNIONSTORE, SORT) delays everyone, as on any shared Redis.

`isolation_problems` is what registration checks before a server may hold tenants side by side.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import quote, urlsplit

import redis

from apps.databases.provisioners.base import DatabaseSpec, ProvisionerError, Usage

ALLOWED_CATEGORIES = (
    "+@read", "+@write", "+@keyspace", "+@string", "+@list", "+@hash", "+@set", "+@sortedset", "+@bitmap",
    "+@hyperloglog", "+@geo", "+@stream", "+@pubsub", "+@transaction", "+@connection",
)  # fmt: skip
DENIED = ("-@dangerous", "-@admin", "-@scripting", "-scan", "-keys", "-randomkey", "-dbsize", "-pubsub", "-select",
          "-swapdb", "-move", "-migrate", "-client|tracking")  # fmt: skip
SIZE_SAMPLE_KEYS = 10_000  # per tenant: beyond this many keys, the size is estimated from a sample
SCAN_COUNT = 1000  # keys per SCAN page (one round trip, and one for the page's MEMORY USAGE)


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

    def server_id(self) -> str:
        """The server process's run id: the same for every address and database number it answers on."""
        with self._admin() as client:
            return str(client.info("server")["run_id"])

    def isolation_problems(self) -> list[str]:
        """Why this server cannot hold tenants side by side (empty: it can): it must have ACLs,
        no enabled user without a password (`nopass`: whoever reaches the port is that user, the
        `default` user included), and a `maxmemory`."""
        problems: list[str] = []
        with self._admin() as client:
            try:
                users = client.execute_command("ACL", "LIST")
            except redis.ResponseError:
                return ["it has no ACL users (Redis 6 or newer is needed)"]
            for line in users:
                words = (line.decode() if isinstance(line, bytes) else str(line)).split()
                if len(words) >= 2 and "on" in words[2:] and "nopass" in words[2:]:
                    problems.append(
                        f"its user '{words[1]}' is enabled without a password, so anyone who reaches the port "
                        f"is that user (disable it: `ACL SETUSER {words[1]} off`, or give it a password)"
                    )
            if not int(client.info("memory").get("maxmemory", 0) or 0):
                problems.append("it has no maxmemory, so one tenant could fill the host's memory (set `maxmemory`)")
        return problems

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
        return self.usage_of([spec])[spec.db_name]

    def usage_of(self, specs: Sequence[DatabaseSpec]) -> dict[str, Usage]:
        """Size and connections of tenants of this server (by database name), in one pass over its
        keys however many tenants and keys there are: SCAN pages of SCAN_COUNT keys (only the
        tenant's keys when there is one), the memory of each page's keys asked in one pipeline (at
        most SIZE_SAMPLE_KEYS keys per tenant; beyond, the size is estimated from them), and one
        CLIENT LIST. Round trips grow with the server's keys / SCAN_COUNT, nothing else."""
        tenants = {f"{spec.db_name}:".encode(): spec.db_name for spec in specs}
        keys = dict.fromkeys(tenants.values(), 0)
        sampled = dict.fromkeys(tenants.values(), 0)
        size = dict.fromkeys(tenants.values(), 0)
        only = f"{specs[0].db_name}:*" if len(specs) == 1 else None
        with self._admin() as client:
            cursor = None
            while cursor != 0:
                cursor, page = client.scan(cursor or 0, match=only, count=SCAN_COUNT)
                pipe = client.pipeline(transaction=False)
                asked = []
                for key in page:
                    name = tenants.get(key.partition(b":")[0] + b":")
                    if name is None:
                        continue  # another tenant's, or the server's own
                    keys[name] += 1
                    if sampled[name] < SIZE_SAMPLE_KEYS:
                        pipe.memory_usage(key)
                        asked.append(name)
                        sampled[name] += 1
                for name, used in zip(asked, pipe.execute() if asked else [], strict=True):
                    size[name] += int(used or 0)  # None: the key went away since the page was read
            users = Counter(c.get("user") for c in client.client_list())
        return {
            spec.db_name: Usage(
                size_bytes=size[spec.db_name] * keys[spec.db_name] // max(1, sampled[spec.db_name]),
                connections=users[spec.username],
            )
            for spec in specs
        }

    def url(self, spec: DatabaseSpec) -> str:
        host = f"[{spec.host}]" if ":" in spec.host else spec.host
        return f"redis://{quote(spec.username, safe='')}:{quote(spec.password, safe='')}@{host}:{spec.port}/0"


def _save_acl(client: redis.Redis) -> None:
    """Persist the users when the server has an ACL file (else they live until it restarts: the
    reconciler-style `ensure` on every provision task brings them back)."""
    with contextlib.suppress(redis.ResponseError):  # no aclfile configured
        client.execute_command("ACL", "SAVE")


# --- may this server hold tenants? -------------------------------------------------------------------
def platform_redis_urls() -> list[str]:
    """The platform's own Redis instances (broker, results, cache): never a tenants' server."""
    from django.conf import settings

    urls = [getattr(settings, name, "") for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL")]
    for cache in getattr(settings, "CACHES", {}).values():
        location = cache.get("LOCATION", "")
        urls.extend(location if isinstance(location, list | tuple) else [location])
    return [url for url in urls if isinstance(url, str) and url.startswith(("redis://", "rediss://"))]


def _addresses(host: str) -> set[str]:
    """Every address `host` stands for; all loopback addresses count as one (the same machine)."""
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (OSError, UnicodeError):
        found = {host}
    normalised = set()
    for address in found:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            normalised.add(address)
            continue
        normalised.add("loopback" if ip.is_loopback or ip.is_unspecified else str(ip))
    return normalised


def _endpoint(url: str) -> tuple[set[str], int] | None:
    try:
        parts = urlsplit(url)
        return _addresses(parts.hostname or "localhost"), parts.port or 6379
    except ValueError:
        return None


def shared_redis_problems(admin_url: str, *, platform_urls: list[str] | None = None) -> list[str]:
    """Why the Redis at `admin_url` may not become a shared server (empty: it may).

    It must not be the platform's own broker or cache, whatever database number: Redis databases
    share one process's memory, CPU, clients and ACL users, so a tenant there could starve the
    platform's queues. Compared by address and port, then by the server's run id (the same process
    seen through another name or a forwarded port). Then `isolation_problems`."""
    platform_urls = platform_redis_urls() if platform_urls is None else platform_urls
    own = "it is the platform's own Redis (its Celery broker or cache); give tenants a Redis of their own"
    target = _endpoint(admin_url)
    for url in platform_urls:
        theirs = _endpoint(url)
        if target and theirs and target[1] == theirs[1] and target[0] & theirs[0]:
            return [own]
    provisioner = RedisProvisioner(admin_url)
    run_id = provisioner.server_id()
    for url in platform_urls:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            if str(client.info("server")["run_id"]) == run_id:
                return [own]
        except redis.RedisError:
            continue  # unreachable from here: the address comparison above is what we have
        finally:
            client.close()
    return provisioner.isolation_problems()
