"""Helpers for outage drills: a Redis of the test's own that it stops and starts again (and pointing
this test process's cache and Celery broker at it), and the machine's dockerd restarted the way it was
started.

The suite's own Redis (REDIS_URL) is never stopped: other tests, and other test runs on this machine,
use it. dockerd is shared by everything on the machine: it is restarted only with live-restore on (its
containers keep running), and the restart returns only once the engine answers again."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors
import kombu.pools
import requests

from pandastack.celery import app as celery_app
from tests.support.database_fixtures import start_redis, stop_redis


class RestartableRedis:
    """A redis-server of the test's own on a loopback port it keeps across restarts, with an append-only
    file — as the platform's broker must run (docs/outages.md): what was queued survives a restart."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pandastack-outage-redis-"))
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process, self.port = start_redis(self.root, "appendonly yes", "appendfsync always", port=self.port)

    def stop(self) -> None:
        """A clean stop (SIGTERM: Redis finishes its append-only file and exits), as an operator's
        restart does; connections are refused until `start()`."""
        if self.process is not None and self.process.poll() is None:
            stop_redis(self.process)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def answers(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", self.port or 0)) == 0


@contextmanager
def redis_as_broker_and_cache(settings, monkeypatch, redis: RestartableRedis) -> Iterator[dict[str, str]]:
    """Point this process at `redis` as production does with one REDIS_URL: the cache on db 0 (the API
    throttle, locks), the Celery broker on db 1. Yields the environment a worker subprocess needs for
    the same. `settings` and `monkeypatch` are pytest's fixtures (they undo their part after the test)."""
    cache_url, broker_url = redis.url(0), redis.url(1)
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": cache_url,
            "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 2.0},
        }
    }
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_WRITE_URL"):  # Celery reads these before its conf
        monkeypatch.delenv(name, raising=False)
    conf = celery_app.conf
    saved = conf.get("broker_url"), conf.get("broker_write_url")
    conf.broker_url, conf.broker_write_url = broker_url, None
    _forget_broker_connections()
    try:
        yield {"REDIS_URL": cache_url, "CELERY_BROKER_URL": broker_url, "CELERY_RESULT_BACKEND": ""}
    finally:
        conf.broker_url, conf.broker_write_url = saved
        _forget_broker_connections()


def _forget_broker_connections() -> None:
    """Celery pools its broker connections; close them so that the next publish connects to the broker
    the conf names now. Celery's own after-fork hook forgets the pools the same way."""
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
    # kombu keeps its own pools per broker URL, and Celery publishes through them: forget those too, or
    # the next publish to the URL the test restored takes a connection from a pool closed meanwhile.
    kombu.pools.reset()
    celery_app._after_fork()


ROOT = Path(__file__).resolve().parent.parent.parent


class DockerDaemon:
    """The machine's dockerd. `restart()` restarts it the way it runs: through systemd when systemd runs
    it (`systemctl restart docker`; not exercised on the CI machine, which has no systemd), else — started
    by scripts/lib.sh with nohup, or by hand — stopped with SIGTERM and started again with the same
    arguments, environment, working directory and log file."""

    PID_FILE = Path("/var/run/docker.pid")
    TIMEOUT = 60.0

    def __init__(self) -> None:
        self.client = docker.from_env(timeout=10)
        self.started: list[subprocess.Popen] = []  # what we started (kept, so Python reaps it)

    def live_restore(self) -> bool:
        return bool(self.client.info().get("LiveRestoreEnabled"))

    def ensure_live_restore(self) -> None:
        """Turn live-restore on the way scripts/test does (daemon.json, then a configuration reload that
        stops no container): a restart without it would stop every container on the machine."""
        if self.live_restore():
            return
        subprocess.run(
            ["bash", "-c", "source scripts/lib.sh && ensure_docker_live_restore"], cwd=ROOT, check=True, timeout=30
        )
        if not self.live_restore():
            raise RuntimeError("dockerd runs without live-restore and did not take it: not restarting it")

    def answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return False

    def restart(self, while_down: Callable[[], None] = lambda: None) -> float:
        """Stop dockerd, call `while_down`, start it again, and return once the engine answers: the
        seconds it did not answer."""
        if Path("/run/systemd/system").exists() and _systemd_runs_docker():
            started = time.monotonic()
            subprocess.run(["systemctl", "stop", "docker"], check=True, timeout=self.TIMEOUT)
            try:
                while_down()
            finally:
                subprocess.run(["systemctl", "start", "docker"], check=True, timeout=self.TIMEOUT)
            return self._wait_answering(started)
        pid = self._pid()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        env = dict(
            line.split(b"=", 1) for line in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in line
        )
        cwd = os.readlink(f"/proc/{pid}/cwd")
        log_path = os.readlink(f"/proc/{pid}/fd/1")
        started = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        try:
            deadline = time.monotonic() + self.TIMEOUT
            while _alive(pid):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dockerd ({pid}) did not stop within {self.TIMEOUT:.0f}s")
                time.sleep(0.05)
            while_down()
        finally:
            if not _alive(pid):  # never leave the machine without its engine
                self._start(argv, env, cwd, log_path)
        return self._wait_answering(started)

    def _start(self, argv: list[bytes], env: dict[bytes, bytes], cwd: str, log_path: str) -> None:
        with contextlib.ExitStack() as stack:
            if log_path.startswith("/") and Path(log_path).is_file():
                out = stack.enter_context(open(log_path, "ab"))
            else:
                out = subprocess.DEVNULL
            self.started.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def _wait_answering(self, since: float) -> float:
        deadline = time.monotonic() + self.TIMEOUT
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Docker Engine did not answer within {self.TIMEOUT:.0f}s of its restart")
            time.sleep(0.05)
        return time.monotonic() - since

    def _pid(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.PID_FILE.read_text().strip())
            if _alive(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == "dockerd":
                return pid
        found = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _read(p / "comm") == "dockerd"]
        if len(found) != 1:
            raise RuntimeError(f"cannot tell which dockerd runs the engine (found {found})")
        return found[0]


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie, waiting for its parent to reap it, has stopped)."""
    stat = _read(Path(f"/proc/{pid}/stat"))
    return bool(stat) and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _systemd_runs_docker() -> bool:
    result = subprocess.run(["systemctl", "is-active", "--quiet", "docker"], check=False, timeout=10)
    return result.returncode == 0
