"""The dedicated placement on the real Docker Engine: a Redis server of the database's own, in a
container on the team's network with its data on a named volume.

No registry is reachable here, so the container runs an image built locally from Debian's Redis
binaries (tests.support.db_images) instead of the official ``redis`` image; it takes the same command
line. The PostgreSQL, MySQL and MongoDB containers cannot run here (no image of theirs can be built
from this machine's packages in a test's time), so for them only the container spec is checked:
their images' entrypoints, health checks and superuser URLs are exercised nowhere in this suite.
"""

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from apps.databases import dedicated
from apps.databases.dedicated import DedicatedError
from apps.databases.models import Database, Placement
from apps.databases.provisioners import DatabaseSpec, provisioner_for
from apps.deployments import orchestrator
from apps.runtime.engine import ContainerSpec, DockerEngine
from apps.secrets import crypto
from tests.conftest import TeamWorld, make_team
from tests.support import TEST_RUN_LABEL, remove_test_run


def make_database(world: TeamWorld, name: str = "cache", engine: str = "redis", **fields: Any) -> Database:
    """A dedicated database row as the create service leaves it (the tests here start at the container)."""
    base = f"{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    return Database.objects.create(
        team=world.team, project=world.project, name=name, engine=engine, placement=Placement.DEDICATED,
        db_name=base, username=base, password_encrypted=crypto.encrypt(uuid.uuid4().hex), **fields,
    )  # fmt: skip


@dataclass
class DedicatedWorld:
    world: TeamWorld
    run_id: str
    engine: DockerEngine

    def database(self, name: str = "cache", engine: str = "redis", **fields: Any) -> Database:
        return make_database(self.world, name, engine, **fields)


@pytest.fixture
def dedicated_world(db: Any, settings: Any, docker_engine: DockerEngine) -> Iterator[DedicatedWorld]:
    """A team with a fresh slug (its network and containers collide with nothing) whose containers,
    volumes and network carry this test's run label, through PANDASTACK_EXTRA_LABELS; teardown
    removes exactly those."""
    world = make_team(f"dd-{uuid.uuid4().hex[:10]}")
    world.team.plan.dedicated_database_memory_mb = 64
    world.team.plan.save()
    run_id = uuid.uuid4().hex[:12]
    settings.PANDASTACK_EXTRA_LABELS = {TEST_RUN_LABEL: run_id}
    yield DedicatedWorld(world=world, run_id=run_id, engine=docker_engine)
    leftovers = remove_test_run(docker_engine.client, run_id)
    assert not leftovers, f"could not clean up after the test: {leftovers}"


def run_to_completion(engine: DockerEngine, spec: ContainerSpec, timeout: float = 20.0) -> str:
    """Run a one-off container and return what it printed once it has exited."""
    info = engine.run(spec)
    give_up = time.monotonic() + timeout
    while (current := engine.inspect(info.id)) is not None and current.status == "running":
        assert time.monotonic() < give_up, f"{spec.name} still runs after {timeout}s"
        time.sleep(0.05)
    return "\n".join(line.text for line in engine.logs(info.id))


# --- Redis, for real -------------------------------------------------------------------------------


def test_a_dedicated_redis_runs_on_the_team_network_and_serves_the_tenant_user(dedicated_world, redis_image, web_image):
    engine = dedicated_world.engine
    database = dedicated_world.database()
    team_slug = dedicated_world.world.team.slug
    name = f"ps-db-{team_slug}-cache-{database.pk}"

    server = dedicated.ensure_container(database, image=redis_image)

    # Where it runs: its own container and volume, on the team's network only, healthy.
    network = orchestrator.team_network(team_slug)
    assert (server.container_name, server.volume_name, server.hostname) == (name, name, name)
    assert (server.image, server.network, server.port) == (redis_image, network, 6379)
    info = engine.inspect(name)
    assert info.status == "running" and info.health.status == "healthy"
    assert list(info.networks) == [network]
    assert server.host == info.networks[network]
    assert info.labels["io.pandastack.team"] == team_slug
    assert info.labels["io.pandastack.database"] == str(database.pk)
    assert info.labels[TEST_RUN_LABEL] == dedicated_world.run_id
    assert "io.pandastack.managed" not in info.labels  # the app reconciler would remove it as an orphan
    attrs = engine.client.api.inspect_container(name)
    assert attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024  # the plan's dedicated_database_memory_mb
    assert [(m["Type"], m["Name"], m["Destination"]) for m in attrs["Mounts"]] == [("volume", name, "/data")]
    assert attrs["Config"]["Healthcheck"]["Test"][0] == "CMD-SHELL"

    # The superuser password is kept encrypted in the database's row (key rotation re-encrypts it),
    # not in the volume's immutable labels.
    password = dedicated.admin_password(database)
    volume = engine.inspect_volume(name)
    database.refresh_from_db()
    assert crypto.decrypt(database.admin_password_encrypted) == password
    assert dedicated.ADMIN_PASSWORD_LABEL not in volume.labels and password not in str(volume.labels)
    assert server.admin_url == f"redis://default:{password}@{server.host}:6379/0"
    assert dedicated.admin_url(database) == server.admin_url
    assert password not in repr(server)
    with (
        redis.Redis(host=server.host, port=6379, socket_timeout=5) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.ping()

    # Idempotent: the same container, the same password.
    again = dedicated.ensure_container(database, image=redis_image)
    assert again == server
    assert engine.inspect(name).id == info.id

    # The tenant's user, made by the Redis provisioner as the container's superuser; a client with the
    # issued credentials writes over the team network address.
    spec = DatabaseSpec(
        db_name=database.db_name, username=database.username, password=crypto.decrypt(database.password_encrypted),
        host=server.host, port=server.port,
    )  # fmt: skip
    provisioner = provisioner_for("redis", server.admin_url)
    assert provisioner.server_version().startswith("7.")
    provisioner.ensure(spec)
    tenant_url = provisioner.url(spec)
    assert tenant_url.startswith(f"redis://{spec.username}:") and f"@{server.host}:6379/0" in tenant_url
    with redis.Redis.from_url(tenant_url, socket_timeout=5) as tenant:
        tenant.set(f"{spec.db_name}:greeting", "hello")
        assert tenant.get(f"{spec.db_name}:greeting") == b"hello"
        with pytest.raises(redis.exceptions.NoPermissionError):
            tenant.set("someone-else:key", "x")
    assert provisioner.usage(spec).size_bytes > 0

    # An app container on the team's network reaches it by name (Docker's DNS) with the same credentials.
    redis_commands = f"AUTH {spec.username} {spec.password}\r\nGET {spec.db_name}:greeting\r\nQUIT\r\n"
    printed = run_to_completion(
        engine,
        ContainerSpec(
            name=f"ps-{team_slug}-app-client", image=web_image, port=8080, env={"COMMANDS": redis_commands},
            labels={TEST_RUN_LABEL: dedicated_world.run_id}, network=network,
            command=["sh", "-c", f'printf "$COMMANDS" | nc -w 3 {server.hostname} 6379'],
        ),
    )  # fmt: skip
    assert printed.split() == ["+OK", "$5", "hello", "+OK"]


def test_the_data_outlives_the_container_and_remove_container_leaves_nothing(dedicated_world, redis_image):
    engine = dedicated_world.engine
    database = dedicated_world.database()
    first = dedicated.ensure_container(database, image=redis_image)
    with redis.Redis.from_url(first.admin_url, socket_timeout=5) as admin:
        admin.set("kept", "yes")

    # A container that died (here: removed by hand) comes back on the same volume, with the same password.
    first_id = engine.inspect(first.container_name).id
    engine.remove(first.container_name)
    second = dedicated.ensure_container(database, image=redis_image)
    assert engine.inspect(second.container_name).id != first_id
    assert dedicated.admin_password(database) in second.admin_url
    with redis.Redis.from_url(second.admin_url, socket_timeout=5) as admin:
        assert admin.get("kept") == b"yes"

    dedicated.remove_container(database)

    assert engine.inspect(second.container_name) is None
    assert engine.inspect_volume(second.volume_name) is None
    assert engine.list({TEST_RUN_LABEL: dedicated_world.run_id}) == []
    assert engine.list_volumes({TEST_RUN_LABEL: dedicated_world.run_id}) == []
    dedicated.remove_container(database)  # idempotent
    with pytest.raises(DedicatedError, match=r"ps-db-.* does not exist: provision the database again"):
        dedicated.admin_url(database)


def test_a_container_that_is_not_healthy_in_time_is_a_clear_error(dedicated_world, redis_image):
    database = dedicated_world.database()
    # No probe can pass within no time at all: the first one runs an interval after the start.
    with pytest.raises(DedicatedError, match=r"ps-db-.* was not healthy within 0s \(starting, last check: no output\)"):
        dedicated.ensure_container(database, image=redis_image, timeout=0)
    # The container is left to become healthy: the retried task finds it and waits again.
    server = dedicated.ensure_container(database, image=redis_image)
    assert dedicated_world.engine.inspect(server.container_name).health.status == "healthy"


def test_a_container_that_stops_while_starting_fails_at_once_with_its_last_lines(dedicated_world, broken_image):
    """The broken image exits 1 after printing two lines (the wait is the module's own, given a
    container spec of the broken image, since a database's command would not exist in it)."""
    engine = dedicated_world.engine
    network = orchestrator.team_network(dedicated_world.world.team.slug)
    engine.ensure_network(network, orchestrator.network_labels(dedicated_world.world.team.slug))
    info = engine.run(
        ContainerSpec(name=f"ps-db-{dedicated_world.run_id}-broken", image=broken_image, port=6379, env={},
                      labels={TEST_RUN_LABEL: dedicated_world.run_id}, network=network)
    )  # fmt: skip
    started = time.monotonic()
    with pytest.raises(DedicatedError) as failed:
        dedicated._wait_until_healthy(engine, info, timeout=60, password="DATABASE_URL")
    assert time.monotonic() - started < 10
    assert "stopped while it started (exit code 1)" in str(failed.value)
    assert "booting broken build; fatal: missing ********" in str(failed.value)  # the password never shows


# --- the other engines: their container specs (no image of theirs runs here) ----------------------


@pytest.mark.parametrize(
    ("engine", "version", "image", "data_path", "admin_url"),
    [
        ("postgres", "", "postgres:17", "/var/lib/postgresql/data", "postgresql://postgres:PW@10.0.0.5:5432/postgres"),
        ("postgres", "18", "postgres:18", "/var/lib/postgresql", "postgresql://postgres:PW@10.0.0.5:5432/postgres"),
        ("mysql", "", "mysql:8.4", "/var/lib/mysql", "mysql://root:PW@10.0.0.5:3306/"),
        ("redis", "7.2-alpine", "redis:7.2-alpine", "/data", "redis://default:PW@10.0.0.5:6379/0"),
        ("mongodb", "", "mongo:8.0", "/data/db", "mongodb://root:PW@10.0.0.5:27017/?authSource=admin"),
    ],
)
def test_each_engine_gets_its_official_image_volume_path_superuser_and_health_check(
    db, engine, version, image, data_path, admin_url, settings
):
    settings.PANDASTACK_EXTRA_LABELS = {}
    world = make_team(f"sp-{uuid.uuid4().hex[:8]}")
    database = make_database(world, engine=engine, version=version)

    assert dedicated.image_for(engine, version) == image
    spec = dedicated._container_spec(database, image=image, network="ps-team-x", password="PW")

    assert spec.volumes == {dedicated.volume_name_for(database): data_path}
    assert spec.memory_mb == world.team.plan.dedicated_database_memory_mb
    assert spec.port == dedicated.PORTS[engine]
    assert spec.healthcheck.test[0] == "CMD-SHELL"
    assert spec.healthcheck.start_period_seconds == dedicated.START_TIMEOUT_SECONDS
    assert dedicated._admin_url(engine, password="PW", host="10.0.0.5", port=dedicated.PORTS[engine]) == admin_url
    probe = spec.healthcheck.test[1]
    if engine == "postgres":
        assert spec.env == {"POSTGRES_PASSWORD": "PW"} and spec.command is None
        assert "pg_isready" in probe and "-h 127.0.0.1" in probe
    elif engine == "mysql":
        assert spec.env == {"MYSQL_ROOT_PASSWORD": "PW"} and spec.command is None
        assert "mysqladmin ping -h 127.0.0.1" in probe
    elif engine == "redis":
        assert spec.env == {} and spec.command[:3] == ["redis-server", "--requirepass", "PW"]
        assert "--maxmemory" in spec.command
        assert "PW" not in probe
    else:
        assert spec.env == {"MONGO_INITDB_ROOT_USERNAME": "root", "MONGO_INITDB_ROOT_PASSWORD": "PW"}
        assert spec.command == ["mongod", "--wiredTigerCacheSizeGB", "0.25"]
        assert "/proc/1/comm" in probe and "/dev/tcp/127.0.0.1/27017" in probe


def test_versions_must_be_versions():
    assert dedicated.image_for("postgres") == "postgres:17"
    assert dedicated.image_for("mongodb", "7.0") == "mongo:7.0"
    for bad in ("latest", "17; rm -rf /", "../17", "17@sha256:x"):
        with pytest.raises(DedicatedError, match="is not a version of postgres"):
            dedicated.image_for("postgres", bad)
    with pytest.raises(DedicatedError, match="no dedicated placement for engine 'oracle'"):
        dedicated.image_for("oracle")
