"""The container runtime: what PandaStack asks of an engine, and the Docker Engine implementation.

``Engine`` is the small interface deploys, the reconciler and the logs endpoint depend on; a Swarm or
Kubernetes driver implements the same methods later. ``DockerEngine`` talks to one Docker Engine
through the ``docker`` SDK.

Every method is idempotent where that makes sense (a retried Celery task, or the reconciler running
behind a killed worker, must be able to call it again), and every failure of the engine surfaces as
an ``EngineError`` whose message says what to do, never as a raw SDK or HTTP exception.

Containers carry ``io.pandastack.*`` labels, which is how the platform finds its own containers.
Each team has its own bridge network and a container joins only its team's network, so containers
of different teams cannot reach each other (Docker drops traffic between user-defined bridges).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import docker
import docker.errors
import docker.types
import docker.utils
import requests.exceptions

from apps.runtime.images import image_refusal

log = logging.getLogger(__name__)

LABEL_PREFIX = "io.pandastack."
DEFAULT_TIMEOUT_SECONDS = 60

# Docker reports a container that never started with this zero time.
_ZERO_TIME_PREFIX = "0001-01-01"
_NO_TIME = datetime.min.replace(tzinfo=UTC)


class Workload(StrEnum):
    """What a container is for; the hardening policy (``container_hardening``) picks its
    capabilities by it."""

    APP = "app"
    CRON = "cron"
    DATABASE = "database"
    BUILD = "build"
    FUNCTION = "function"


# --- the container-hardening policy: every container the platform starts is a tenant workload ---------
# Docker's default capability set also grants MKNOD (device nodes), NET_RAW (raw sockets: ARP and ICMP
# spoofing against the neighbours on the team's bridge), SETFCAP/SETPCAP (file and process capability
# games), SYS_CHROOT, AUDIT_WRITE and FSETID. A normal image needs only:
#   CHOWN, DAC_OVERRIDE, FOWNER  an entrypoint running as root that prepares its files (chown/chmod of a
#                                data directory it does not own) before it drops to its own user;
#   SETUID, SETGID               that drop itself (gosu, su-exec, setpriv, a server's own User= switch);
#   NET_BIND_SERVICE             listening below 1024 (nginx on :80);
#   KILL                         a root supervisor signalling workers that already dropped to another user.
APP_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "NET_BIND_SERVICE", "KILL")
# The official database images' entrypoints run as root, chown the data directory, chmod it (PostgreSQL
# sets the setgid bit on its socket directory: FSETID keeps it), then drop to the server's user with
# gosu or `setpriv --bounding-set=-all` (dropping the bounding set needs SETPCAP, which under
# no-new-privileges and this bounding set can grant nothing new). They listen on high ports and signal
# only their own user's processes: no NET_BIND_SERVICE, no KILL.
DATABASE_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "SETPCAP")
CAPABILITIES: Mapping[Workload, tuple[str, ...]] = {
    Workload.APP: APP_CAPABILITIES,
    Workload.CRON: APP_CAPABILITIES,
    Workload.BUILD: APP_CAPABILITIES,
    Workload.FUNCTION: APP_CAPABILITIES,
    Workload.DATABASE: DATABASE_CAPABILITIES,
}
# What a spec that names no limit gets: never unlimited (callers pass the team's plan).
DEFAULT_PIDS_LIMIT = 256
DEFAULT_MEMORY_MB = 256
DEFAULT_CPUS = 1.0


class EngineError(Exception):
    """The engine could not do what was asked; the message says why and, when possible, what to do."""


class ContainerNotFound(EngineError):
    """The container does not exist (any more)."""


class ImageRefused(EngineError):
    """The image reference names a registry the platform must not contact (loopback, private, link-local),
    or a local image id (which no registry authorises)."""


@dataclass(frozen=True)
class HealthCheck:
    """A probe the engine runs inside the container: ``test`` in the engine's form, ``["CMD", argv…]``
    or ``["CMD-SHELL", "a shell line"]``; exit 0 is healthy. The container is "starting" until the
    first probe passes and "unhealthy" after ``retries`` failures in a row (failures during
    ``start_period_seconds`` do not count)."""

    test: Sequence[str]
    interval_seconds: float = 2.0
    timeout_seconds: float = 5.0
    retries: int = 3
    start_period_seconds: float = 0.0


@dataclass(frozen=True)
class Health:
    """The engine's verdict on a container that has a health check."""

    status: str  # starting|healthy|unhealthy
    failing_streak: int
    last_output: str  # what the last probe printed (the engine keeps a few KB)


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ContainerSpec:
    """What to run. ``name`` is deterministic (for example ``ps-alpha-web-d3-r1``) and is the
    idempotency key of ``Engine.run``."""

    name: str
    image: str
    port: int  # the port the app listens on inside the container; also given to it as PORT
    env: Mapping[str, str]
    labels: Mapping[str, str]  # io.pandastack.* labels
    network: str  # the team's network, the only one the container joins
    command: Sequence[str] | None = None
    memory_mb: int | None = None
    cpus: float | None = None
    volumes: Mapping[str, str] = field(default_factory=dict)  # named volume -> path in the container
    healthcheck: HealthCheck | None = None
    workload: Workload = Workload.APP  # picks the capability set (container_hardening)
    pids_limit: int | None = None  # processes and threads in the container (None: DEFAULT_PIDS_LIMIT)


def container_hardening(spec: ContainerSpec) -> dict[str, Any]:
    """The one hardening policy, as ``containers.create`` arguments, applied by ``DockerEngine.run`` to
    every container the platform starts (apps, cron runs, dedicated databases, builds, functions).

    - a PID limit (processes and threads), so a fork bomb exhausts its own container, not the host;
    - every capability dropped but the workload's few (``CAPABILITIES``) and ``no-new-privileges``, so
      a setuid binary in a tenant's image cannot raise a process's privileges;
    - memory and CPU capped (the caller passes the team's plan; a spec without limits gets the
      defaults, never unlimited), with swap equal to memory so the cap cannot be stretched with swap;
    - never privileged.
    """
    memory_mb = spec.memory_mb if spec.memory_mb is not None else DEFAULT_MEMORY_MB
    cpus = spec.cpus if spec.cpus is not None else DEFAULT_CPUS
    pids = spec.pids_limit if spec.pids_limit is not None else DEFAULT_PIDS_LIMIT
    if memory_mb <= 0 or cpus <= 0 or pids <= 0:
        # Docker reads 0 as "unlimited": refuse instead of silently starting an unbounded container.
        raise EngineError(f"container {spec.name}: memory, CPU and PID limits must be positive")
    return {
        "pids_limit": pids,
        "cap_drop": ["ALL"],
        "cap_add": list(CAPABILITIES[spec.workload]),
        "security_opt": ["no-new-privileges:true"],
        "mem_limit": f"{memory_mb}m",
        "memswap_limit": f"{memory_mb}m",
        "nano_cpus": int(cpus * 1_000_000_000),
        "privileged": False,
    }


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str  # the reference the container was created from, as given
    status: str  # docker's: created|running|exited|dead|restarting|paused|removing
    ip: str | None  # on the network the container was created on (else its first network)
    labels: Mapping[str, str]
    exit_code: int | None  # only once the container has exited (or died)
    started_at: datetime | None  # None also in a listing (Engine.list): inspect for it
    networks: Mapping[str, str] = field(default_factory=dict)  # network name -> IP, every network joined
    health: Health | None = None  # None when the container has no health check (or in a listing)


@dataclass(frozen=True)
class ContainerStats:
    """A point-in-time reading of a running container's resources."""

    cpu_ns: int  # CPU time used since the container started (nanoseconds; deltas give CPU use)
    memory_bytes: int  # memory in use, without the reclaimable page cache
    read_at: float  # time.monotonic() when read


@dataclass(frozen=True)
class LogLine:
    at: datetime | None  # the engine's timestamp of the line
    text: str  # without the trailing newline
    stream: str = "stdout"  # "stdout" or "stderr"


@dataclass(frozen=True)
class RegistryAuth:
    """A login to an image's registry for one pull. An empty username is an anonymous pull: the
    engine then sends no credentials at all, not even the platform host's own Docker login."""

    username: str
    password: str = field(repr=False)  # never in a repr, a log line or an error message

    @classmethod
    def anonymous(cls) -> RegistryAuth:
        # No login at all (not a password): the registry sees an anonymous client.
        return cls(username="", password="")  # nosec B106

    def config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password} if self.username else {}


@dataclass(frozen=True)
class ImagePull:
    """How to get an image before starting a container: with which login, and whether a local copy
    may be used without asking the registry again."""

    auth: RegistryAuth | None = None  # None: the engine's defaults (the host's Docker login, if any)
    always_pull: bool = False


# How the engine reads an image id: "sha256:<64 hex>" or a (short) hex prefix of one.
_IMAGE_ID_RE = re.compile(r"^(?:sha256:[0-9a-f]{64}|[0-9a-f]{1,64})\Z")


def _refuse_local_id(image: str, found_id: str) -> None:
    """Refuse a reference the engine resolved as a local image id, not as a name: an id names whatever
    copy is cached on the host — whichever team's pull (with whichever registry login) put it there —
    and no registry is asked. Tenants name images by repository (and tag or digest)."""
    if _IMAGE_ID_RE.match(image) and found_id.removeprefix("sha256:").startswith(image.removeprefix("sha256:")):
        raise ImageRefused(
            f"image {image} is a local image id: name the image by its repository (and tag or digest), so "
            "that its registry decides whether this team may pull it"
        )


class Engine(Protocol):
    """The runtime interface; a second engine (Swarm, Kubernetes) implements the same methods."""

    def ping(self) -> bool: ...

    def ensure_image(self, image: str, *, auth: RegistryAuth | None = None, always_pull: bool = False) -> str: ...

    def image_digest(self, image: str) -> str | None: ...

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> None: ...

    def remove_network(self, name: str) -> None: ...

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> VolumeInfo: ...

    def inspect_volume(self, name: str) -> VolumeInfo | None: ...

    def remove_volume(self, name: str) -> None: ...

    def list_volumes(self, labels: Mapping[str, str | None]) -> list[VolumeInfo]: ...

    def run(self, spec: ContainerSpec) -> ContainerInfo: ...

    def inspect(self, name_or_id: str) -> ContainerInfo | None: ...

    def list(self, labels: Mapping[str, str | None]) -> list[ContainerInfo]: ...

    def stop(self, name_or_id: str, timeout: int = 10) -> None: ...

    def remove(self, name_or_id: str) -> None: ...

    def logs(self, name_or_id: str, *, tail: int = 100) -> list[LogLine]: ...

    def follow_logs(
        self, name_or_ids: Sequence[str], *, tail: int = 10, stop: threading.Event | None = None
    ) -> Iterator[tuple[str, LogLine]]: ...

    def connect(self, network: str, name_or_id: str) -> None: ...

    def stats(self, name_or_id: str) -> ContainerStats | None: ...


class DockerEngine:
    """The Docker Engine, through the ``docker`` SDK.

    The SDK client is created on first use, so building a ``DockerEngine`` never fails; an engine
    that cannot be reached makes ``ping()`` answer False and every other method raise ``EngineError``.
    """

    def __init__(
        self,
        client: docker.DockerClient | None = None,
        *,
        base_url: str | None = None,
        timeout: int = DEFAULT_TIMEOUT_SECONDS,
        allow_private_registries: bool = False,
    ) -> None:
        self._client = client
        self._base_url = base_url
        self._timeout = timeout
        self._client_lock = threading.Lock()
        # Off: images from registries on loopback, private or link-local addresses are refused.
        self.allow_private_registries = allow_private_registries

    @classmethod
    def from_settings(cls) -> DockerEngine:
        """The engine named by ``settings.PANDASTACK_DOCKER_URL`` (unset: the environment's
        ``DOCKER_HOST``, else the local socket)."""
        from django.conf import settings

        return cls(
            base_url=getattr(settings, "PANDASTACK_DOCKER_URL", None) or None,
            timeout=getattr(settings, "PANDASTACK_DOCKER_TIMEOUT", DEFAULT_TIMEOUT_SECONDS),
            allow_private_registries=getattr(settings, "PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES", False),
        )

    @property
    def client(self) -> docker.DockerClient:
        """The SDK client (for tests and engine-specific extras); raises EngineError if unreachable."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _connect(self) -> docker.DockerClient:
        try:
            if self._base_url:
                return docker.DockerClient(base_url=self._base_url, timeout=self._timeout)
            return docker.from_env(timeout=self._timeout)
        except docker.errors.DockerException as exc:
            raise EngineError(
                f"Docker Engine not reachable at {self._describe_url()}: is dockerd running? ({exc})"
            ) from exc

    def _describe_url(self) -> str:
        if self._client is not None:
            return str(self._client.api.base_url)
        return self._base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn SDK and transport failures into EngineError (callers catch NotFound inside first
        where a missing object is an answer rather than a failure)."""
        try:
            yield
        except EngineError:
            raise
        except requests.exceptions.Timeout as exc:
            raise EngineError(
                f"Docker Engine at {self._describe_url()} did not answer within {self._timeout}s while {action}"
            ) from exc
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise EngineError(
                f"Docker Engine not reachable at {self._describe_url()}: is dockerd running? ({action}: {exc})"
            ) from exc
        except docker.errors.NotFound as exc:
            raise EngineError(f"not found while {action}: {_explain(exc)}") from exc
        except docker.errors.APIError as exc:
            raise EngineError(f"Docker Engine refused {action}: {_explain(exc)}") from exc
        except docker.errors.DockerException as exc:
            raise EngineError(f"Docker Engine error while {action}: {exc}") from exc

    # -- engine -------------------------------------------------------------------------------

    def ping(self) -> bool:
        """True when the engine answers; never raises."""
        try:
            return bool(self.client.ping())
        except (EngineError, docker.errors.DockerException, requests.exceptions.RequestException):
            return False

    # -- images -------------------------------------------------------------------------------

    def ensure_image(self, image: str, *, auth: RegistryAuth | None = None, always_pull: bool = False) -> str:
        """Make ``image`` present locally and return its image id (``sha256:…``); the repository
        digest, when the image came from a registry, is ``image_digest(image)``.

        Pulls only when the image is absent locally, unless ``always_pull``: then the registry is asked
        every time (with ``auth``), and a failed pull raises even when a copy is cached — a copy
        another team's login fetched is not this caller's to use. Raises EngineError("image not
        found: …") when it is neither local nor pullable, with the registry's reason (never the
        password), and ImageRefused when the reference names a private registry
        (``image_refusal``) — even when a copy is cached locally.
        """
        self._check_registry(image)
        if not always_pull:
            with self._errors(f"looking up image {image}"):
                try:
                    found = self.client.images.get(image)
                except docker.errors.ImageNotFound:
                    found = None
            if found is not None:
                _refuse_local_id(image, found.id)
                return found.id
        self._pull(image, auth=auth)
        with self._errors(f"looking up image {image}"):
            try:
                return self.client.images.get(image).id
            except docker.errors.ImageNotFound as exc:
                raise EngineError(f"image not found: {image} (the pull finished but the image is absent)") from exc

    def _check_registry(self, image: str) -> None:
        if not self.allow_private_registries and (reason := image_refusal(image)):
            raise ImageRefused(reason)

    def _pull(self, image: str, *, auth: RegistryAuth | None = None) -> None:
        repository, tag = docker.utils.parse_repository_tag(image)
        # parse_repository_tag leaves a digest reference ("repo@sha256:…") to us.
        if tag is None and "@" in repository:
            repository, tag = repository.split("@", 1)
        with self._errors(f"pulling {image}"):
            try:
                # The low-level call, so that an error the registry reports in the progress stream
                # (where the high-level pull() drops it) reaches the user.
                # auth_config=None lets the SDK use the host's Docker login; {} is anonymous.
                auth_config = auth.config() if auth is not None else None
                stream = self.client.api.pull(
                    repository, tag=tag or "latest", stream=True, decode=True, auth_config=auth_config
                )
                for event in stream:
                    if isinstance(event, dict) and event.get("error"):
                        raise EngineError(f"image not found: {image} ({event['error']})")
            except docker.errors.NotFound as exc:
                raise EngineError(f"image not found: {image} ({_explain(exc)})") from exc
            except docker.errors.APIError as exc:
                raise EngineError(f"image not found: {image} (pull failed: {_explain(exc)})") from exc

    def image_digest(self, image: str) -> str | None:
        """The repository digest (``repo@sha256:…``) if the image came from a registry, else its image
        id; None if the image is not present locally."""
        with self._errors(f"inspecting image {image}"):
            try:
                found = self.client.images.get(image)
            except docker.errors.ImageNotFound:
                return None
        digests = found.attrs.get("RepoDigests") or []
        return digests[0] if digests else found.id

    # -- networks -----------------------------------------------------------------------------

    def _networks_named(self, name: str) -> list[Any]:
        # By exact name: the engine's own lookup also accepts id prefixes, and its `name` filter
        # matches substrings. Oldest first, so that every caller settles on the same one.
        with self._errors(f"looking up network {name}"):
            found = [network for network in self.client.networks.list(names=[name]) if network.name == name]
        return sorted(found, key=lambda network: (network.attrs.get("Created", ""), network.id))

    def _find_network(self, name: str) -> Any | None:
        found = self._networks_named(name)
        return found[0] if found else None

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        """The bridge network ``name`` exists afterwards (created with ``labels`` if it was missing)."""
        if self._find_network(name) is not None:
            return
        with self._errors(f"creating network {name}"):
            try:
                self.client.networks.create(
                    name, driver="bridge", internal=False, labels=dict(labels), check_duplicate=True
                )
            except docker.errors.APIError as exc:
                # Another worker created it between our look-up and our create.
                if exc.status_code == 409 and self._find_network(name) is not None:
                    return
                raise
        self._remove_twins(name)

    def _remove_twins(self, name: str) -> bool:
        """The engine's duplicate check is not atomic: two workers creating a network at once can both
        succeed. Keep the oldest, which is also the one every look-up settles on (so no container is on
        a twin); returns whether there was one."""
        twins = self._networks_named(name)[1:]
        for twin in twins:
            with contextlib.suppress(docker.errors.APIError):
                twin.remove()
        return bool(twins)

    def remove_network(self, name: str) -> None:
        """The network ``name`` no longer exists afterwards. Raises EngineError while containers
        are still attached to it."""
        network = self._find_network(name)
        if network is None:
            return
        with self._errors(f"removing network {name}"):
            try:
                network.remove()
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code == 403 or "active endpoints" in _explain(exc):
                    raise EngineError(
                        f"network {name} still has containers attached: remove them first ({_explain(exc)})"
                    ) from exc
                raise

    def connect(self, network: str, name_or_id: str) -> None:
        """The container is attached to ``network`` afterwards (already attached is fine)."""
        info = self.inspect(name_or_id)
        if info is None:
            raise ContainerNotFound(f"container not found: {name_or_id}")
        if network in info.networks:
            return
        found = self._find_network(network)
        if found is None:
            raise EngineError(f"network not found: {network}")
        with self._errors(f"connecting {name_or_id} to network {network}"):
            try:
                found.connect(info.id)
            except docker.errors.APIError as exc:
                # A concurrent connect won the race.
                if "already exists" in _explain(exc):
                    return
                raise

    # -- volumes ------------------------------------------------------------------------------

    def ensure_volume(self, name: str, labels: Mapping[str, str]) -> VolumeInfo:
        """The named local volume ``name`` exists afterwards and is returned with its labels.

        Created with ``labels`` if it was missing; an existing volume keeps the labels it was created
        with (the engine cannot change them), so when two workers race, both get the winner's labels.
        """
        with self._errors(f"creating volume {name}"):
            # The engine answers an existing name with the existing volume, so this is idempotent.
            self.client.volumes.create(name=name, driver="local", labels=dict(labels))
        found = self.inspect_volume(name)
        if found is None:
            raise EngineError(f"volume {name} disappeared right after it was created (removed concurrently?)")
        return found

    def inspect_volume(self, name: str) -> VolumeInfo | None:
        """The volume ``name``, or None if it does not exist."""
        with self._errors(f"inspecting volume {name}"):
            try:
                return _volume_info(self.client.volumes.get(name).attrs)
            except docker.errors.NotFound:
                return None

    def remove_volume(self, name: str) -> None:
        """The volume ``name`` (and its data) no longer exists afterwards; a missing one is fine.
        Raises EngineError while a container (running or not) still uses it."""
        with self._errors(f"removing volume {name}"):
            try:
                self.client.api.remove_volume(name)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                if exc.status_code == 409:
                    raise EngineError(
                        f"volume {name} is still in use: remove its container first ({_explain(exc)})"
                    ) from exc
                raise

    def list_volumes(self, labels: Mapping[str, str | None]) -> list[VolumeInfo]:
        """Volumes carrying all of ``labels`` (a None value: the label is present with any value)."""
        filters = [key if value is None else f"{key}={value}" for key, value in labels.items()]
        with self._errors("listing volumes"):
            found = self.client.volumes.list(filters={"label": filters} if filters else None)
        return [_volume_info(volume.attrs) for volume in found]

    # -- containers ---------------------------------------------------------------------------

    def run(self, spec: ContainerSpec) -> ContainerInfo:
        """A container named ``spec.name`` is running afterwards and is returned.

        Idempotent by name: a running container of that name is returned as is (its spec is not
        compared); one that is not running is removed and created again. The container joins only
        ``spec.network``, gets ``PORT=<spec.port>`` in its environment (the platform's value wins
        over ``spec.env``), the hardening of ``container_hardening`` (PID, memory and CPU limits,
        capabilities, no-new-privileges), and no restart policy — the reconciler, not the engine,
        restarts crashed containers. Pulls the image if it is absent. Named volumes in
        ``spec.volumes`` are mounted (create them with ``ensure_volume`` first) and ``spec.healthcheck``
        becomes the engine's health check, whose verdict ``inspect`` reports as ``health``.
        """
        existing = self.inspect(spec.name)
        if existing is not None:
            if existing.status == "running":
                return existing
            self.remove(existing.id)
        self._check_registry(spec.image)  # a copy cached locally is refused like a pull

        container = self._create(spec)
        with self._errors(f"starting container {spec.name}"):
            try:
                try:
                    container.start()
                except docker.errors.APIError as exc:
                    # The engine resolves the network by name when it starts the container: a twin that
                    # another worker's ensure_network made (and has not removed yet) makes it ambiguous.
                    if not ("ambiguous" in _explain(exc) and self._remove_twins(spec.network)):
                        raise
                    container.start()
            except docker.errors.APIError as exc:
                # The command could not be executed (for example: not found in the image); do not
                # leave a created container behind.
                with contextlib.suppress(docker.errors.APIError):
                    container.remove(force=True, v=True)
                raise EngineError(f"container {spec.name} could not start: {_explain(exc)}") from exc
        info = self.inspect(container.id)
        if info is None:
            raise ContainerNotFound(f"container {spec.name} disappeared right after it started")
        return info

    def _create(self, spec: ContainerSpec) -> Any:
        kwargs: dict[str, Any] = {
            "image": spec.image,
            "name": spec.name,
            "command": list(spec.command) if spec.command is not None else None,
            "environment": {**spec.env, "PORT": str(spec.port)},
            "labels": dict(spec.labels),
            # By id: while two workers race to create a team's network, the name can briefly match two
            # networks ("ambiguous"); the oldest is the one everybody keeps.
            "network": getattr(self._find_network(spec.network), "id", spec.network),
            "restart_policy": {"Name": "no"},
            "detach": True,
        }
        # The one place every container start passes through: the policy is not optional.
        kwargs.update(container_hardening(spec))
        if spec.volumes:
            # A missing volume would be created by the engine without labels: ensure_volume first.
            kwargs["mounts"] = [
                docker.types.Mount(target=path, source=volume, type="volume") for volume, path in spec.volumes.items()
            ]
        if spec.healthcheck is not None:
            check = spec.healthcheck
            kwargs["healthcheck"] = {
                "test": list(check.test),
                "interval": _nanoseconds(check.interval_seconds),
                "timeout": _nanoseconds(check.timeout_seconds),
                "retries": check.retries,
                "start_period": _nanoseconds(check.start_period_seconds),
            }
        for attempt in range(2):
            with self._errors(f"creating container {spec.name}"):
                try:
                    return self.client.containers.create(**kwargs)
                except docker.errors.ImageNotFound:
                    if attempt:
                        raise
                    self.ensure_image(spec.image)
                except docker.errors.NotFound as exc:
                    # The image is checked first, so this is the network.
                    raise EngineError(
                        f"cannot create container {spec.name}: {_explain(exc)} (ensure_network first?)"
                    ) from exc
                except docker.errors.APIError as exc:
                    if exc.status_code == 409:
                        # Another worker created (or is removing) the same name since our inspect.
                        raise EngineError(
                            f"container {spec.name} was created or removed concurrently; retry ({_explain(exc)})"
                        ) from exc
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def inspect(self, name_or_id: str) -> ContainerInfo | None:
        """The container's current state, or None if it does not exist."""
        with self._errors(f"inspecting container {name_or_id}"):
            try:
                return _info(self.client.containers.get(name_or_id).attrs)
            except docker.errors.NotFound:
                return None

    def stats(self, name_or_id: str) -> ContainerStats | None:
        """CPU time and memory of a running container (one reading, without the engine's own
        one-second wait for a second sample); None if it does not exist or does not run."""
        with self._errors(f"reading stats of container {name_or_id}"):
            try:
                raw = self.client.api.stats(name_or_id, stream=False, one_shot=True)
            except docker.errors.NotFound:
                return None
        read_at = time.monotonic()
        cpu = (raw.get("cpu_stats") or {}).get("cpu_usage") or {}
        memory = raw.get("memory_stats") or {}
        if "total_usage" not in cpu or "usage" not in memory:
            return None  # not running: the engine answers with empty sections
        details = memory.get("stats") or {}
        # cgroup v2 names the reclaimable page cache inactive_file, v1 total_inactive_file (as `docker stats`).
        cache = details.get("inactive_file", details.get("total_inactive_file", 0))
        return ContainerStats(
            cpu_ns=int(cpu["total_usage"]), memory_bytes=max(0, int(memory["usage"]) - int(cache)), read_at=read_at
        )

    def list(self, labels: Mapping[str, str | None]) -> list[ContainerInfo]:
        """Containers in every state carrying all of ``labels`` (a None value: the label is present
        with any value). An empty mapping lists every container of the engine.

        One engine call for all of them (the reconciler lists thousands on every pass), so each is
        as the engine's listing shows it: without ``started_at`` and ``health``, which ``inspect``
        gives."""
        filters = [key if value is None else f"{key}={value}" for key, value in labels.items()]
        with self._errors("listing containers"):
            rows = self.client.api.containers(all=True, filters={"label": filters} if filters else None)
        return [_listed_info(row) for row in rows]

    def stop(self, name_or_id: str, timeout: int = 10) -> None:
        """The container is not running afterwards (SIGTERM, then SIGKILL after ``timeout`` seconds).
        A missing or already stopped container is fine."""
        with self._errors(f"stopping container {name_or_id}"):
            try:
                self.client.containers.get(name_or_id).stop(timeout=timeout)
            except docker.errors.NotFound:
                return

    def remove(self, name_or_id: str) -> None:
        """The container (and its anonymous volumes) no longer exists afterwards, running or not."""
        with self._errors(f"removing container {name_or_id}"):
            try:
                self.client.api.remove_container(name_or_id, force=True, v=True)
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                # Another caller is already removing it.
                if exc.status_code == 409 and "already in progress" in _explain(exc):
                    return
                raise

    # -- logs ---------------------------------------------------------------------------------

    def logs(self, name_or_id: str, *, tail: int = 100) -> list[LogLine]:
        """The last ``tail`` lines of the container's stdout and stderr, oldest first.
        Raises ContainerNotFound if the container does not exist."""
        lines: list[LogLine] = []
        # One request per stream: the SDK's merged output does not say which stream a line came from.
        for stream in ("stdout", "stderr"):
            with self._errors(f"reading logs of {name_or_id}"):
                try:
                    raw = self.client.api.logs(
                        name_or_id,
                        stdout=stream == "stdout",
                        stderr=stream == "stderr",
                        timestamps=True,
                        tail=tail,
                    )
                except docker.errors.NotFound as exc:
                    raise ContainerNotFound(f"container not found: {name_or_id}") from exc
            lines.extend(_parse_line(line, stream) for line in _split_lines(raw))
        # A stable sort keeps each stream's order for lines with equal (or missing) timestamps.
        lines.sort(key=lambda line: line.at or _NO_TIME)
        return lines[-tail:] if tail > 0 else []

    def follow_logs(
        self, name_or_ids: Sequence[str], *, tail: int = 10, stop: threading.Event | None = None
    ) -> LogFollower:
        """A merged live stream of ``(container name, line)``: first the last ``tail`` lines of each
        container, then new lines as they are written, in arrival order.

        The streams are open when this returns, so no line written afterwards is missed, however
        late the caller starts iterating. Iteration ends when ``stop`` is set (noticed within 0.1 s)
        or when every container has stopped; containers that do not exist are skipped. Iterate to
        the end or call ``close()`` (or use it as a context manager) to release the connections.
        """
        sources: list[tuple[str, str, Any]] = []
        try:
            for name_or_id in name_or_ids:
                with self._errors(f"following logs of {name_or_id}"):
                    try:
                        container = self.client.containers.get(name_or_id)
                    except docker.errors.NotFound:
                        continue
                for stream_name in ("stdout", "stderr"):
                    with self._errors(f"following logs of {container.name}"):
                        try:
                            stream = self.client.api.logs(
                                container.id,
                                stdout=stream_name == "stdout",
                                stderr=stream_name == "stderr",
                                timestamps=True,
                                tail=tail,
                                stream=True,
                                follow=True,
                            )
                        except docker.errors.NotFound:
                            continue
                    sources.append((container.name, stream_name, stream))
        except BaseException:
            for _, _, stream in sources:
                with contextlib.suppress(Exception):
                    stream.close()
            raise
        return LogFollower(sources, stop or threading.Event())


# How soon a log follower notices its `stop` event while no container writes.
STOP_POLL_SECONDS = 0.5


class LogFollower(Iterator[tuple[str, LogLine]]):
    """The iterator ``DockerEngine.follow_logs`` returns: one reader thread per container stream
    feeds a queue, which iteration drains."""

    def __init__(self, sources: Sequence[tuple[str, str, Any]], stop: threading.Event) -> None:
        self._stop = stop
        self._streams = [stream for _, _, stream in sources]
        self._lines: queue.Queue[tuple[str, LogLine] | None] = queue.Queue()
        self._running = len(sources)
        for name, stream_name, stream in sources:
            threading.Thread(
                target=_pump,
                args=(name, stream_name, stream, self._lines),
                name=f"logs-{name}-{stream_name}",
                daemon=True,
            ).start()

    def __next__(self) -> tuple[str, LogLine]:
        while self._running and not self._stop.is_set():
            try:
                # A bounded wait so that a set `stop` is noticed even when no container writes. Not
                # shorter: each open follower wakes this often, and a hundred of them waking every
                # 0.1 s measurably slowed the API (bench/stream_load.py).
                item = self._lines.get(timeout=STOP_POLL_SECONDS)
            except queue.Empty:
                continue
            if item is None:
                self._running -= 1
            else:
                return item
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Release the engine connections (idempotent); reader threads end on their own."""
        self._running = 0
        streams, self._streams = self._streams, []
        for stream in streams:
            # Closing the HTTP response wakes the reader thread blocked on it.
            with contextlib.suppress(Exception):
                stream.close()

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _pump(name: str, stream_name: str, stream: Any, out: queue.Queue[tuple[str, LogLine] | None]) -> None:
    """Read one container stream into ``out`` line by line; put None when the stream ends."""
    pending = b""
    try:
        for chunk in stream:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                out.put((name, _parse_line(raw.decode("utf-8", "replace"), stream_name)))
        if pending:
            out.put((name, _parse_line(pending.decode("utf-8", "replace"), stream_name)))
    except Exception as exc:  # the stream was closed under us (stop requested) or the engine went away
        log.debug("log stream of %s ended: %s", name, exc)
    finally:
        out.put(None)


def _split_lines(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    return text.split("\n") if text else []


def _parse_line(raw: str, stream: str) -> LogLine:
    # With timestamps=True the engine prefixes each line with an RFC 3339 time and one space.
    stamp, sep, text = raw.partition(" ")
    if sep:
        at = _parse_time(stamp)
        if at is not None:
            return LogLine(at=at, text=text.rstrip("\r"), stream=stream)
    return LogLine(at=None, text=raw.rstrip("\r"), stream=stream)


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith(_ZERO_TIME_PREFIX):
        return None
    try:
        # Python 3.11+ accepts the engine's nanoseconds (it keeps microseconds) and the "Z".
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _addresses(attrs: Mapping[str, Any]) -> tuple[str | None, dict[str, str]]:
    """The container's IP on its primary network, and its IP on every network it joined (the
    inspect and the listing answers carry both in the same shape)."""
    networks_raw = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    networks = {name: net.get("IPAddress") or "" for name, net in networks_raw.items()}
    # The network the container was created on is its primary one; others were connected later.
    # (NetworkMode holds its name, or its id when it was created by id.)
    primary = (attrs.get("HostConfig") or {}).get("NetworkMode") or ""
    primary_name = next((name for name, net in networks_raw.items() if primary in (name, net.get("NetworkID"))), None)
    ip = networks[primary_name] if primary_name else next(iter(networks.values()), None)
    return ip or None, networks


def _info(attrs: Mapping[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    ip, networks = _addresses(attrs)
    status = state.get("Status") or "unknown"
    return ContainerInfo(
        id=attrs["Id"],
        name=(attrs.get("Name") or "").lstrip("/"),
        image=config.get("Image") or attrs.get("Image") or "",
        status=status,
        ip=ip,
        labels=dict(config.get("Labels") or {}),
        exit_code=state.get("ExitCode") if status in ("exited", "dead") else None,
        started_at=_parse_time(state.get("StartedAt")),
        networks=networks,
        health=_health(state.get("Health")),
    )


_EXITED_RE = re.compile(r"^Exited \((-?\d+)\)")


def _listed_info(row: Mapping[str, Any]) -> ContainerInfo:
    """A container as the engine's listing shows it: its state is a word ("exited") and its exit
    code is in the status text ("Exited (137) 5 seconds ago"); no start time nor health details."""
    status = row.get("State") or "unknown"
    exited = _EXITED_RE.match(row.get("Status") or "")
    ip, networks = _addresses(row)
    return ContainerInfo(
        id=row["Id"],
        name=((row.get("Names") or [""])[0]).lstrip("/"),
        image=row.get("Image") or "",
        status=status,
        ip=ip,
        labels=dict(row.get("Labels") or {}),
        exit_code=int(exited.group(1)) if exited and status in ("exited", "dead") else None,
        started_at=None,
        networks=networks,
    )


def _health(raw: Mapping[str, Any] | None) -> Health | None:
    if not raw or not raw.get("Status"):
        return None
    probes = raw.get("Log") or []
    return Health(
        status=raw["Status"],
        failing_streak=int(raw.get("FailingStreak") or 0),
        last_output=str((probes[-1] or {}).get("Output") or "").strip() if probes else "",
    )


def _volume_info(attrs: Mapping[str, Any]) -> VolumeInfo:
    return VolumeInfo(name=attrs["Name"], labels=dict(attrs.get("Labels") or {}))


def _nanoseconds(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _explain(exc: docker.errors.APIError) -> str:
    """The engine's own explanation, without the SDK's HTTP preamble."""
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc)
