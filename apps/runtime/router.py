"""The router: what PandaStack asks of it, and the HAProxy implementation.

``Router`` is the small interface deploys and the reconciler depend on; ``HAProxyRouter`` runs
HAProxy (Debian's 2.6) in master-worker mode and programs it in two ways, each for its own kind of
change:

* the configuration (one frontend choosing a backend per app by Host through a map file) changes
  when an app is created or deleted; HAProxy is then reloaded through its master socket, which hands
  the listening sockets to the new worker, so no connection is refused or dropped;
* servers (containers) are added, drained, re-weighted and deleted at run time through the runtime
  API, without any reload — a deploy never reloads anything.

The driver keeps nothing in memory: everything lives in the state directory, so any process (web,
Celery worker, reconciler) can build a router and program the same HAProxy, and a file lock
serialises changes between them. The state directory holds::

    haproxy.cfg   hosts.map     the configuration, written atomically (temp file + os.replace)
    router.json   the backends and servers the configuration was rendered from; run-time server
                  changes are written back to it (and to haproxy.cfg), so a reload or a restart after
                  a crash brings back the servers that were live
    master.sock   the master CLI (reload, show proc, and "@1 <command>" to reach the current worker)
    admin.sock    the worker's runtime API (level admin, expose-fd listeners)
    haproxy.pid   the master's pid
    haproxy.log   what haproxy printed when it was started
    server-state  written just before a reload so that drain/maint states survive it

HAProxy sends its access log as UDP datagrams to 127.0.0.1:<access_log_port>, one per request
("<backend> <status> <active ms>", ``ACCESS_LOG_FORMAT``), for the monitor to read; nobody listening
is fine (HAProxy drops the lines). UDP rather than a UNIX datagram socket: the kernel queues only a
few datagrams on the latter (net.unix.max_dgram_qlen), and bursts would be lost.

Run-time commands go through the master socket with the ``@1`` prefix, which addresses the current
worker only: right after a reload an old worker may still accept on ``admin.sock`` for a moment,
and a server added there would vanish with it.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import ipaddress
import itertools
import json
import os
import re
import secrets
import signal
import socket
import subprocess  # nosec B404
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

__all__ = [
    "Backend", "BackendCounters", "HAProxyRouter", "Router", "RouterError", "RouterUnavailable", "Server",
    "ServerState",
]  # fmt: skip


class RouterError(Exception):
    """The router refused a change or could not be reached; the message says what to do."""


class RouterUnavailable(RouterError):
    """HAProxy is not running (or not answering): ``ensure_running()`` starts it."""


@dataclass(frozen=True)
class Server:
    """One upstream (a container) of a backend."""

    name: str  # unique in its backend, e.g. "c42" (a-z0-9_- only)
    address: str  # container IP
    port: int
    weight: int = 100  # 0..256; 0 receives no new traffic


@dataclass(frozen=True)
class Backend:
    """One app: the Host header values routed to it and the servers that answer."""

    name: str  # e.g. "app_17" (a-z0-9_- only)
    hosts: tuple[str, ...]  # e.g. ("web.alpha.localhost",)
    servers: tuple[Server, ...] = ()


@dataclass(frozen=True)
class ServerState:
    """A server as the running router sees it."""

    name: str
    address: str
    port: int
    admin_state: str  # "ready" | "drain" | "maint"
    operational: str  # "up" | "down" | "starting" | "stopping"
    current_sessions: int
    weight: int = 100  # the weight in effect now (set_weight changes it)


@dataclass(frozen=True)
class BackendCounters:
    """A backend's request counters as the running worker counts them."""

    requests: int
    responses_4xx: int
    responses_5xx: int
    current_sessions: int


class Router(Protocol):
    """What deploys and the reconciler need from a router; a second router implements the same."""

    def ensure_running(self) -> None: ...
    def is_running(self) -> bool: ...
    def locked(self) -> contextlib.AbstractContextManager[None]: ...
    def apply_config(self, backends: Sequence[Backend]) -> bool: ...
    def add_server(self, backend: str, server: Server) -> None: ...
    def drain_server(self, backend: str, server: str) -> None: ...
    def remove_server(self, backend: str, server: str, *, drain_timeout: float = 10.0) -> None: ...
    def set_weight(self, backend: str, server: str, weight: int) -> None: ...
    def servers(self, backend: str) -> list[ServerState]: ...
    def server_names(self) -> dict[str, set[str]]: ...
    def backend_counters(self) -> dict[str, BackendCounters]: ...
    def stop(self) -> None: ...


# --- validation -------------------------------------------------------------------------------------
# Names end up in a configuration file and in runtime API command lines: anything outside this set
# (spaces, ";", "/", ".") could change the meaning of either, so it is refused before anything runs.
_NAME_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
_HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_MAX_WEIGHT = 256  # HAProxy's limit
# Unix socket paths are limited to 108 bytes, and HAProxy binds "<path>.<pid>.tmp" before renaming.
_MAX_SOCKET_PATH = 90

# Our own proxies carry a "." so they can never collide with a backend name (no "." allowed there).
_FRONTEND = "ps.http"
_METRICS_FRONTEND = "ps.metrics"
_NO_APP = "ps.no_app"
# One access-log line per request: backend, HTTP status, active time in ms (request received ->
# response sent, without client idle time). Our own health checks are not logged: they carry this
# header with the router's secret token (HAProxyRouter.health_check_token), which is removed before
# the request reaches the app — so no client can hide its requests from the metrics.
ACCESS_LOG_FORMAT = "%b %ST %Ta"
HEALTH_CHECK_HEADER = "X-PandaStack-Health"
HEALTH_CHECK_USER_AGENT = "PandaStack-Health/1"


def _check_name(kind: str, value: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise RouterError(f"invalid {kind} name {value!r}: use 1-64 characters among a-z, 0-9, '_' and '-'")


def _check_server(server: Server) -> None:
    _check_name("server", server.name)
    try:
        ipaddress.ip_address(server.address)
    except ValueError:
        raise RouterError(f"invalid address {server.address!r} for server {server.name}: an IP address") from None
    if not isinstance(server.port, int) or not 0 < server.port < 65536:
        raise RouterError(f"invalid port {server.port!r} for server {server.name}: 1-65535")
    _check_weight(server.weight)


def _check_weight(weight: int) -> None:
    if not isinstance(weight, int) or not 0 <= weight <= _MAX_WEIGHT:
        raise RouterError(f"invalid weight {weight!r}: 0-{_MAX_WEIGHT}")


def _check_backends(backends: Sequence[Backend]) -> list[Backend]:
    """Validate a whole configuration and return it in a canonical order (so that the same set of
    backends always renders to the same text, whatever order the caller listed it in)."""
    names: set[str] = set()
    hosts: dict[str, str] = {}
    canonical = []
    for backend in backends:
        _check_name("backend", backend.name)
        if backend.name in names:
            raise RouterError(f"backend {backend.name} is listed twice")
        names.add(backend.name)
        for host in backend.hosts:
            if not isinstance(host, str) or not _HOST_RE.fullmatch(host.lower()):
                raise RouterError(f"invalid host {host!r} for backend {backend.name}")
            if host.lower() in hosts:
                raise RouterError(f"host {host} is routed to both {hosts[host.lower()]} and {backend.name}")
            hosts[host.lower()] = backend.name
        seen: set[str] = set()
        for server in backend.servers:
            _check_server(server)
            if server.name in seen:
                raise RouterError(f"server {server.name} is listed twice in backend {backend.name}")
            seen.add(server.name)
        canonical.append(
            Backend(
                name=backend.name,
                hosts=tuple(sorted({h.lower() for h in backend.hosts})),
                servers=tuple(sorted(backend.servers, key=lambda s: s.name)),
            )
        )
    return sorted(canonical, key=lambda b: b.name)


# --- small helpers ----------------------------------------------------------------------------------
def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old or the new file, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _wait_until(predicate: Callable[[], bool], *, timeout: float) -> bool:
    """Poll ``predicate`` (quickly at first, then every 100 ms) until it holds or ``timeout``
    seconds have passed; returns whether it held."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _process_state(pid: int) -> str | None:
    """The state letter of a process ("R", "S", "Z"...), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rpartition(")")[2].split()[0]


def _alive(pid: int) -> bool:
    # A zombie is dead: where PID 1 does not reap orphans (containers), a killed master stays one.
    return _process_state(pid) not in (None, "Z")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


_THREAD = threading.local()


def _held_locks() -> dict[Path, int]:
    """The router lock files this thread holds, with how deep (flock itself does not nest: a second
    open file description of the same file would wait for the first)."""
    if not hasattr(_THREAD, "locks"):
        _THREAD.locks = {}
    return _THREAD.locks


class _NotConnected(RouterUnavailable):
    """The command never reached HAProxy (so sending it again cannot apply it twice)."""


# The master's answer to "@1 ..." while it has no current worker (e.g. in the middle of a reload).
_NO_WORKER = "Can't find the target PID"


def _ask(sock: Path, command: str, *, timeout: float = 5.0) -> str:
    """Send one command line over a UNIX socket and return the whole answer (read until EOF)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(str(sock))
        except OSError as exc:
            raise _NotConnected(f"haproxy is not answering on {sock} ({exc}); ensure_running() starts it") from exc
        try:
            conn.sendall(command.encode() + b"\n")
            # The master CLI answers only once it has seen the end of the input.
            conn.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise RouterUnavailable(f"haproxy did not answer `{command}` on {sock}: {exc}") from exc
    return b"".join(chunks).decode(errors="replace")


def _empty(reply: str) -> bool:
    return not reply.strip()


def _says(*phrases: str) -> Callable[[str], bool]:
    return lambda reply: any(phrase in reply for phrase in phrases)


@dataclass(frozen=True)
class _Procs:
    """The master's `show proc`: its reload counters and its current and old workers."""

    reloads: int
    failed: int
    workers: tuple[int, ...]
    old_workers: tuple[int, ...]


def _parse_procs(text: str) -> _Procs:
    master = re.search(r"^\d+\s+master\s+(\d+)\s+\[failed:\s*(\d+)\]", text, re.MULTILINE)
    if not master:
        raise RouterError(f"unexpected answer to `show proc`: {text.strip()[:200]}")
    sections: dict[str, list[int]] = {"workers": [], "old workers": []}
    current = None
    for line in text.splitlines():
        if line.startswith("# "):
            current = line[2:].strip()
        elif current in sections and (m := re.match(r"^(\d+)\s+worker", line)):
            sections[current].append(int(m.group(1)))
    return _Procs(
        reloads=int(master.group(1)),
        failed=int(master.group(2)),
        workers=tuple(sections["workers"]),
        old_workers=tuple(sections["old workers"]),
    )


def _parse_server_states(text: str) -> list[dict[str, str]]:
    """Rows of `show servers state`, one dict per server keyed by the header's column names."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# be_id"):
            columns = line[2:].split()
            return [dict(zip(columns, row.split(), strict=False)) for row in lines[i + 1 :] if row.strip()]
    raise RouterError(f"unexpected answer to `show servers state`: {text.strip()[:200]}")


# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced/inherited/config/resolution/hostname maint, and
# forced/inherited drain.
_ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
_ADMIN_DRAIN = 0x08 | 0x10
# srv_op_state (HAProxy's SRV_ST_*).
_OPERATIONAL = {0: "down", 1: "starting", 2: "up", 3: "stopping"}


def _admin_state(bits: int) -> str:
    if bits & _ADMIN_MAINT:
        return "maint"
    if bits & _ADMIN_DRAIN:
        return "drain"
    return "ready"


@functools.lru_cache(maxsize=1 << 16)
def _model_entry(backend: Backend) -> str:
    """A backend as a line of the model file. Remembered: a run-time server change rewrites the
    whole model (10,000 backends at scale) and changes one of them."""
    servers = [{"name": s.name, "address": s.address, "port": s.port, "weight": s.weight} for s in backend.servers]
    return json.dumps({"name": backend.name, "hosts": list(backend.hosts), "servers": servers}, sort_keys=True)


# --- HAProxy ----------------------------------------------------------------------------------------
class HAProxyRouter:
    """HAProxy in master-worker mode, owned by the platform (see the module docstring).

    Every method is safe to call again after a failure or from another process: changes are
    idempotent, serialised by a lock file, and written to disk only together with HAProxy's state.
    """

    LOCK_TIMEOUT = 60.0  # a reload takes well under a second; this only bounds a stuck peer
    START_TIMEOUT = 15.0
    RELOAD_TIMEOUT = 15.0

    def __init__(
        self,
        *,
        state_dir: Path,
        http_port: int,
        bind_address: str = "127.0.0.1",
        haproxy_bin: str = "haproxy",
        metrics_port: int | None = None,
        access_log_port: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.http_port = http_port
        self.bind_address = bind_address
        self.haproxy_bin = haproxy_bin
        # Optional: HAProxy's built-in Prometheus exporter at http://<bind_address>:<metrics_port>/metrics.
        self.metrics_port = metrics_port
        self.config_path = self.state_dir / "haproxy.cfg"
        self.map_path = self.state_dir / "hosts.map"
        self.model_path = self.state_dir / "router.json"
        self.master_sock = self.state_dir / "master.sock"
        self.admin_sock = self.state_dir / "admin.sock"
        self.pid_path = self.state_dir / "haproxy.pid"
        self.log_path = self.state_dir / "haproxy.log"
        self.server_state_path = self.state_dir / "server-state"
        self.lock_path = self.state_dir / "router.lock"
        self._model_cache: tuple[tuple[int, int, int], tuple[Backend, ...]] | None = None
        # Optional: where the access log goes (UDP on 127.0.0.1); None sends none.
        self.access_log_port = access_log_port
        if len(str(self.master_sock)) > _MAX_SOCKET_PATH:
            raise RouterError(f"router state directory path too long for UNIX sockets: {self.state_dir}")

    @classmethod
    def from_settings(cls) -> HAProxyRouter:
        """The router the platform runs, from the ``PANDASTACK_ROUTER_*`` settings."""
        from django.conf import settings  # here: the driver itself does not need Django

        metrics_port = getattr(settings, "PANDASTACK_ROUTER_METRICS_PORT", None)
        access_log_port = getattr(settings, "PANDASTACK_ROUTER_ACCESS_LOG_PORT", None)
        return cls(
            state_dir=Path(str(getattr(settings, "PANDASTACK_ROUTER_DIR", "var/router"))),
            http_port=int(getattr(settings, "PANDASTACK_ROUTER_HTTP_PORT", 8080)),
            bind_address=str(getattr(settings, "PANDASTACK_ROUTER_BIND", "127.0.0.1")),
            haproxy_bin=str(getattr(settings, "PANDASTACK_HAPROXY_BIN", "haproxy")),
            metrics_port=int(metrics_port) if metrics_port else None,
            access_log_port=int(access_log_port) if access_log_port else None,
        )

    @property
    def health_check_token(self) -> str:
        """The secret the platform's health checks send in HEALTH_CHECK_HEADER (made once, kept in
        the state directory, readable by the platform's processes only)."""
        path = self.state_dir / "health-token"
        token = _read(path)
        if token is None or not re.fullmatch(r"[A-Za-z0-9]{32}", token.strip()):
            self.state_dir.mkdir(parents=True, exist_ok=True)
            candidate = secrets.token_hex(16)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first (or a broken one is there)
                token = _read(path)
                if token is not None and re.fullmatch(r"[A-Za-z0-9]{32}", token.strip()):
                    return token.strip()
                _write_atomic(path, candidate)
                return candidate
            with os.fdopen(fd, "w") as fh:
                fh.write(candidate)
            return candidate
        return token.strip()

    # --- lifecycle ----------------------------------------------------------------------------------
    def is_running(self) -> bool:
        """Whether HAProxy runs for this state directory: its master answers, or its master process
        is alive (it re-executes itself during a reload and does not answer for a few ms)."""
        return self._master_answers() or self._haproxy_alive()

    def ensure_running(self) -> None:
        """Guarantee HAProxy runs with the last applied configuration (or an empty one) and its
        worker answers. After a crash, stale pid file and sockets are cleaned up and any process left
        from this state directory is killed first."""
        with self._locked():
            if not self._running():
                self._start()

    def stop(self) -> None:
        """Stop HAProxy (master and workers) and remove its sockets and pid file; the applied
        configuration is kept, so ``ensure_running()`` brings the same routes back."""
        with self._locked():
            pids = self._own_processes()
            master = self._master_pid()
            if master is not None:
                # SIGTERM to the master is a hard stop: it terminates the workers and exits.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(master, signal.SIGTERM)
            if not _wait_until(lambda: not any(_alive(p) for p in pids), timeout=5.0):
                self._kill(pids)
            self._remove_runtime_files()

    # --- configuration ------------------------------------------------------------------------------
    def apply_config(self, backends: Sequence[Backend]) -> bool:
        """Make HAProxy route exactly these backends: one per app, chosen by Host, with the given
        servers. Pass the servers that are live now (a reload keeps only what the configuration
        lists; drain/maint states of servers kept at the same address survive it).

        Returns False when the configuration on disk is already this one and HAProxy runs it;
        otherwise validates it (``haproxy -c``), writes it and starts HAProxy or reloads it
        seamlessly (no connection refused or dropped), waits until the new worker answers with the
        new backends, and returns True. On a refused configuration nothing changes and RouterError
        carries HAProxy's message."""
        canonical = _check_backends(backends)
        with self._locked():
            config = self._render_config(canonical, map_path=self.map_path)
            hosts_map = self._render_map(canonical)
            running = self._running()
            if (
                running
                and _read(self.config_path) == config
                and _read(self.map_path) == hosts_map
                and self._live_backends() == {b.name for b in canonical}
            ):
                return False
            self._validate(canonical)
            previous = {p: _read(p) for p in (self.model_path, self.map_path, self.config_path)}
            self._write_files(canonical)
            if not running:
                self._start()
                return True
            try:
                self._reload(canonical)
            except RouterError:
                # Put back the files the running worker was started from, so that the next attempt
                # does not mistake the refused configuration for the live one.
                for path, text in previous.items():
                    if text is None:
                        path.unlink(missing_ok=True)
                    else:
                        _write_atomic(path, text)
                raise
            return True

    # --- servers at run time ------------------------------------------------------------------------
    def add_server(self, backend: str, server: Server) -> None:
        """Put ``server`` into ``backend`` and make it ready for traffic, without a reload.
        Idempotent: an existing server of that name is moved to the given address (when it differs),
        given the weight, and made ready again (out of drain or maint)."""
        _check_name("backend", backend)
        _check_server(server)
        target = f"{backend}/{server.name}"
        addr = _hostport(server.address, server.port)
        with self._locked():
            existing = self._server_rows(backend).get(server.name)
            if existing is None:
                self._command(f"add server {target} {addr} weight {server.weight}", ok=_says("New server registered."))
                self._command(f"enable server {target}")
            else:
                if (existing["srv_addr"], int(existing["srv_port"])) != (server.address, server.port):
                    # Maintenance first: it closes idle pooled connections, which would otherwise be
                    # reused towards the old address.
                    self._command(f"set server {target} state maint")
                    self._command(
                        f"set server {target} addr {server.address} port {server.port}",
                        ok=_says("changed", "no need to change"),
                    )
                if int(existing["srv_uweight"]) != server.weight:
                    self._command(f"set weight {target} {server.weight}")
                self._command(f"set server {target} state ready")
            self._update_model(backend, lambda servers: {**servers, server.name: server})

    def drain_server(self, backend: str, server: str) -> None:
        """Send no new requests to ``server``; requests in flight finish."""
        _check_name("backend", backend)
        _check_name("server", server)
        with self._locked():
            self._command(f"set server {backend}/{server} state drain")

    def remove_server(self, backend: str, server: str, *, drain_timeout: float = 10.0) -> None:
        """Drain ``server``, wait until its requests are done (at most ``drain_timeout`` seconds;
        sessions still open after that are cut), then delete it. Idempotent: a server (or backend)
        that is not there is not an error."""
        _check_name("backend", backend)
        _check_name("server", server)
        target = f"{backend}/{server}"
        with self._locked():
            rows = self._server_rows(backend, missing_ok=True)
            present = rows is not None and server in rows
            draining = present and self._command_unless_absent(f"set server {target} state drain") is not None
        if draining:
            # Not under the lock: a drain may take long, and other changes must not wait for it.
            _wait_until(lambda: self._busy(backend, server) == 0, timeout=drain_timeout)
            with self._locked():
                self._delete_server(backend, server)
        with self._locked():
            self._update_model(backend, lambda servers: {k: v for k, v in servers.items() if k != server})

    def set_weight(self, backend: str, server: str, weight: int) -> None:
        """Give ``server`` a share of new requests proportional to ``weight`` (0-256), e.g. a canary."""
        _check_name("backend", backend)
        _check_name("server", server)
        _check_weight(weight)
        with self._locked():
            self._command(f"set weight {backend}/{server} {weight}")
            self._update_model(
                backend,
                lambda servers: {k: replace(v, weight=weight) if k == server else v for k, v in servers.items()},
            )

    def servers(self, backend: str) -> list[ServerState]:
        """The servers of ``backend`` as the running worker sees them, in the order HAProxy lists them."""
        _check_name("backend", backend)
        rows = self._server_rows(backend)
        sessions = self._sessions(backend)
        return [
            ServerState(
                name=name,
                address=row["srv_addr"],
                port=int(row["srv_port"]),
                admin_state=_admin_state(int(row["srv_admin_state"])),
                operational=_OPERATIONAL.get(int(row["srv_op_state"]), row["srv_op_state"]),
                current_sessions=sessions.get(name, (0, 0))[0],
                weight=int(row["srv_uweight"]),
            )
            for name, row in rows.items()
        ]

    def server_names(self) -> dict[str, set[str]]:
        """The names of every backend's servers as the running worker has them, in one runtime
        command whatever the number of backends (a backend without servers is absent)."""
        reply = self._command("show servers state", ok=_says("# be_id"), read=True)
        names: dict[str, set[str]] = {}
        for row in _parse_server_states(reply):
            names.setdefault(row["be_name"], set()).add(row["srv_name"])
        return names

    def backend_counters(self) -> dict[str, BackendCounters]:
        """Each app backend's counters since the current worker started (a reload starts them
        again from zero, as Prometheus counters may)."""
        reply = self._command("show stat -1 2 -1", ok=_says("# pxname"), read=True)
        rows = csv.DictReader(reply.lstrip("# ").splitlines())
        counters = {}
        for row in rows:
            name = row.get("pxname", "")
            if row.get("svname") != "BACKEND" or not _NAME_RE.fullmatch(name):
                continue  # our own proxies ("ps.*") carry a "." and are not apps

            def number(column: str, row: dict[str, str] = row) -> int:
                return int(row.get(column) or 0)

            counters[name] = BackendCounters(
                requests=number("req_tot"),
                responses_4xx=number("hrsp_4xx"),
                responses_5xx=number("hrsp_5xx"),
                current_sessions=number("scur"),
            )
        return counters

    # --- rendering ----------------------------------------------------------------------------------
    def _render_config(self, backends: Sequence[Backend], *, map_path: Path) -> str:
        bind = _hostport(self.bind_address, self.http_port)
        lines = [
            "# Written by PandaStack (apps/runtime/router.py) on every change: do not edit.",
            "global",
            f"    stats socket {self.admin_sock} mode 600 level admin expose-fd listeners",
            "    stats timeout 30s",
            f"    server-state-file {self.server_state_path}",
            *([f"    log 127.0.0.1:{self.access_log_port} format raw local0 info"] if self.access_log_port else []),
            # After a reload the old worker closes idle keep-alive connections at once and finishes
            # the requests in flight. (2.6's "close-spread-time infinite" would avoid the rare
            # close-while-the-client-sends race, but then the old worker keeps serving busy
            # keep-alive clients with the old configuration — old servers included — for as long
            # as hard-stop-after; 2.7's idle-close-on-response is the real fix.)
            "    # An old worker kept alive by a long transfer after a reload is stopped after this.",
            "    hard-stop-after 15m",
            "",
            "defaults",
            "    mode http",
            "    option forwardfor",
            "    timeout connect 3s",
            "    timeout client 60s",
            "    timeout server 60s",
            "    timeout http-request 10s",
            "    timeout http-keep-alive 10s",
            "    timeout queue 30s",
            "    timeout tunnel 1h",
            "    # A connection refused by a stopping container is retried, on another server.",
            "    retries 3",
            "    option redispatch 1",
            "    retry-on conn-failure empty-response response-timeout",
            "    http-reuse safe",
            "    load-server-state-from-file global",
            "",
            f"frontend {_FRONTEND}",
            f"    bind {bind}",
            "    log global",
            "    option dontlognull",
            f'    log-format "{ACCESS_LOG_FORMAT}"',
            f"    acl ps_health_check req.hdr({HEALTH_CHECK_HEADER}) -m str {self.health_check_token}",
            "    http-request set-log-level silent if ps_health_check",
            f"    http-request del-header {HEALTH_CHECK_HEADER}",
            "    # Client-supplied address headers are lies until proven otherwise: drop them so the app",
            "    # sees only the X-Forwarded-For that `option forwardfor` writes from the real source.",
            "    http-request del-header X-Forwarded-For",
            "    http-request del-header X-Real-IP",
            "    http-request del-header Forwarded",
            "    # Replaying a request whose answer never came is safe only for methods without effects.",
            "    http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS",
            f"    use_backend %[req.hdr(host),lower,field(1,:),map({map_path})]",
            f"    default_backend {_NO_APP}",
            "",
        ]
        if self.metrics_port:
            lines += [
                f"frontend {_METRICS_FRONTEND}",
                f"    bind {_hostport(self.bind_address, self.metrics_port)}",
                "    http-request use-service prometheus-exporter if { path /metrics }",
                "    http-request return status 404",
                "",
            ]
        lines += [
            # No health checks: a deploy checks its containers before adding them, and retries with
            # redispatch cover a container that dies; the reconciler removes it.
            f"backend {_NO_APP}",
            '    http-request return status 503 content-type text/plain string "no app here"',
            "",
        ]
        for backend in backends:
            lines += [f"backend {backend.name}", "    balance roundrobin"]
            lines += [f"    server {s.name} {_hostport(s.address, s.port)} weight {s.weight}" for s in backend.servers]
            lines.append("")
        return "\n".join(lines)

    @staticmethod
    def _render_map(backends: Sequence[Backend]) -> str:
        lines = ["# Host -> backend; written by PandaStack on every change."]
        lines += sorted(f"{host} {b.name}" for b in backends for host in b.hosts)
        return "\n".join(lines) + "\n"

    def _validate(self, backends: Sequence[Backend]) -> None:
        """Run ``haproxy -c`` on the configuration (with its map in a temporary file, so the live
        files stay untouched); raise RouterError with HAProxy's message if it refuses it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.state_dir, prefix=".check-") as tmp:
            map_path = Path(tmp) / "hosts.map"
            config_path = Path(tmp) / "haproxy.cfg"
            map_path.write_text(self._render_map(backends), encoding="utf-8")
            config_path.write_text(self._render_config(backends, map_path=map_path), encoding="utf-8")
            result = self._run_haproxy(["-c", "-f", str(config_path)], timeout=30)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).replace(tmp, str(self.state_dir))
            alerts = [line for line in output.splitlines() if "[ALERT]" in line]
            raise RouterError("haproxy refused the configuration: " + ("\n".join(alerts) or output.strip()))

    def _run_haproxy(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            # The binary comes from settings and the arguments are our own paths: no shell, no user input.
            return subprocess.run(  # noqa: S603  # nosec B603
                [self.haproxy_bin, *args], capture_output=True, text=True, timeout=timeout, check=False
            )
        except FileNotFoundError:
            raise RouterError(f"haproxy not found ({self.haproxy_bin}): apt-get install haproxy") from None
        except subprocess.TimeoutExpired:
            raise RouterError(f"haproxy {' '.join(args)} did not finish within {timeout:.0f}s") from None

    # --- model on disk ------------------------------------------------------------------------------
    def _load_model(self) -> list[Backend]:
        """The backends the model on disk holds. Parsed once per version of the file (another
        process may have written it since; a write replaces the file, so its identity says)."""
        try:
            with self.model_path.open(encoding="utf-8") as fh:
                stat = os.fstat(fh.fileno())
                version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                cached = self._model_cache
                if cached is not None and cached[0] == version:
                    return list(cached[1])
                text = fh.read()
        except FileNotFoundError:
            return []
        model = [
            Backend(
                name=b["name"],
                hosts=tuple(b["hosts"]),
                servers=tuple(Server(**s) for s in b["servers"]),
            )
            for b in json.loads(text)["backends"]
        ]
        self._model_cache = (version, tuple(model))
        return model

    def _write_files(self, backends: Sequence[Backend], *, hosts_changed: bool = True) -> None:
        """Write model, map and configuration, in that order (the configuration refers to the map).
        `hosts_changed=False`: only servers changed, the map on disk stays as it is."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.model_path, '{"backends": [\n' + ",\n".join(map(_model_entry, backends)) + "\n]}\n")
        stat = self.model_path.stat()  # under the lock: nobody else writes it meanwhile
        self._model_cache = ((stat.st_ino, stat.st_mtime_ns, stat.st_size), tuple(backends))
        if hosts_changed:
            _write_atomic(self.map_path, self._render_map(backends))
        _write_atomic(self.config_path, self._render_config(backends, map_path=self.map_path))

    def _update_model(self, backend: str, change: Callable[[dict[str, Server]], dict[str, Server]]) -> None:
        """Write a run-time server change into the model and the configuration (no reload), so the
        next reload or restart keeps it. Called with the lock held."""
        model = self._load_model()
        if not any(b.name == backend for b in model):
            return
        updated = [
            replace(b, servers=tuple(sorted(change({s.name: s for s in b.servers}).values(), key=lambda s: s.name)))
            if b.name == backend
            else b
            for b in model
        ]
        if updated != model:
            self._write_files(updated, hosts_changed=False)

    # --- talking to HAProxy -------------------------------------------------------------------------
    def _command(self, command: str, *, ok: Callable[[str], bool] = _empty, read: bool = False) -> str:
        """Run a runtime API command on the current worker; raise RouterError unless its answer is
        the expected one (HAProxy answers errors as plain text, so success is what is recognised).
        ``read`` marks a command without effect, which may be sent again when its answer was lost."""
        reply = self._ask_worker(command, read=read)
        if not ok(reply):
            raise RouterError(f"haproxy refused `{command}`: {reply.strip()}")
        return reply

    def _ask_worker(self, command: str, *, read: bool) -> str:
        """Send ``command`` to the current worker through the master.

        A reload run by another process makes the master re-execute itself (refusing or resetting
        connections meanwhile) and leaves it without a worker for a moment. Every command is sent
        again if it never reached HAProxy; a read also if its answer was lost. Changes are not:
        they take the lock, which reloads hold, so they never meet one."""
        outcome: list[str | RouterUnavailable] = []

        def answered() -> bool:
            try:
                reply = _ask(self.master_sock, f"@1 {command}")
            except RouterUnavailable as exc:
                outcome.append(exc)
                retry = isinstance(exc, _NotConnected) or read
                return not (retry and self._haproxy_alive())
            outcome.append(reply)
            lost = _NO_WORKER in reply or (read and not reply.strip())
            return not (lost and self._haproxy_alive())

        _wait_until(answered, timeout=3.0)
        last = outcome[-1]
        if isinstance(last, RouterUnavailable):
            raise last
        if _NO_WORKER in last:
            raise RouterUnavailable("haproxy has no running worker; ensure_running() starts one")
        return last

    def _haproxy_alive(self) -> bool:
        """Whether a process of this HAProxy lives: the master, or, while the master re-executes
        itself for a reload (rewriting its pid file), one of its workers."""
        return self._master_pid() is not None or bool(self._own_processes())

    def _command_unless_absent(
        self, command: str, *, ok: Callable[[str], bool] = _empty, read: bool = False
    ) -> str | None:
        """Like ``_command``, but a missing server or backend answers None instead of raising."""
        try:
            return self._command(command, ok=ok, read=read)
        except RouterUnavailable:
            raise
        except RouterError as exc:
            if _says("No such server", "No such backend", "Can't find backend", "No such proxy")(str(exc)):
                return None
            raise

    def _server_rows(self, backend: str, *, missing_ok: bool = False) -> dict[str, dict[str, str]] | None:
        if missing_ok:
            reply = self._command_unless_absent(f"show servers state {backend}", ok=_says("# be_id"), read=True)
            if reply is None:
                return None
        else:
            reply = self._command(f"show servers state {backend}", ok=_says("# be_id"), read=True)
        return {row["srv_name"]: row for row in _parse_server_states(reply)}

    def _sessions(self, backend: str) -> dict[str, tuple[int, int]]:
        """Current sessions and queued requests per server of ``backend``."""
        reply = self._command(f"show stat {backend} 4 -1", ok=_says("# pxname"), read=True)
        rows = csv.DictReader(reply.removeprefix("# ").splitlines())
        return {row["svname"]: (int(row["scur"] or 0), int(row["qcur"] or 0)) for row in rows if row.get("svname")}

    def _busy(self, backend: str, server: str) -> int:
        current, queued = self._sessions(backend).get(server, (0, 0))
        return current + queued

    def _delete_server(self, backend: str, server: str) -> None:
        """Maintenance, cut what is left, delete. Called with the lock held."""
        target = f"{backend}/{server}"
        if self._command_unless_absent(f"set server {target} state maint") is None:
            return
        if self._busy(backend, server):
            self._command(f"shutdown sessions server {target}")
        # `del server` refuses while connections are still attached to the server; they go within
        # moments once it is in maintenance (which also closes its idle pooled connections).
        replies: list[str] = []

        def deleted() -> bool:
            replies.append(self._ask_worker(f"del server {target}", read=False))
            return _says("Server deleted.", "No such server")(replies[-1])

        if not _wait_until(deleted, timeout=5.0):
            raise RouterError(f"haproxy refused `del server {target}`: {replies[-1].strip()}")

    def _master_answers(self) -> bool:
        try:
            _parse_procs(_ask(self.master_sock, "show proc", timeout=2.0))
        except RouterError:
            return False
        return True

    def _procs(self) -> _Procs:
        return _parse_procs(_ask(self.master_sock, "show proc"))

    def _worker_pid(self) -> int | None:
        """The pid of the worker that answers ``@1`` (None while there is none)."""
        try:
            reply = _ask(self.master_sock, "@1 show info", timeout=2.0)
        except RouterUnavailable:
            return None
        match = re.search(r"^Pid: (\d+)$", reply, re.MULTILINE)
        return int(match.group(1)) if match else None

    def _live_backends(self) -> set[str] | None:
        try:
            reply = _ask(self.master_sock, "@1 show backend", timeout=2.0)
        except RouterUnavailable:
            return None
        if not reply.startswith("# name"):
            return None
        return {line for line in reply.splitlines()[1:] if line and not line.startswith("ps.")}

    def _master_pid(self) -> int | None:
        """The master's pid from the pid file, if that process is alive and is our HAProxy."""
        text = _read(self.pid_path)
        if not text or not text.strip().isdigit():
            return None
        pid = int(text.strip())
        return pid if _alive(pid) and self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        args = _cmdline(pid)
        return any(a == "-f" and b == str(self.config_path) for a, b in itertools.pairwise(args))

    def _own_processes(self) -> list[int]:
        """Every live HAProxy process (master or worker) started on this state directory's config."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and _alive(int(entry.name)) and self._is_ours(int(entry.name)):
                pids.append(int(entry.name))
        return pids

    def _kill(self, pids: Sequence[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not _wait_until(lambda: not any(_alive(p) for p in pids), timeout=5.0):
            raise RouterError(f"haproxy processes {list(pids)} survived SIGKILL")

    def _remove_runtime_files(self) -> None:
        for path in (self.master_sock, self.admin_sock, self.pid_path, self.server_state_path):
            path.unlink(missing_ok=True)

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the router's lock for a block: changes from other threads and processes wait until it
        ends, while this thread's own calls inside it go through (the lock is re-entrant per thread).
        For a caller whose change starts with a read elsewhere — a configuration rendered from the
        database — that another process's change must not slip in between."""
        return self._locked()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise changes across threads and processes (flock on a file in the state directory);
        re-entrant within a thread."""
        held = _held_locks()
        if held.get(self.lock_path):
            held[self.lock_path] += 1
            try:
                yield
            finally:
                held[self.lock_path] -= 1
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.lock_path.open("a") as fh:
            deadline = time.monotonic() + self.LOCK_TIMEOUT
            while not self._try_lock(fh.fileno()):
                if time.monotonic() > deadline:
                    raise RouterError(f"router busy: {self.lock_path} held for over {self.LOCK_TIMEOUT:.0f}s")
                time.sleep(0.005)  # locks are held for milliseconds (a reload: ~0.1 s)
            held[self.lock_path] = 1
            try:
                yield
            finally:
                del held[self.lock_path]
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    # --- start and reload (lock held) ---------------------------------------------------------------
    def _running(self) -> bool:
        """Whether the master answers; a master that is alive but silent may be re-executing for a
        reload, so it gets a few seconds."""
        if self._master_answers():
            return True
        return self._haproxy_alive() and _wait_until(self._master_answers, timeout=5.0)

    def _start(self) -> None:
        """Start HAProxy from the model on disk, after clearing what a crash left behind."""
        leftovers = self._own_processes()
        if leftovers:
            self._kill(leftovers)
        # Stale sockets and server states from before a crash must not be taken for live ones.
        self._remove_runtime_files()
        model = self._load_model()
        self._validate(model)
        self._write_files(model)
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("a") as log:
            try:
                # Same reasoning as in _run_haproxy: configured binary, our own paths, no shell.
                result = subprocess.run(  # noqa: S603  # nosec B603
                    [
                        self.haproxy_bin,
                        "-W",  # master-worker: the master keeps the listeners across reloads
                        "-D",
                        "-S",
                        f"{self.master_sock},mode,600",
                        "-f",
                        str(self.config_path),
                        "-p",
                        str(self.pid_path),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    cwd=self.state_dir,
                    timeout=30,
                    check=False,
                )
            except FileNotFoundError:
                raise RouterError(f"haproxy not found ({self.haproxy_bin}): apt-get install haproxy") from None
            except subprocess.TimeoutExpired:
                raise RouterError("haproxy did not daemonize within 30s") from None
        if result.returncode != 0:
            raise RouterError(f"haproxy did not start (exit {result.returncode}): {self._log_since(log_start)}")
        expected = {b.name for b in model}
        if not _wait_until(
            lambda: self._live_backends() == expected and self._admin_answers(), timeout=self.START_TIMEOUT
        ):
            raise RouterError(f"haproxy started but its worker is not answering: {self._log_since(log_start)}")

    def _admin_answers(self) -> bool:
        try:
            return _ask(self.admin_sock, "show info", timeout=2.0).startswith("Name:")
        except RouterUnavailable:
            return False

    def _log_since(self, offset: int) -> str:
        with contextlib.suppress(FileNotFoundError), self.log_path.open() as fh:
            fh.seek(offset)
            return fh.read().strip()[-2000:] or "(no output)"
        return "(no output)"

    def _reload(self, backends: Sequence[Backend]) -> None:
        """Reload through the master (files already written) and wait for the new worker."""
        before = self._procs()
        old_worker = self._worker_pid()
        self._save_server_state(backends)
        # The master re-executes itself and may close the connection before answering.
        with contextlib.suppress(RouterUnavailable):
            _ask(self.master_sock, "reload")
        expected = {b.name for b in backends}
        failed = False

        def new_worker_ready() -> bool:
            nonlocal failed
            try:
                procs = self._procs()
            except RouterError:
                return False  # the master is re-executing
            if procs.failed > before.failed:
                failed = True
                return True
            pid = self._worker_pid()
            return pid is not None and pid != old_worker and self._live_backends() == expected

        try:
            if not _wait_until(new_worker_ready, timeout=self.RELOAD_TIMEOUT):
                raise RouterError(f"haproxy reload: no new worker answered within {self.RELOAD_TIMEOUT:.0f}s")
            if failed:
                # The old worker keeps serving: nothing was lost, but the new config is not live.
                raise RouterError("haproxy reload failed (the previous configuration stays live)")
        finally:
            self.server_state_path.unlink(missing_ok=True)

    def _save_server_state(self, backends: Sequence[Backend]) -> None:
        """Write the live servers' states for the reload to load, so that drain and maint survive it.
        Only servers kept at the same address are written (HAProxy would otherwise restore the old
        address over the new configuration's), with the new configuration's weight (HAProxy would
        otherwise keep a run-time weight over it)."""
        keep = {(b.name, s.name, s.address, s.port): s.weight for b in backends for s in b.servers}
        reply = self._command("show servers state", ok=_says("# be_id"), read=True)
        lines = reply.splitlines()
        header = [line for line in lines if line.startswith("# be_id")]
        rows = []
        for row in _parse_server_states(reply):
            weight = keep.get((row["be_name"], row["srv_name"], row["srv_addr"], int(row["srv_port"])))
            if weight is not None:
                rows.append(" ".join({**row, "srv_uweight": str(weight), "srv_iweight": str(weight)}.values()))
        _write_atomic(self.server_state_path, "\n".join([lines[0], *header, *rows]) + "\n")
