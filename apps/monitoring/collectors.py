"""Where metrics come from: the router's access log, the Docker Engine's container stats and the
platform's own HTTP health checks. None of them needs any change to the apps.

Each collector keeps what it measured in memory only until its next flush, and writes through
``services.record`` (additive, safe from any number of processes).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.deployments.models import App, Container
from apps.events.models import Severity
from apps.events.services import event_emit
from apps.monitoring.models import LATENCY_BOUNDS_MS, LATENCY_FIELDS, AppHealth, HealthStatus, Resolution
from apps.monitoring.services import record
from apps.runtime.engine import ContainerStats, Engine, EngineError
from apps.runtime.router import HEALTH_CHECK_HEADER, HEALTH_CHECK_USER_AGENT

log = logging.getLogger(__name__)


# --- the router's access log ------------------------------------------------------------------------
def parse_access_line(line: bytes) -> tuple[int, int, int] | None:
    """(app id, HTTP status, active time in ms) from one line of the router's access log
    ("app_17 500 12"), or None for a line that is not about an app (our own backends, garbage)."""
    parts = line.split()
    if len(parts) != 3:
        return None
    app_id = App.id_of_router_backend(parts[0].decode(errors="replace"))
    try:
        return (app_id, int(parts[1]), max(0, int(parts[2]))) if app_id is not None else None
    except ValueError:
        return None


class TrafficCounts:
    """Requests counted per (app, raw bucket) since the last flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[int, int], dict[str, int]] = {}  # (app id, bucket start epoch) -> counts

    def add(self, app_id: int, status: int, active_ms: int, at: datetime) -> None:
        self.add_many([(app_id, status, active_ms)], at.timestamp())

    def add_many(self, requests: Iterable[tuple[int, int, int]], at: float) -> None:
        """Count requests (app id, status, active ms) that ended at `at` (epoch seconds)."""
        epoch = int(at) - int(at) % Resolution.RAW
        with self._lock:
            for app_id, status, active_ms in requests:
                counts = self._counts.get((app_id, epoch))
                if counts is None:
                    counts = self._counts[(app_id, epoch)] = dict.fromkeys(_TRAFFIC_FIELDS, 0)
                counts["requests"] += 1
                counts["latency_ms_sum"] += active_ms
                counts[LATENCY_FIELDS[bisect_left(LATENCY_BOUNDS_MS, active_ms)]] += 1
                if 400 <= status < 500:
                    counts["responses_4xx"] += 1
                elif status >= 500:  # (%ST is -1 when the client went away before any answer: neither)
                    counts["responses_5xx"] += 1

    def take(self) -> dict[tuple[int, datetime], dict[str, int]]:
        """What was counted since the last take, by (app id, bucket start), without zero counts."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return {
            (app_id, datetime.fromtimestamp(epoch, tz=UTC)): {k: v for k, v in values.items() if v}
            for (app_id, epoch), values in counts.items()
        }

    def flush(self) -> int:
        """Write what was counted; returns the number of requests written. Lines about apps that no
        longer exist are dropped."""
        counts = self.take()
        if not counts:
            return 0
        pending = dict(counts)
        written = 0
        try:
            teams = dict(App.objects.filter(pk__in={app_id for app_id, _ in counts}).values_list("pk", "team_id"))
            for key, values in counts.items():
                app_id, start = key
                if app_id in teams:
                    record(app_id=app_id, team_id=teams[app_id], at=start, **values)
                    written += values["requests"]
                del pending[key]
        except Exception:
            self.put_back(pending)  # counted again at the next flush: nothing lost to a database blip
            raise
        return written

    def put_back(self, counts: dict[tuple[int, datetime], dict[str, int]]) -> None:
        with self._lock:
            for (app_id, start), values in counts.items():
                slot = self._counts.setdefault((app_id, int(start.timestamp())), dict.fromkeys(_TRAFFIC_FIELDS, 0))
                for name, value in values.items():
                    slot[name] += value


_TRAFFIC_FIELDS = ("requests", "responses_4xx", "responses_5xx", "latency_ms_sum", *LATENCY_FIELDS)


class AccessLogListener:
    """Receives the router's access log (one UDP datagram per request, on 127.0.0.1) in a
    background thread and counts it into ``counts``. Only one listener can bind the port: a second
    one is refused with a clear error. Port 0 binds any free port (tests); ``port`` tells which."""

    BATCH_SECONDS = 0.05
    RECEIVE_BUFFER = 8 * 2**20  # asked for; the kernel caps it at net.core.rmem_max

    def __init__(self, port: int, counts: TrafficCounts, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.counts = counts
        self.received = 0
        self.errors = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1] if self._sock else self.address[1]

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # best effort: a bigger queue absorbs bursts
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RECEIVE_BUFFER)
        try:
            sock.bind(self.address)
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"cannot read the access log on udp://{self.address[0]}:{self.address[1]} ({exc.strerror}): "
                "another monitor (or program) holds it; PANDASTACK_ROUTER_ACCESS_LOG_PORT chooses the port"
            ) from None
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Read datagrams until stopped, counting every line about an app. After the first datagram
        of a round, wait BATCH_SECONDS and then take everything queued meanwhile: under load, one
        wake-up of this thread handles many requests (the socket's buffer holds the burst)."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("start() first")
        while True:
            try:
                datagrams = [sock.recv(65536)]  # blocks until traffic (or stop())
            except OSError:
                if self._stop.is_set():
                    return
                # Unexpected (the socket is ours and bound): say so and keep reading rather than let
                # the monitor run on without traffic metrics while it still holds the port.
                log.exception("reading the access log failed; reading on")
                self.errors += 1
                time.sleep(1.0)
                continue
            if self._stop.is_set():
                return
            time.sleep(self.BATCH_SECONDS)
            with contextlib.suppress(BlockingIOError):
                while len(datagrams) < 100_000:
                    datagrams.append(sock.recv(65536, socket.MSG_DONTWAIT))
            batch = [
                parsed
                for data in datagrams
                for line in data.splitlines()
                if (parsed := parse_access_line(line)) is not None
            ]
            if batch:
                self.counts.add_many(batch, time.time())
                self.received += len(batch)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._sock is not None:
            with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wake:
                wake.sendto(b"", self._sock.getsockname())  # unblocks the read
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()


# --- the Docker Engine ------------------------------------------------------------------------------
class ResourceSampler:
    """CPU and memory of every app's containers. CPU use is the growth of a container's CPU time
    between two samples, so the first sample of a container only sets its baseline."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._previous: dict[str, ContainerStats] = {}

    def sample(self, *, at: datetime | None = None) -> int:
        """Read every running container the platform placed and add one sample per app; returns the
        number of apps sampled."""
        at = at or timezone.now()
        per_app: dict[int, dict[str, float]] = {}
        seen: dict[str, ContainerStats] = {}
        containers = Container.objects.exclude(docker_id="").filter(app__live_deployment__isnull=False)
        for container in containers.only("app_id", "team_id", "docker_id"):
            try:
                stats = self.engine.stats(container.docker_id)
            except EngineError as exc:
                log.warning("could not read stats of %s: %s", container.docker_id[:12], exc)
                continue
            if stats is None:
                continue
            seen[container.docker_id] = stats
            app = per_app.setdefault(
                container.app_id, {"team_id": container.team_id, "cpu": 0.0, "memory": 0.0, "cpu_measured": 0}
            )
            app["memory"] += stats.memory_bytes
            before = self._previous.get(container.docker_id)
            if before is not None and stats.read_at > before.read_at and stats.cpu_ns >= before.cpu_ns:
                app["cpu"] += 100.0 * (stats.cpu_ns - before.cpu_ns) / ((stats.read_at - before.read_at) * 1e9)
                app["cpu_measured"] = 1  # a first reading only sets a baseline: no CPU figure this round
        self._previous = seen
        for app_id, values in per_app.items():
            record(
                app_id=app_id,
                team_id=int(values["team_id"]),
                at=at,
                cpu_percent_sum=round(values["cpu"], 3),
                cpu_samples=int(values["cpu_measured"]),
                memory_bytes_sum=values["memory"],
                memory_bytes_max=int(values["memory"]),
                resource_samples=1,
            )
        return len(per_app)


# --- health checks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    ok: bool
    error: str = ""


def check_app(app: App, *, router_url: str, timeout: float, token: str) -> CheckResult:
    """One HTTP check of an app through the router, as its users reach it: its health path (or
    "/") must answer below 400 (below 500 when it has no health path) within `timeout` seconds."""
    from apps.deployments.orchestrator import app_host

    path = app.health_check_path or "/"
    try:
        response = httpx.get(
            router_url + path,
            headers={"Host": app_host(app), "User-Agent": HEALTH_CHECK_USER_AGENT, HEALTH_CHECK_HEADER: token},
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return CheckResult(False, f"{type(exc).__name__}: {exc}"[:300])
    limit = 400 if app.health_check_path else 500
    if response.status_code >= limit:
        return CheckResult(False, f"{path} answered {response.status_code}")
    return CheckResult(True)


def router_url() -> str:
    host = settings.PANDASTACK_ROUTER_BIND
    host = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "[::]"):  # noqa: S104  # nosec B104 - reading the setting, not binding
        host = "127.0.0.1"
    return f"http://{host}:{settings.PANDASTACK_ROUTER_HTTP_PORT}"


def monitored_apps() -> Iterable[App]:
    """Apps that should be serving: a live deployment, not stopped."""
    return App.objects.filter(desired_running=True, live_deployment__isnull=False).select_related("team")


def run_health_checks(*, at: datetime | None = None, workers: int = 8) -> dict[str, int]:
    """Check every app that should be serving, in parallel; record the outcome as metrics and move
    each app's health between up and down (a `health.down` event after
    PANDASTACK_HEALTH_DOWN_AFTER failures in a row, `health.up` at the next success)."""
    at = at or timezone.now()
    apps = list(monitored_apps())
    from apps.deployments.orchestrator import router

    url = router_url()
    timeout = settings.PANDASTACK_HEALTH_CHECK_TIMEOUT
    token = router().health_check_token

    def check(app: App) -> CheckResult:
        return check_app(app, router_url=url, timeout=timeout, token=token)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(apps)))) as pool:
        results = list(pool.map(check, apps)) if apps else []
    summary = {"checked": len(apps), "failed": 0, "down": 0, "up": 0}
    for app, result in zip(apps, results, strict=True):
        record(app_id=app.pk, team_id=app.team_id, at=at, health_checks=1, health_failures=0 if result.ok else 1)
        summary["failed"] += not result.ok
        change = _health_outcome(app, result, at)
        if change:
            summary[change] += 1
    # Apps that stopped being served are no longer up or down. Asked first: an UPDATE takes SQLite's one
    # write lock even when it matches nothing, and this runs every round.
    gone = AppHealth.objects.exclude(app__in=[a.pk for a in apps]).exclude(status=HealthStatus.UNKNOWN)
    if gone.exists():
        gone.update(status=HealthStatus.UNKNOWN, consecutive_failures=0, changed_at=at)
    return summary


@transaction.atomic
def _health_outcome(app: App, result: CheckResult, at: datetime) -> str | None:
    """Record one check; returns "down" or "up" when the app's status changed that way."""
    health, _ = AppHealth.objects.select_for_update().get_or_create(app=app)
    before = health.status
    health.last_checked_at = at
    health.last_error = result.error
    if result.ok:
        health.consecutive_failures = 0
        health.status = HealthStatus.UP
    else:
        health.consecutive_failures += 1
        if health.consecutive_failures >= settings.PANDASTACK_HEALTH_DOWN_AFTER:
            health.status = HealthStatus.DOWN
    changed = health.status != before
    if changed:
        health.changed_at = at
    health.save()
    if changed and health.status == HealthStatus.DOWN:
        event_emit(
            team=app.team,
            kind="health.down",
            subject=app,
            message=f"{app.name} is down: {result.error}",
            severity=Severity.ERROR,
            data={"failures": health.consecutive_failures, "path": app.health_check_path or "/"},
        )
        return "down"
    if changed and before == HealthStatus.DOWN:
        event_emit(team=app.team, kind="health.up", subject=app, message=f"{app.name} is up again")
        return "up"
    return None
