"""End-to-end fixtures: the real Docker Engine, a real HAProxy run by the platform, and a real
Celery worker process sharing the test database — the whole data plane, nothing stood in for.

The worker is one long-lived process per session (it reads the committed test database, so the
tests use `transactional_db`); every test gets a fresh test-run label on what it starts, and its
containers are removed at teardown."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

from apps.deployments import orchestrator
from apps.deployments.models import Deployment
from tests.support import TEST_RUN_LABEL, remove_test_run

ROOT = Path(__file__).resolve().parent.parent.parent
TERMINAL = {"live", "failed", "superseded", "rolled_back", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Platform:
    router_port: int
    router_dir: Path
    run_id: str
    worker: "WorkerProcess"

    def get(self, host: str, path: str = "/", timeout: float = 5.0) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.router_port}{path}", headers={"Host": host}, timeout=timeout)


class WorkerProcess:
    """A platform process (by default `celery worker`) in a subprocess with the test settings and
    the test database; it counts as started once `ready` appears in its output."""

    def __init__(
        self, env: dict[str, str], log_path: Path, argv: list[str] | None = None, ready: bytes = b"ready."
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.argv = argv or [
            sys.executable, "-m", "celery", "-A", "pandastack", "worker", "-l", "info", "--concurrency", "1",
            "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", f"e2e-{uuid.uuid4().hex[:6]}@%h",
        ]  # fmt: skip
        self.ready = ready
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        start = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while self.ready not in self.log_path.read_bytes()[start:]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(self.argv[:4])} did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the worker and its pool children, as a crash would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def platform_command(name: str, *, web_port: int = 0, beat_schedule: Path | None = None, node: str = "") -> list[str]:
    """The command line `scripts/run` starts the platform process `name` with: "worker", "beat",
    "scheduler", "monitor" or "web" (uvicorn on `web_port`). `beat_schedule` is beat's schedule file;
    `node` names a worker (celery's -n), so that two on one host are told apart."""
    py = sys.executable
    commands = {
        "worker": [py, "-m", "celery", "-A", "pandastack", "worker", "-l", "info", "--concurrency", "1",
                   *(["-n", node] if node else [])],
        "beat": [py, "-m", "celery", "-A", "pandastack", "beat", "-l", "info", "-s", str(beat_schedule)],
        "scheduler": [py, "manage.py", "run_scheduler"],
        "monitor": [py, "manage.py", "run_monitor"],
        "web": [py, "-m", "uvicorn", "pandastack.asgi:application", "--host", "127.0.0.1", "--port", str(web_port),
                "--workers", "1", "--lifespan", "off", "--no-proxy-headers", "--timeout-graceful-shutdown", "5"],
    }  # fmt: skip
    return commands[name]


@pytest.fixture(scope="session")
def platform_settings(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Router and runtime settings shared by this process and the worker process."""
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.fail("the end-to-end tests need Redis as the broker: set REDIS_URL (scripts/test does)", pytrace=False)
    router_dir = tmp_path_factory.mktemp("router")
    run_id = uuid.uuid4().hex[:12]
    values = {
        "PANDASTACK_ROUTER_DIR": router_dir,
        "PANDASTACK_ROUTER_HTTP_PORT": free_port(),
        "PANDASTACK_ROUTER_BIND": "127.0.0.1",
        "PANDASTACK_ROUTER_ACCESS_LOG_PORT": free_udp_port(),
        "PANDASTACK_EXTRA_LABELS": {TEST_RUN_LABEL: run_id},
    }
    saved = {name: getattr(settings, name) for name in values}
    for name, value in values.items():
        setattr(settings, name, value)
    orchestrator.engine.cache_clear()
    orchestrator.router.cache_clear()
    with django_db_blocker.unblock():
        db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "pandastack.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or "",
        "PANDASTACK_ROUTER_DIR": str(router_dir),
        "PANDASTACK_ROUTER_HTTP_PORT": str(values["PANDASTACK_ROUTER_HTTP_PORT"]),
        "PANDASTACK_ROUTER_BIND": "127.0.0.1",
        "PANDASTACK_ROUTER_ACCESS_LOG_PORT": str(values["PANDASTACK_ROUTER_ACCESS_LOG_PORT"]),
        "PANDASTACK_EXTRA_LABELS": f"{TEST_RUN_LABEL}={run_id}",
        "PANDASTACK_HEALTH_TIMEOUT": str(settings.PANDASTACK_HEALTH_TIMEOUT),
        "PANDASTACK_DRAIN_TIMEOUT": str(settings.PANDASTACK_DRAIN_TIMEOUT),
    }
    yield {"env": env, "run_id": run_id, "router_dir": router_dir}
    try:
        orchestrator.router().stop()
    finally:
        remove_test_run(orchestrator.engine().client, run_id)
        for name, value in saved.items():
            setattr(settings, name, value)
        orchestrator.engine.cache_clear()
        orchestrator.router.cache_clear()


@pytest.fixture(scope="session")
def worker(platform_settings, tmp_path_factory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(platform_settings["env"], tmp_path_factory.mktemp("worker") / "worker.log")
    process.start()
    yield process
    process.stop()


# Fast rounds, so that tests see metrics, health changes and alerts within a second or two.
MONITOR_ENV = {
    "PANDASTACK_METRICS_FLUSH_SECONDS": "0.3",
    "PANDASTACK_STATS_INTERVAL": "1",
    "PANDASTACK_HEALTH_CHECK_INTERVAL": "0.5",
    "PANDASTACK_HEALTH_CHECK_TIMEOUT": "2",
    "PANDASTACK_ALERT_EVALUATION_INTERVAL": "0.5",
}


@pytest.fixture(scope="session")
def monitor_process(platform_settings, tmp_path_factory) -> Iterator[WorkerProcess]:
    """`manage.py run_monitor` for the whole session (started by the first test that asks)."""
    process = WorkerProcess(
        {**platform_settings["env"], **MONITOR_ENV},
        tmp_path_factory.mktemp("monitor") / "monitor.log",
        argv=[sys.executable, "manage.py", "run_monitor"],
        ready=b"monitor: collecting",
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def monitor(platform, monitor_process) -> WorkerProcess:
    if monitor_process.process is None or monitor_process.process.poll() is not None:
        monitor_process.start()
    return monitor_process


@pytest.fixture
def platform(transactional_db, platform_settings, worker, web_image, docker_engine) -> Iterator[Platform]:
    if worker.process is None or worker.process.poll() is not None:
        worker.start()  # a test killed it
    yield Platform(
        router_port=settings.PANDASTACK_ROUTER_HTTP_PORT,
        router_dir=platform_settings["router_dir"],
        run_id=platform_settings["run_id"],
        worker=worker,
    )
    # The database is flushed after each test; its containers go too, and the router forgets them.
    for info in orchestrator.engine().list({TEST_RUN_LABEL: platform_settings["run_id"]}):
        orchestrator.engine().remove(info.id)
    _wait_until_the_worker_is_quiet()


def _wait_until_the_worker_is_quiet(timeout: float = 10.0) -> None:
    """Wait (bounded) until no other session on the test database is running a query or holds an open
    transaction: the flush after a transactional test TRUNCATEs every table, and a worker still busy
    with the test's last task (on a loaded machine) deadlocks with it."""
    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)


def wait_for(predicate: Callable[[], object], *, timeout: float = 60.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def wait_deployment(deployment_id: int, *, timeout: float = 60.0, worker: WorkerProcess | None = None) -> Deployment:
    """Poll the database until the deployment reaches a terminal status."""

    def done() -> Deployment | None:
        deployment = Deployment.objects.get(pk=deployment_id)
        return deployment if deployment.status in TERMINAL else None

    try:
        return wait_for(done, timeout=timeout, what=f"deployment {deployment_id} to finish")
    except AssertionError:
        events = "\n".join(e.message for e in Deployment.objects.get(pk=deployment_id).events.all())
        tail = worker.log_tail() if worker else ""
        raise AssertionError(
            f"deployment {deployment_id} did not finish.\nEvents:\n{events}\nWorker:\n{tail}"
        ) from None
