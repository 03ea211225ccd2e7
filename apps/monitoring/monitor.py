"""The monitor process (`manage.py run_monitor`): collects metrics, checks health, evaluates alert
rules, rolls metrics up and starts the router again when it died, each on its own interval in its
own thread.

Collecting must happen once per host (the router sends its access log to one socket, and two
samplers would count every container twice), so a monitor first takes an exclusive lock file next
to the router's state; a second monitor waits as a standby and takes over within a few seconds when
the first dies (the kernel releases the lock with the process). Alert rules are evaluated by every
monitor, standby or not: the evaluation locks each rule row, so two evaluators never act twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connection

from apps.monitoring.collectors import AccessLogListener, ResourceSampler, TrafficCounts, run_health_checks
from apps.monitoring.housekeeping import prune_history
from apps.monitoring.services import rollup

log = logging.getLogger(__name__)

ROLLUP_INTERVAL = 60.0


@dataclass
class Loop:
    name: str
    interval: float
    step: Callable[[], Any]
    thread: threading.Thread | None = None
    rounds: int = 0
    failures: int = 0
    last_result: Any = None


@dataclass
class Monitor:
    """Runs the loops until `stop()`. `collect=False` runs only the alert evaluation (tests, or a
    host without a router)."""

    collect: bool = True
    evaluate: bool = True
    router_dir: Path = field(default_factory=lambda: Path(str(settings.PANDASTACK_ROUTER_DIR)))
    access_log_port: int = field(default_factory=lambda: settings.PANDASTACK_ROUTER_ACCESS_LOG_PORT)
    on_change: Callable[[str], None] = lambda message: log.info("%s", message)
    counts: TrafficCounts = field(default_factory=TrafficCounts)
    loops: list[Loop] = field(default_factory=list)
    listener: AccessLogListener | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock_fd: int | None = None

    def run(self) -> None:
        """Block until stopped (from another thread or a signal handler)."""
        if self.evaluate:
            from apps.alerts.evaluation import evaluate_rules

            self._start_loop("alerts", settings.PANDASTACK_ALERT_EVALUATION_INTERVAL, lambda: evaluate_rules())
        if self.collect:
            self._wait_for_leadership()
            if not self._stop.is_set():
                self._start_collecting()
        self._stop.wait()
        for loop in self.loops:
            if loop.thread is not None:
                loop.thread.join(30)
        if self.listener is not None:
            self.listener.stop()
            _with_connection(self.counts.flush)  # what arrived since the last flush
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    def stop(self) -> None:
        self._stop.set()

    # --- leadership ---------------------------------------------------------------------------------
    def _wait_for_leadership(self) -> None:
        self.router_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.router_dir / "monitor.lock", os.O_RDWR | os.O_CREAT, 0o600)
        announced = False
        while not self._stop.is_set():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not announced:
                    self.on_change("another monitor collects on this host; standing by (alert rules are evaluated)")
                    announced = True
                self._stop.wait(1.0)
                continue
            self._lock_fd = fd
            return
        os.close(fd)

    def _start_collecting(self) -> None:
        from apps.deployments.orchestrator import engine, router

        if self.access_log_port:
            self.listener = AccessLogListener(self.access_log_port, self.counts)
            self.listener.start()
            self._start_loop("traffic", settings.PANDASTACK_METRICS_FLUSH_SECONDS, self.counts.flush)
        sampler = ResourceSampler(engine())
        self._start_loop("resources", settings.PANDASTACK_STATS_INTERVAL, sampler.sample)
        self._start_loop("health", settings.PANDASTACK_HEALTH_CHECK_INTERVAL, run_health_checks)
        self._start_loop("rollup", ROLLUP_INTERVAL, lambda: (rollup(), prune_history()))
        if router().state_dir == self.router_dir.absolute():  # this host's router: the one this lock sits by
            self._start_loop("router", settings.PANDASTACK_ROUTER_WATCH_INTERVAL, self._restore_router)
        where = (
            f"udp://127.0.0.1:{self.listener.port}" if self.listener else "off (PANDASTACK_ROUTER_ACCESS_LOG_PORT=0)"
        )
        self.on_change(f"collecting: access log {where}")

    def _restore_router(self) -> bool:
        restored = restore_router()
        if restored:
            self.on_change("the router was not running: started it again with its routes")
        return restored

    # --- loops --------------------------------------------------------------------------------------
    def _start_loop(self, name: str, interval: float, step: Callable[[], Any]) -> None:
        loop = Loop(name=name, interval=interval, step=step)
        loop.thread = threading.Thread(target=self._run_loop, args=(loop,), name=f"monitor-{name}", daemon=True)
        self.loops.append(loop)
        loop.thread.start()

    def _run_loop(self, loop: Loop) -> None:
        try:
            while True:
                try:
                    loop.last_result = _with_connection(loop.step)
                except Exception:  # one bad round (engine restarting, database blip) must not stop the loop
                    loop.failures += 1
                    log.exception("monitor %s round failed", loop.name)
                loop.rounds += 1
                if self._stop.wait(loop.interval):
                    return
        finally:
            connection.close()  # this thread's own connection


def _with_connection(step: Callable[[], Any]) -> Any:
    close_old_connections()
    try:
        return step()
    finally:
        with contextlib.suppress(Exception):
            close_old_connections()


def restore_router() -> bool:
    """Start the router again, with every route and server, when it is not running although it was
    programmed before (HAProxy killed -9, OOM-killed, crashed): its routes are back within about
    PANDASTACK_ROUTER_WATCH_INTERVAL plus a start, instead of waiting for the reconciler's next pass —
    which is a Celery task, queued behind whatever the workers are doing (a deploy can hold a worker
    for a minute). When it runs, this costs one round trip to its master socket. Returns whether it
    had to start it."""
    from apps.deployments.orchestrator import router, sync_router

    r = router()
    if r.is_running() or not r.model_path.exists():  # running, or never programmed: nothing to restore
        return False
    log.warning("the router is not running: starting it again with its routes")
    sync_router()
    return True
