"""The embedded default holds: every process `scripts/run` starts — the uvicorn web server (ASGI),
a Celery worker and Celery beat on the folder broker, `manage.py run_scheduler` and
`manage.py run_monitor` — run at once on one SQLite file, while API clients deploy, change variables
(which redeploys), run cron jobs now and read lists, from three threads for about 40 s. No request may
answer 5xx, no process may log "database is locked", and the last deployment goes live and serves
through the router.

Nothing here uses the test database: the processes get a fresh SQLite file, a broker folder, a router
state folder and log folder in the test's tmp dir, and the real Docker Engine and HAProxy (started by
the worker, on free ports). Containers carry the test-run label and are removed at teardown. The
figures (requests by status, latency by method, how long the drill took) are printed: run with -s."""

import contextlib
import itertools
import logging
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from apps.runtime.router import HAProxyRouter
from tests.support import TEST_RUN_LABEL, remove_test_run
from tests.support.platform_fixtures import ROOT, free_port, free_udp_port, platform_command, wait_for

DRILL_SECONDS = 40.0
CLIENTS = 3
# Answers the drill expects besides 2xx: 409 while a deployment is still in progress (one at a time),
# 429 from the run-now rate limit (3 manual runs per job per minute).
EXPECTED_REFUSALS = {409, 429}
LOCK_ERRORS = ("database is locked", "database table is locked", "OperationalError")

# The broker folder and everything else `scripts/run` keeps under var/ goes into the tmp dir: a
# settings module on top of the local settings that moves only the broker folder.
SETTINGS_MODULE = """\
from pandastack.settings.local import *  # noqa: F403

CELERY_BROKER_TRANSPORT_OPTIONS = {{
    **CELERY_BROKER_TRANSPORT_OPTIONS,  # noqa: F405
    "data_folder_in": "{broker}/queue",
    "data_folder_out": "{broker}/queue",
    "processed_folder": "{broker}/processed",
    "control_folder": "{broker}/control",
}}
"""

# Fast monitor rounds: the monitor writes as often as it ever does, to press on the one SQLite file.
MONITOR_ENV = {
    "PANDASTACK_METRICS_FLUSH_SECONDS": "0.3",
    "PANDASTACK_STATS_INTERVAL": "1",
    "PANDASTACK_HEALTH_CHECK_INTERVAL": "0.5",
    "PANDASTACK_HEALTH_CHECK_TIMEOUT": "2",
    "PANDASTACK_ALERT_EVALUATION_INTERVAL": "0.5",
}


class Proc:
    """One platform process with its log file; started means `ready` appeared in its log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, ready: bytes) -> None:
        self.name, self.argv, self.env, self.ready = name, argv, env, ready
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def is_ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited at start:\n{self.log_tail()}")
        return self.ready in self.log_path.read_bytes()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class Drill:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.run_id = uuid.uuid4().hex[:12]
        self.team = f"drill{self.run_id[:6]}"
        self.db_path = tmp / "pandastack.sqlite3"
        self.log_dir = tmp / "log"
        self.router_dir = tmp / "router"
        self.web_port = free_port()
        self.router_port = free_port()
        self.procs: list[Proc] = []
        broker = tmp / "broker"
        for folder in ("queue", "processed", "control"):
            (broker / folder).mkdir(parents=True)
        self.log_dir.mkdir()
        settings_dir = tmp / "settings"
        settings_dir.mkdir()
        (settings_dir / "drill_settings.py").write_text(SETTINGS_MODULE.format(broker=broker))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "REDIS_", "CELERY_", "DJANGO_", "PANDASTACK_"))
        }
        self.env = {
            **env,
            "PYTHONPATH": os.pathsep.join([str(settings_dir), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "drill_settings",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "CELERY_BROKER_URL": "filesystem://",
            "PANDASTACK_SECRET_KEYS": Fernet.generate_key().decode(),
            "PANDASTACK_ROUTER_DIR": str(self.router_dir),
            "PANDASTACK_ROUTER_HTTP_PORT": str(self.router_port),
            "PANDASTACK_ROUTER_BIND": "127.0.0.1",
            "PANDASTACK_ROUTER_ACCESS_LOG_PORT": str(free_udp_port()),
            "PANDASTACK_EXTRA_LABELS": f"{TEST_RUN_LABEL}={self.run_id}",
            "PANDASTACK_DRAIN_TIMEOUT": "1",
            "PANDASTACK_RECONCILE_INTERVAL": "3",
            # The API's own throttle is not what this drill is about.
            "PANDASTACK_API_THROTTLE_RATE": "100000/min",
            **MONITOR_ENV,
        }

    def bootstrap(self) -> str:
        """The database as scripts/run makes it: migrations, a team and its owner's token."""
        self.manage("migrate", "--noinput", "-v", "0")
        owner = f"owner@{self.team}.example.com"
        self.manage("createteam", self.team, "--owner", owner)
        return self.manage(
            "createtoken", "--team", self.team, "--user", owner, "--name", "drill",
            "--scopes", "read,deploy,logs,secrets,infra,admin",
        ).strip()  # fmt: skip

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start_all(self, only: set[str] | None = None) -> None:
        """The processes and commands of `scripts/run`, with the same arguments (or `only` some)."""
        schedule = self.tmp / "celerybeat-schedule"
        ready = {"worker": b"ready.", "beat": b"beat: Starting", "scheduler": b"cron scheduler running",
                 "monitor": b"monitor: collecting", "web": b"Uvicorn running on"}  # fmt: skip
        self.procs = [
            Proc(name, platform_command(name, web_port=self.web_port, beat_schedule=schedule), self.env, self.log_dir,
                 marker)
            for name, marker in ready.items()
        ]  # fmt: skip
        self.procs = [proc for proc in self.procs if only is None or proc.name in only]
        for proc in self.procs:
            proc.start()
        deadline = time.monotonic() + 60
        for proc in self.procs:
            while not proc.is_ready():
                assert time.monotonic() < deadline, f"{proc.name} did not start:\n{proc.log_tail()}"
                time.sleep(0.1)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextmanager
def drill_running(tmp_path: Path, docker_engine, *, unset: tuple[str, ...] = ()) -> Iterator[Drill]:
    """A Drill (without the settings named in `unset`, which then take their defaults) that stops its
    processes and its router and proves it left no container behind."""
    drill = Drill(tmp_path)
    for name in unset:
        drill.env.pop(name)
    try:
        yield drill
    finally:
        try:
            drill.stop_all()
            HAProxyRouter(state_dir=drill.router_dir, http_port=drill.router_port).stop()
        finally:
            leftovers = remove_test_run(docker_engine.client, drill.run_id)
            assert not leftovers, leftovers


@pytest.fixture
def drill(tmp_path, docker_engine) -> Iterator[Drill]:
    with drill_running(tmp_path, docker_engine) as running:
        yield running


class Recorder:
    """Every API answer of the drill: (method, route, status, seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, int, float]] = []
        self.server_errors: list[str] = []
        self.unexpected: list[str] = []

    def add(self, method: str, route: str, response: httpx.Response, seconds: float) -> None:
        with self.lock:
            self.calls.append((method, route, response.status_code, seconds))
            status = response.status_code
            if status >= 500:
                self.server_errors.append(f"{method} {route} -> {status}: {response.text[:300]}")
            elif status >= 400 and status not in EXPECTED_REFUSALS:
                self.unexpected.append(f"{method} {route} -> {status}: {response.text[:300]}")

    def report(self, elapsed: float) -> str:
        by_status = Counter(status for _, _, status, _ in self.calls)
        by_method: dict[str, list[float]] = defaultdict(list)
        for method, _, _, seconds in self.calls:
            by_method[method].append(seconds * 1000)
        lines = [f"{len(self.calls)} requests in {elapsed:.1f}s; by status: {dict(sorted(by_status.items()))}"]
        for method, values in sorted(by_method.items()):
            values.sort()
            p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
            lines.append(
                f"  {method}: {len(values)} requests, p50 {statistics.median(values):.0f} ms, p95 {p95:.0f} ms,"
                f" max {values[-1]:.0f} ms"
            )
        by_route = Counter((method, route, status) for method, route, status, _ in self.calls)
        lines += [f"  {m} {r} -> {s}: {n}" for (m, r, s), n in sorted(by_route.items())]
        return "\n".join(lines)


def test_every_scripts_run_process_shares_one_sqlite_file_without_lock_errors(drill, web_image, web_image_v2):
    started = time.monotonic()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too much here
    # --- the database, as scripts/run makes it ------------------------------------------------------
    token = drill.bootstrap()
    # WAL is a property of the file: a second, plain connection sees it.
    with contextlib.closing(sqlite3.connect(drill.db_path)) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # And every process's Django connection gets the busy timeout, WAL, NORMAL sync and IMMEDIATE.
    seen = drill.manage(
        "shell", "-v", "0", "-c",
        "from django.db import connection\n"
        "c = connection.cursor()\n"
        "for pragma in ('journal_mode', 'busy_timeout', 'synchronous'):\n"
        "    c.execute(f'PRAGMA {pragma}')\n"
        "    print(c.fetchone()[0])\n"
        "print(connection.transaction_mode)",
    ).split()  # fmt: skip
    assert seen[-4:] == ["wal", "20000", "1", "IMMEDIATE"], seen

    drill.start_all()
    print(f"\nprocesses up {time.monotonic() - started:.1f}s after the start")
    api = f"http://127.0.0.1:{drill.web_port}/api/v1/teams/{drill.team}"
    headers = {"Authorization": f"Bearer {token}"}
    recorder = Recorder()

    def call(http: httpx.Client, method: str, route: str, path: str, body: dict | None = None) -> httpx.Response:
        begun = time.monotonic()
        response = http.request(method, f"{api}/{path}", json=body)
        recorder.add(method, route, response, time.monotonic() - begun)
        return response

    with httpx.Client(headers=headers, timeout=60) as http:
        assert call(http, "POST", "projects/", "projects/", {"slug": "web", "name": "Web"}).status_code == 201
        app = {"name": "web", "project": "web", "port": 8080, "health_check_path": "/healthz"}
        assert call(http, "POST", "apps/", "apps/", app).status_code == 201
        first = call(http, "POST", "deployments/", "apps/web/deployments/", {"image": web_image})
        assert first.status_code == 202, first.text
        for n in range(3):
            job = {"name": f"tick{n}", "project": "web", "app": "web", "command": ["echo", "tick"],
                   "schedule": "* * * * *"}  # fmt: skip
            response = call(http, "POST", "cron-jobs/", "cron-jobs/", job)
            assert response.status_code == 201, response.text

        def first_live() -> bool:
            body = call(http, "GET", "deployments/id/", f"apps/web/deployments/{first.json()['id']}/").json()
            assert body["status"] not in {"failed", "superseded", "rolled_back", "cancelled"}, body
            return body["status"] == "live"

        wait_for(first_live, timeout=60, what="the first deployment to go live")
        print(f"first deployment live {time.monotonic() - started:.1f}s after the start")

    stop = threading.Event()
    crashes: list[str] = []

    def deployer(http: httpx.Client, n: int) -> None:
        image = (web_image, web_image_v2)[n % 2]
        call(http, "POST", "deployments/", "apps/web/deployments/", {"image": image})
        for _ in range(4):  # a deploy a second or so; reads in between
            call(http, "GET", "deployments/", "apps/web/deployments/")
            call(http, "GET", "apps/web/", "apps/web/")
            time.sleep(0.1)

    def configurer(http: httpx.Client, n: int) -> None:
        if n % 2 == 0:
            call(http, "POST", "variables/", "apps/web/variables/", {"variables": {"DRILL": str(n)}})
        else:
            call(http, "POST", "variables/unset/", "apps/web/variables/unset/", {"names": ["DRILL"]})
        for _ in range(4):  # a change (and its redeploy) a second or so; reads in between
            call(http, "GET", "events/", "events/")
            call(http, "GET", "variables/", "apps/web/variables/")
            time.sleep(0.1)

    def cron(http: httpx.Client, n: int) -> None:
        job = f"tick{n % 3}"
        call(http, "POST", "cron-jobs/run/", f"cron-jobs/{job}/run/")
        call(http, "GET", "cron-jobs/runs/", f"cron-jobs/{job}/runs/")
        call(http, "GET", "apps/", "apps/")
        call(http, "GET", "cron-jobs/", "cron-jobs/")

    def client(step) -> None:
        try:
            with httpx.Client(headers=headers, timeout=60) as http:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    step(http, n)
                    time.sleep(0.1)
        except Exception as exc:  # a timeout or a dropped connection is a failure of the drill too
            crashes.append(f"{step.__name__}: {exc!r}")

    drill_start = time.monotonic()
    threads = [threading.Thread(target=client, args=(step,)) for step in (deployer, configurer, cron)[:CLIENTS]]
    for thread in threads:
        thread.start()
    time.sleep(DRILL_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(90)
    drill_elapsed = time.monotonic() - drill_start

    # --- the last deployment goes live and serves -----------------------------------------------------
    try:
        with httpx.Client(headers=headers, timeout=60) as http:

            def final_deploy() -> httpx.Response | None:
                response = call(http, "POST", "deployments/", "apps/web/deployments/", {"image": web_image_v2})
                return response if response.status_code == 202 else None

            number = wait_for(final_deploy, timeout=90, what="the final deploy to be accepted").json()["id"]

            def final_status() -> str | None:
                status = call(http, "GET", "deployments/id/", f"apps/web/deployments/{number}/").json()["status"]
                return status if status in {"live", "failed", "superseded", "rolled_back", "cancelled"} else None

            final = wait_for(final_status, timeout=90, what=f"deployment {number} to finish")
    finally:
        print(recorder.report(drill_elapsed))
        print(f"drill {drill_elapsed:.1f}s, whole test {time.monotonic() - started:.1f}s")
    served = httpx.get(f"http://127.0.0.1:{drill.router_port}/", headers={"Host": f"web.{drill.team}.localhost"})

    logs = {proc.name: proc.log() for proc in drill.procs}
    locked = {
        name: [line for line in text.splitlines() if any(marker in line for marker in LOCK_ERRORS)][:5]
        for name, text in logs.items()
    }
    locked = {name: lines for name, lines in locked.items() if lines}
    for proc in drill.procs:
        assert proc.process is not None and proc.process.poll() is None, f"{proc.name} died:\n{proc.log_tail()}"
    assert crashes == []
    assert recorder.server_errors == [], recorder.server_errors[:10]
    assert locked == {}, locked
    assert recorder.unexpected == [], recorder.unexpected[:10]
    assert final == "live", final
    assert served.status_code == 200 and served.text.startswith("v2"), (served.status_code, served.text)
    # The drill did what it says: deploys, variable changes and manual runs were accepted, many times.
    accepted = Counter(route for method, route, status, _ in recorder.calls if method == "POST" and status < 300)
    assert accepted["deployments/"] >= 3 and accepted["cron-jobs/run/"] >= 3, accepted
    assert accepted["variables/"] + accepted["variables/unset/"] >= 6, accepted
    assert len(recorder.calls) > 100, recorder.report(drill_elapsed)


def test_a_request_that_cannot_get_the_write_lock_in_time_answers_503_not_500(drill):
    """Past the busy timeout SQLite says "database is locked": the API answers 503 service_unavailable
    with Retry-After in the stable error shape, and the next request, once the lock is free, succeeds."""
    drill.env["PANDASTACK_SQLITE_BUSY_TIMEOUT"] = "1"
    token = drill.bootstrap()
    drill.start_all(only={"web"})
    url = f"http://127.0.0.1:{drill.web_port}/api/v1/teams/{drill.team}/projects/"
    headers = {"Authorization": f"Bearer {token}"}
    # Another process holds the write lock far past the web server's busy timeout.
    holder = sqlite3.connect(drill.db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        begun = time.monotonic()
        busy = httpx.post(url, json={"slug": "web", "name": "Web"}, headers=headers, timeout=30)
        waited = time.monotonic() - begun
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert busy.status_code == 503, (busy.status_code, busy.text[:500])
    assert busy.headers["Retry-After"] == "5"
    error = busy.json()["error"]
    assert error["code"] == "service_unavailable" and error["retry_after"] == 5, error
    assert error["request_id"] == busy.headers["X-Request-ID"]
    assert 0.9 < waited < 10, waited  # it waited for the lock (the busy timeout), then gave up
    assert "Traceback" not in drill.procs[0].log()
    created = httpx.post(url, json={"slug": "web", "name": "Web"}, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
