"""A shared Redis is really shared between tenants only (issue 11, item 3), on real redis-server
processes started here:

- registration (the service, the `registerserver` command, the admin all call it) refuses a Redis
  whose `default` user is enabled without a password (whoever reaches the port is an administrator:
  every tenant's keys are theirs), one without a memory limit, and the platform's own broker/cache
  instance, under whatever name or database number;
- a tenant cannot stall its neighbours with a script (Redis runs one at a time and nothing else
  meanwhile), nor learn their key names through client-side caching's broadcast mode.

Memory cannot be capped per user in Redis: that is documented (apps/databases/provisioners/redis.py),
not tested."""

import contextlib
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.core.management import CommandError, call_command

from apps.core.errors import ValidationFailed
from apps.databases import services
from apps.databases.models import DatabaseServer
from apps.databases.provisioners import DatabaseSpec
from apps.databases.provisioners.redis import RedisProvisioner
from tests.support.database_fixtures import start_redis, stop_redis


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="pandastack-redis-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def open_redis(scratch: Path) -> Iterator[int]:
    """A Redis as it comes out of the box, except for a memory limit: `default` on, no password."""
    process, port = start_redis(scratch, "maxmemory 64mb")
    yield port
    stop_redis(process)


@pytest.fixture
def unbounded_redis(scratch: Path) -> Iterator[tuple[int, str]]:
    """Default user off, an admin with a password, but no maxmemory."""
    password = uuid.uuid4().hex
    process, port = start_redis(scratch, "user default off", f"user admin on >{password} ~* &* +@all")
    yield port, password
    stop_redis(process)


# --- registration ------------------------------------------------------------------------------------
def test_a_redis_whose_default_user_has_no_password_is_refused(db, open_redis: int) -> None:
    url = f"redis://127.0.0.1:{open_redis}/0"
    with pytest.raises(ValidationFailed) as refused:
        services.server_register(engine="redis", admin_url=url, name="open-redis")
    assert refused.value.code == "unsafe_shared_server"
    assert "user 'default' is enabled without a password" in refused.value.message
    with pytest.raises(CommandError, match="user 'default' is enabled without a password"):
        call_command("registerserver", "redis", url)
    assert not DatabaseServer.objects.exists()
    # The hole it would have been: anyone reaching the port reads every tenant's keys.
    redis.Redis(port=open_redis).set("ps1_victim:secret", "x")
    assert redis.Redis(port=open_redis).get("ps1_victim:secret") == b"x"


def test_a_redis_without_a_memory_limit_is_refused(db, unbounded_redis: tuple[int, str]) -> None:
    port, password = unbounded_redis
    with pytest.raises(ValidationFailed, match="no maxmemory"):
        services.server_register(engine="redis", admin_url=f"redis://admin:{password}@127.0.0.1:{port}/0")
    assert not DatabaseServer.objects.exists()


@pytest.mark.parametrize(
    "setting", ["CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL", "CACHES"], ids=str.lower
)
def test_the_platforms_own_broker_or_cache_is_refused_under_any_name_or_database(
    db, settings, shared_redis, setting: str
) -> None:
    platform_url = f"redis://admin:{shared_redis.admin_password}@127.0.0.1:{shared_redis.port}/3"
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "REDIS_URL"):
        setattr(settings, name, "")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    if setting == "CACHES":
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                       "LOCATION": platform_url}}  # fmt: skip
    else:
        setattr(settings, setting, platform_url)
    # Another name for the same host, another database number: the same Redis process all the same.
    candidate = f"redis://admin:{shared_redis.admin_password}@localhost:{shared_redis.port}/0"

    with pytest.raises(ValidationFailed, match="platform's own Redis"):
        services.server_register(engine="redis", admin_url=candidate, name="sneaky")
    assert not DatabaseServer.objects.exists()


def test_the_platforms_redis_is_recognised_by_its_run_id_behind_another_address(
    db, settings, shared_redis
) -> None:
    """Reached through a port forwarder (another address and port), the platform's Redis is still
    the same process: its run id gives it away."""
    listener = socket.create_server(("127.0.0.1", 0))
    forward_port = listener.getsockname()[1]
    stop = False

    def pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(("127.0.0.1", shared_redis.port))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        settings.CELERY_BROKER_URL = f"redis://admin:{shared_redis.admin_password}@127.0.0.1:{forward_port}/1"
        settings.CELERY_RESULT_BACKEND = settings.REDIS_URL = ""
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        with pytest.raises(ValidationFailed, match="platform's own Redis"):
            services.server_register(engine="redis", admin_url=shared_redis.admin_url, name="behind-a-forwarder")
    finally:
        stop = True
        thread.join(timeout=2)
        listener.close()


def test_the_tests_own_redis_with_the_default_user_off_is_accepted(db, shared_redis) -> None:
    server = services.server_register(engine="redis", admin_url=shared_redis.admin_url, name="own-redis")
    assert server.version.startswith(("6.", "7."))


# --- what a tenant may not do to its neighbours ------------------------------------------------------
@pytest.fixture
def two_tenants(shared_redis) -> Iterator[tuple[DatabaseSpec, DatabaseSpec]]:
    provisioner = RedisProvisioner(shared_redis.admin_url)
    specs = []
    for _ in range(2):
        name = f"ps{uuid.uuid4().hex[:6]}_t"
        spec = DatabaseSpec(db_name=name, username=name, password=uuid.uuid4().hex, host="127.0.0.1",
                            port=shared_redis.port)  # fmt: skip
        provisioner.ensure(spec)
        specs.append(spec)
    yield specs[0], specs[1]
    for spec in specs:
        with contextlib.suppress(Exception):
            provisioner.drop(spec)


def as_tenant(spec: DatabaseSpec) -> redis.Redis:
    return redis.Redis(host=spec.host, port=spec.port, username=spec.username, password=spec.password,
                       socket_timeout=10)  # fmt: skip


BUSY_SCRIPT = "local i = 0 while i < 100000000 do i = i + 1 end return i"  # a second or so of nothing else


def test_a_tenant_cannot_run_scripts_that_stall_every_neighbour(two_tenants) -> None:
    attacker, neighbour = two_tenants
    client = as_tenant(attacker)
    key = f"{attacker.db_name}:k"
    started = time.monotonic()
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.eval(BUSY_SCRIPT, 1, key)  # would hold the whole server for a second or two
    assert time.monotonic() - started < 1
    for attempt in (
        lambda: client.evalsha("0" * 40, 1, key),
        lambda: client.script_load("return 1"),
        lambda: client.execute_command("FUNCTION", "LOAD", "#!lua name=x\nredis.register_function('f', tostring)"),
        lambda: client.execute_command("FCALL", "f", 1, key),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    as_tenant(neighbour).set(f"{neighbour.db_name}:still", "works")
    client.set(key, "plain commands still work")


def _resp(*args: str) -> bytes:
    out = b"*%d\r\n" % len(args)
    for arg in args:
        out += b"$%d\r\n%s\r\n" % (len(arg.encode()), arg.encode())
    return out


def test_a_tenant_cannot_learn_its_neighbours_key_names_by_broadcast_tracking(two_tenants) -> None:
    """Client-side caching in broadcast mode (RESP3 `CLIENT TRACKING on BCAST`) pushes the name of
    every key changed on the server, whatever the user's key patterns."""
    attacker, neighbour = two_tenants
    spy = socket.create_connection((attacker.host, attacker.port), timeout=5)
    with spy:
        spy.sendall(_resp("HELLO", "3", "AUTH", attacker.username, attacker.password))
        assert spy.recv(65536).startswith(b"%")  # authenticated, RESP3
        spy.sendall(_resp("CLIENT", "TRACKING", "on", "BCAST"))
        answer = spy.recv(65536)
        secret = f"{neighbour.db_name}:customer-{uuid.uuid4().hex[:6]}"
        as_tenant(neighbour).set(secret, "x")
        time.sleep(0.3)
        spy.settimeout(0.5)
        pushed = b""
        with contextlib.suppress(TimeoutError):
            pushed = spy.recv(65536)
    assert secret.encode() not in pushed, "the neighbour's key name reached the attacker"
    assert answer.startswith(b"-NOPERM"), answer


def test_reapplying_access_takes_scripts_away_from_users_made_by_an_older_version(
    team_a, shared_redis
) -> None:
    """After an upgrade, `reapply_database_access` gives existing tenants today's rules."""
    from io import StringIO

    from apps.databases.models import Database, DatabaseStatus
    from apps.secrets import crypto

    server = services.server_register(engine="redis", admin_url=shared_redis.admin_url, name="own-redis")
    name = f"ps{uuid.uuid4().hex[:6]}_old"
    database = Database.objects.create(
        team=team_a.team, project=team_a.project, name="old", engine="redis", server=server,
        status=DatabaseStatus.AVAILABLE, db_name=name, username=name,
        password_encrypted=crypto.encrypt(services.new_password()), host="127.0.0.1", port=shared_redis.port,
    )  # fmt: skip
    spec = services.spec_for(database)
    admin = redis.Redis.from_url(shared_redis.admin_url)
    try:
        # The user as the previous version made it: scripts allowed.
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{spec.password}", f"~{name}:*", f"&{name}:*",
                              "-@all", "+@read", "+@write", "+@connection", "+@scripting")  # fmt: skip
        assert as_tenant(spec).eval("return 1", 0) == 1

        out = StringIO()
        call_command("reapply_database_access", stdout=out, stderr=StringIO())

        assert "Applied the current access rules to 1 database(s); 0 failed." in out.getvalue()
        with pytest.raises(redis.exceptions.NoPermissionError):
            as_tenant(spec).eval("return 1", 0)
        as_tenant(spec).set(f"{name}:k", "v")  # same password, ordinary commands
    finally:
        admin.execute_command("ACL", "DELUSER", name)
