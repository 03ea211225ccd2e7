"""The dedicated placement: a database server of its own for one database — a container from the
engine's official image, on the team's network, with its data on a named volume.

``ensure_container`` converges to "the container runs and its health check passes" and returns where
the platform (the provisioner, as the server's superuser) and apps reach it; ``remove_container``
converges to "neither the container nor the volume (the data) exists". Both are idempotent and are
called only by the Celery tasks in ``apps.databases.tasks``.

The superuser password is generated before the volume is created and kept, encrypted with the
platform's keys (apps.secrets.crypto), in the database's row (``Database.admin_password_encrypted``,
an EncryptedTextField, so ``rotate_secret_keys`` re-encrypts it). It is written (first writer wins)
before the volume exists, so a worker killed at any point leaves no volume whose password nobody
knows. Databases created before that kept it in a volume label (``io.pandastack.admin-password``),
which cannot change and so pinned an old key: the first read adopts the label's password into the
row (``rotate_secret_keys`` adopts every one left), after which the label is never read again.

Containers are labelled ``io.pandastack.team`` and ``io.pandastack.database`` but, like cron run
containers, not ``io.pandastack.managed``: the app reconciler removes every "managed" container that
is not one of an app's.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from django.conf import settings

from apps.databases.models import Database, Placement
from apps.databases.provisioners.base import ProvisionerError
from apps.deployments import orchestrator
from apps.runtime.engine import LABEL_PREFIX, ContainerInfo, ContainerSpec, Engine, EngineError, HealthCheck, Workload
from apps.secrets import crypto

IMAGES = {
    "postgres": "postgres:{version}",
    "mysql": "mysql:{version}",
    "redis": "redis:{version}",
    "mongodb": "mongo:{version}",
}
DEFAULT_VERSIONS = {"postgres": "17", "mysql": "8.4", "redis": "7.4", "mongodb": "8.0"}
PORTS = {"postgres": 5432, "mysql": 3306, "redis": 6379, "mongodb": 27017}
# A tag of the official image: a version, optionally with a variant ("16.4", "7.4-alpine", "8.0-noble").
# Floating tags such as "latest" are refused: the data on the volume belongs to one major version.
VERSION_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+){0,2}(-[a-z0-9][a-z0-9.]{0,30})?$")

ADMIN_PASSWORD_LABEL = f"{LABEL_PREFIX}admin-password"  # databases created before the password moved to the row
_UNSET = ""  # Database.admin_password_encrypted before a password is stored
START_TIMEOUT_SECONDS = 180.0  # MySQL's first start (initialising its data directory) takes the longest
# Every probe is a process started in the container, so not too often; yet "healthy" can be reported only
# after the first probe, one interval after the start.
HEALTH_INTERVAL_SECONDS = 2.0


class DedicatedError(ProvisionerError):
    """The dedicated container could not be made to run; the message says why (never a password)."""


@dataclass(frozen=True)
class DedicatedServer:
    """Where a dedicated database server runs."""

    container_name: str
    volume_name: str
    image: str
    network: str  # the team's network, the only one the container joins
    host: str  # the container's IP on the team's network: apps connect to host:port (so can the platform)
    port: int  # the engine's standard port
    hostname: str  # the container's name, which Docker's DNS resolves on the team's network (stable across restarts)
    admin_url: str = field(repr=False)  # the superuser's URL, for provisioner_for(engine, admin_url)


def container_name_for(database: Database) -> str:
    return f"ps-db-{database.team.slug}-{database.name}-{database.pk}"


def volume_name_for(database: Database) -> str:
    return f"ps-db-{database.team.slug}-{database.name}-{database.pk}"


def image_for(engine: str, version: str = "") -> str:
    """The official image of ``engine`` at ``version`` (default: DEFAULT_VERSIONS)."""
    if engine not in IMAGES:
        raise DedicatedError(f"no dedicated placement for engine {engine!r}")
    version = version or DEFAULT_VERSIONS[engine]
    if not VERSION_PATTERN.fullmatch(version):
        raise DedicatedError(
            f"version {version!r} is not a version of {engine} (for example {DEFAULT_VERSIONS[engine]})"
        )
    return IMAGES[engine].format(version=version)


def labels_for_database(database: Database) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}team": database.team.slug,
        f"{LABEL_PREFIX}database": str(database.pk),
        f"{LABEL_PREFIX}database-engine": database.engine,
        **settings.PANDASTACK_EXTRA_LABELS,
    }


def ensure_container(
    database: Database, *, image: str | None = None, timeout: float = START_TIMEOUT_SECONDS
) -> DedicatedServer:
    """The database's own server runs and answers its health check; returns where it is.

    Idempotent: the team's network, the volume (with the superuser password, generated the first
    time) and the container are created only when missing; a running container is kept as it is (a
    changed image or plan takes effect once it is removed), one that stopped is created again on the
    same volume. ``image`` replaces the official image (tests use one built locally). Raises
    DedicatedError when the container stops or is not healthy within ``timeout`` seconds, and
    EngineError when the Docker Engine fails.
    """
    engine = orchestrator.engine()
    slug = database.team.slug
    network = orchestrator.team_network(slug)
    engine.ensure_network(network, orchestrator.network_labels(slug))
    password = _ensure_volume(engine, database)
    image = image or image_for(database.engine, database.version)
    spec = _container_spec(database, image=image, network=network, password=password)
    info = _wait_until_healthy(engine, engine.run(spec), timeout=timeout, password=password)
    host = info.networks.get(network) or info.ip
    if not host:
        raise DedicatedError(f"database container {spec.name} has no address on network {network}")
    port = PORTS[database.engine]
    return DedicatedServer(
        container_name=spec.name,
        volume_name=_volume_name(database),
        image=image,
        network=network,
        host=host,
        port=port,
        hostname=spec.name,
        admin_url=_admin_url(database.engine, password=password, host=host, port=port),
    )


def admin_url(database: Database) -> str:
    """The superuser's URL of the database's running container (contains the password: never log it).
    Raises DedicatedError when the container does not run (provisioning it again starts it)."""
    engine = orchestrator.engine()
    name = _container_name(database)
    info = engine.inspect(name)
    if info is None or info.status != "running":
        state = "does not exist" if info is None else f"is {info.status}"
        raise DedicatedError(f"database container {name} {state}: provision the database again to start it")
    host = info.networks.get(orchestrator.team_network(database.team.slug)) or info.ip
    if not host:
        raise DedicatedError(f"database container {name} has no address on its team's network")
    return _admin_url(database.engine, password=admin_password(database), host=host, port=PORTS[database.engine])


def admin_password(database: Database) -> str:
    """The superuser password, decrypted from the database's row (adopted there from the volume's
    label for a database created before passwords were kept in the row)."""
    token = _stored_admin_password(database)
    if not token:
        name = _volume_name(database)
        volume = orchestrator.engine().inspect_volume(name)
        if volume is None:
            raise DedicatedError(f"volume {name} does not exist: the database's data is gone")
        token = _adopt_label(database, name, volume.labels)
    return _decrypt_admin_password(database, token)


def adopt_label_passwords() -> tuple[int, list[str]]:
    """Move every dedicated database's superuser password still kept only in its volume's label
    into its row (re-encrypted under the current key). Returns how many were adopted and the
    databases whose password could not be (their label's key is gone, or the engine failed)."""
    adopted, failed = 0, []
    legacy = Database.objects.filter(placement=Placement.DEDICATED, admin_password_encrypted=_UNSET)
    for database in legacy.select_related("team"):
        name = _volume_name(database)
        try:
            volume = orchestrator.engine().inspect_volume(name)  # the engine only when there is a legacy row
            if volume is None:
                continue  # no data, nothing the password protects: a new one comes with the next volume
            _adopt_label(database, name, volume.labels)
        except (DedicatedError, EngineError) as exc:
            failed.append(f"database {database.pk}: {exc}")
            continue
        adopted += 1
    return adopted, failed


def remove_container(database: Database) -> None:
    """Neither the container nor its volume (the data) exists afterwards; nothing left is fine."""
    engine = orchestrator.engine()
    engine.remove(_container_name(database))
    engine.remove_volume(_volume_name(database))


# --- internals ---------------------------------------------------------------------------------------
def _container_name(database: Database) -> str:
    return database.container_name or container_name_for(database)


def _volume_name(database: Database) -> str:
    return database.volume_name or volume_name_for(database)


def _ensure_volume(engine: Engine, database: Database) -> str:
    """The database's volume exists and its superuser password is in the database's row; returns
    the password. The password is stored first (the first of two racing workers wins, and both read
    the winner back), then the volume is created: a worker killed in between leaves a password and
    no volume, which the next attempt completes."""
    name = _volume_name(database)
    volume = engine.inspect_volume(name)
    token = _stored_admin_password(database)
    if not token and volume is not None:
        token = _adopt_label(database, name, volume.labels)  # created before passwords were kept in the row
    if not token:
        Database.objects.filter(pk=database.pk, admin_password_encrypted=_UNSET).update(
            admin_password_encrypted=crypto.encrypt(secrets.token_urlsafe(24))
        )
        token = _stored_admin_password(database)
    if volume is None:
        engine.ensure_volume(name, labels_for_database(database))
    return _decrypt_admin_password(database, token)


def _stored_admin_password(database: Database) -> str:
    """The encrypted password as the row holds it now (another worker may have just written it)."""
    token = Database.objects.filter(pk=database.pk).values_list("admin_password_encrypted", flat=True).first() or ""
    database.admin_password_encrypted = token
    return token


def _adopt_label(database: Database, volume_name: str, labels: Mapping[str, str]) -> str:
    """A password kept in the (immutable) label of an older volume, moved into the row under the
    current key; returns the row's token."""
    if stored := _stored_admin_password(database):
        return stored  # a worker stored one meanwhile (new volumes carry no label)
    legacy = labels.get(ADMIN_PASSWORD_LABEL)
    if not legacy:
        raise DedicatedError(
            f"volume {volume_name} has no {ADMIN_PASSWORD_LABEL} label and the database has no stored password: "
            "it was not created by PandaStack (remove it if it holds nothing of value, then provision again)"
        )
    try:
        password = crypto.decrypt(legacy)
    except crypto.DecryptionFailed as exc:
        raise DedicatedError(
            f"the superuser password in the label of volume {volume_name} cannot be decrypted: the key that "
            "encrypted it was removed from PANDASTACK_SECRET_KEYS; add it back (as a later key) and run "
            "rotate_secret_keys"
        ) from exc
    Database.objects.filter(pk=database.pk, admin_password_encrypted=_UNSET).update(
        admin_password_encrypted=crypto.encrypt(password)
    )
    return _stored_admin_password(database)


def _decrypt_admin_password(database: Database, token: str) -> str:
    try:
        return crypto.decrypt(token)
    except crypto.DecryptionFailed as exc:
        raise DedicatedError(
            f"the superuser password of database {database.pk} cannot be decrypted: the key that encrypted it was "
            "removed from PANDASTACK_SECRET_KEYS before rotate_secret_keys finished; add it back (as a later key)"
        ) from exc


def _container_spec(database: Database, *, image: str, network: str, password: str) -> ContainerSpec:
    engine = database.engine
    memory_mb = database.team.plan.dedicated_database_memory_mb
    env: dict[str, str] = {}
    command: list[str] | None = None
    if engine == "postgres":
        env = {"POSTGRES_PASSWORD": password}
        # The first start initialises the data directory with a server listening on the Unix socket only:
        # probing over TCP reports healthy only once the real server listens.
        probe = "pg_isready -q -h 127.0.0.1 -p 5432 -U postgres -d postgres"
    elif engine == "mysql":
        env = {"MYSQL_ROOT_PASSWORD": password}
        # The initialising server runs with --skip-networking; `ping` answers 0 even when access is denied.
        probe = "mysqladmin ping -h 127.0.0.1 -P 3306 --silent"
    elif engine == "redis":
        # Above maxmemory, writes fail with an error instead of the kernel killing the server at the limit.
        maxmemory = max(1, memory_mb * 3 // 4)
        command = ["redis-server", "--requirepass", password, "--dir", "/data", "--appendonly", "yes",
                   "--maxmemory", f"{maxmemory}mb"]  # fmt: skip
        # NOAUTH also proves the server answers, and the probe needs no copy of the password.
        probe = "redis-cli -h 127.0.0.1 -p 6379 ping | grep -qE 'PONG|NOAUTH'"
    elif engine == "mongodb":
        env = {"MONGO_INITDB_ROOT_USERNAME": "root", "MONGO_INITDB_ROOT_PASSWORD": password}
        # WiredTiger's cache defaults to half of the host's memory, not of the container's limit.
        cache_gb = max(0.25, round(memory_mb / 2 / 1024, 2))
        command = ["mongod", "--wiredTigerCacheSizeGB", str(cache_gb)]
        # The first start initialises with a forked mongod on 127.0.0.1 while the entrypoint script is PID 1;
        # the real server is PID 1 (exec'd). A TCP probe from bash, because mongosh is a Node.js process too
        # heavy to start every few seconds inside a small memory limit.
        probe = "[ \"$(cat /proc/1/comm)\" = mongod ] && bash -c ': > /dev/tcp/127.0.0.1/27017'"
    else:
        raise DedicatedError(f"no dedicated placement for engine {engine!r}")
    return ContainerSpec(
        name=_container_name(database),
        image=image,
        port=PORTS[engine],
        env=env,
        labels=labels_for_database(database),
        network=network,
        command=command,
        memory_mb=memory_mb,
        cpus=float(database.team.plan.dedicated_database_cpus),
        pids_limit=database.team.plan.max_pids_per_container,
        workload=Workload.DATABASE,  # the official images' entrypoints need a slightly different capability set
        volumes={_volume_name(database): _data_path(engine, image)},
        healthcheck=HealthCheck(
            test=["CMD-SHELL", probe],
            interval_seconds=HEALTH_INTERVAL_SECONDS,
            timeout_seconds=10.0,
            retries=5,
            start_period_seconds=START_TIMEOUT_SECONDS,
        ),
    )


def _data_path(engine: str, image: str) -> str:
    if engine == "postgres":
        # From PostgreSQL 18 the official image keeps its data in a versioned directory under /var/lib/postgresql
        # and refuses a volume mounted at the older /var/lib/postgresql/data.
        major = re.match(r"[^:]*:([0-9]+)", image)
        return "/var/lib/postgresql" if major and int(major.group(1)) >= 18 else "/var/lib/postgresql/data"
    return {"mysql": "/var/lib/mysql", "redis": "/data", "mongodb": "/data/db"}[engine]


def _admin_url(engine: str, *, password: str, host: str, port: int) -> str:
    secret = quote(password, safe="")
    if engine == "postgres":
        return f"postgresql://postgres:{secret}@{host}:{port}/postgres"
    if engine == "mysql":
        return f"mysql://root:{secret}@{host}:{port}/"
    if engine == "redis":
        return f"redis://default:{secret}@{host}:{port}/0"
    if engine == "mongodb":
        return f"mongodb://root:{secret}@{host}:{port}/?authSource=admin"
    raise DedicatedError(f"no dedicated placement for engine {engine!r}")


def _wait_until_healthy(engine: Engine, info: ContainerInfo, *, timeout: float, password: str) -> ContainerInfo:
    """Poll the engine's health verdict (the driver exposes no event to wait on) until it is "healthy";
    fail at once when the container stops, and after ``timeout`` seconds otherwise."""
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        current = engine.inspect(info.id)
        if current is None:
            raise DedicatedError(f"database container {info.name} was removed while it started")
        if current.status in ("exited", "dead"):
            lines = "; ".join(line.text for line in engine.logs(info.id, tail=5))
            raise DedicatedError(
                f"database container {info.name} stopped while it started (exit code {current.exit_code}): "
                + _redact(lines or "it wrote nothing", password)
            )
        if current.health is not None and current.health.status == "healthy":
            return current
        if time.monotonic() > deadline:
            health = current.health
            verdict = (
                f"{health.status}, last check: {health.last_output or 'no output'}" if health else "no health check"
            )
            raise DedicatedError(
                f"database container {info.name} was not healthy within {timeout:.0f}s ({_redact(verdict, password)})"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _redact(text: str, password: str) -> str:
    return text.replace(password, "********")
