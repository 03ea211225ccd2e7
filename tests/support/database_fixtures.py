"""Real database servers for the managed-database tests, registered as shared servers:

- PostgreSQL: a cluster of the tests' own (initdb, scram-sha-256 password auth, a free port), because
  the machine's cluster trusts local connections and a wrong password would not be refused there;
- MariaDB: the machine's server (root with an empty password on 127.0.0.1:3306);
- Redis: a server of the tests' own (`shared_redis`: a redis-server process on a free port, its
  `default` user disabled, an `admin` user with a password, a maxmemory): registration refuses the
  machine's Redis, which is the platform's own broker and cache and lets anyone in as `default`.

`scripts/test` installs and starts MariaDB, PostgreSQL and Redis on a fresh machine."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.core.access import TeamContext, resolve_team
from apps.core.actors import Actor
from apps.databases import services
from apps.databases.models import Database, DatabaseServer, DatabaseStatus
from apps.databases.services import server_register
from apps.secrets import crypto
from tests.conftest import TeamWorld

PG_BIN = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]) if Path("/usr/lib/postgresql").exists() else None
MARIADB_ADMIN_URL = os.environ.get("PANDASTACK_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PasswordCluster:
    port: int
    superuser_password: str

    @property
    def admin_url(self) -> str:
        return f"postgres://postgres:{self.superuser_password}@127.0.0.1:{self.port}/postgres"


def _as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    # initdb and pg_ctl refuse to run as root; the cluster belongs to the postgres system user.
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PasswordCluster]:
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL's server binaries are missing: apt-get install postgresql (scripts/test does)")
    root = Path(tempfile.mkdtemp(prefix="pandastack-pg-"))
    data, run = root / "data", root / "run"
    run.mkdir()
    password = uuid.uuid4().hex
    (root / "pw").write_text(password)
    shutil.chown(root, "postgres")
    shutil.chown(run, "postgres")
    shutil.chown(root / "pw", "postgres")
    done = _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                        f"--pwfile={root / 'pw'}")  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"initdb failed: {done.stderr[-2000:]}")
    port = free_port()
    options = f"-p {port} -k {run} -c listen_addresses=127.0.0.1 -c fsync=off"
    done = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(root / "log"), "start")
    if done.returncode != 0:
        pytest.fail(f"the test PostgreSQL cluster did not start: {done.stderr[-2000:]}")
    try:
        yield PasswordCluster(port=port, superuser_password=password)
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RedisServer:
    port: int
    admin_password: str

    @property
    def admin_url(self) -> str:
        return f"redis://admin:{self.admin_password}@127.0.0.1:{self.port}/0"


def start_redis(root: Path, *config: str, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """A redis-server on a free loopback port (or `port`, to start one again where it was) with
    `config` lines; waits until it answers."""
    port = port or free_port()
    conf = root / f"redis-{port}.conf"
    lines = [f"port {port}", "bind 127.0.0.1", f"dir {root}", 'save ""', "appendonly no", *config]
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    process = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"redis-server did not start: {process.stderr.read().decode()[-2000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.kill()
    pytest.fail("redis-server did not answer within 10 seconds")


def stop_redis(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    """The tests' shared Redis, as an operator should run one: default user off, an admin with a
    password, a memory limit."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is missing: apt-get install redis-server (scripts/test does)")
    root = Path(tempfile.mkdtemp(prefix="pandastack-redis-"))
    password = uuid.uuid4().hex
    process, port = start_redis(
        root, "user default off", f"user admin on >{password} ~* &* +@all", "maxmemory 64mb",
        "maxmemory-policy noeviction",
    )  # fmt: skip
    try:
        yield RedisServer(port=port, admin_password=password)
    finally:
        stop_redis(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def servers(db, pg_cluster, shared_redis) -> dict[str, DatabaseServer]:
    from apps.teams.models import Plan

    Plan.objects.update(max_databases=20)  # the free plan's single database is not enough for these tests
    return {
        "postgres": server_register(engine="postgres", admin_url=pg_cluster.admin_url, name="pg-test"),
        "mysql": server_register(engine="mysql", admin_url=MARIADB_ADMIN_URL, name="mariadb-test"),
        "redis": server_register(engine="redis", admin_url=shared_redis.admin_url, name="redis-test"),
    }


def ctx_of(world: TeamWorld, role: str = "owner") -> TeamContext:
    return resolve_team(Actor.system("test", user=world.user(role)), world.team.slug)


@pytest.fixture(scope="session")
def redis_image(docker_engine) -> str:
    """A Redis image built from Debian's redis-server binaries (no registry is reachable here)."""
    from tests.support.db_images import build_redis_image

    return build_redis_image()


def provisioned_database(world: TeamWorld, server: DatabaseServer, admin_url: str, *, prefix: str) -> Database:
    """A database row that is already available, with its user and database really made on `server`
    (reached at `admin_url`), bypassing the create task; drop it with `provisioner_of(...).drop`."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    host, port = services._parse_admin_url(server.engine, admin_url)
    database = Database.objects.create(
        team=world.team, project=world.project, name=name, engine=server.engine, server=server,
        status=DatabaseStatus.AVAILABLE, db_name=f"pstest_{name.replace('-', '_')}",
        username=f"pstest_{name.replace('-', '_')}", password_encrypted=crypto.encrypt(services.new_password()),
        host=host, port=port,
    )  # fmt: skip
    services.provisioner_of(database).ensure(services.spec_for(database))
    return database
