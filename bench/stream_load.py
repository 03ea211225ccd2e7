#!/usr/bin/env python
"""API latency with 100 open log streams, measured (not asserted).

Starts the platform's ASGI server the way scripts/run does (uvicorn, one process, the local settings
on a throwaway SQLite database), runs one real container that prints a line every half second, and
prints the API's p50/p95 latency (GET /api/v1/teams/bench/apps/, one request at a time):

  1. idle;
  2. while 100 clients follow that container's logs (`logs?follow=1`; 20 tokens x 5 streams, the
     default per-token cap), each stream live throughout (lines delivered are counted);

and the ratio of the two p95s (our goal: within 2x). Everything talks to 127.0.0.1 only, and the
run is bounded in time (--timeout). Needs dockerd and Debian's busybox-static, like the e2e tests:

    .venv/bin/python bench/stream_load.py [--followers 100] [--requests 300] [--timeout 300]
"""

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEAM = "bench"
STREAMS_PER_TOKEN = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure(workdir: Path) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "pandastack.settings.local",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "PANDASTACK_API_THROTTLE_RATE": "1000000/min",
        "DJANGO_DEBUG": "false",
        "DJANGO_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    os.environ.pop("REDIS_URL", None)  # scripts/run's default: the in-process cache
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return {**os.environ, **env}


def seed(container_name: str, image: str, tokens: int) -> list[str]:
    """A team with an app whose one container is `container_name`, and `tokens` owner tokens."""
    from apps.accounts.models import User
    from apps.core.actors import Actor
    from apps.deployments.models import App, Container, Deployment
    from apps.teams.models import Project
    from apps.teams.services import team_create
    from apps.tokens.services import token_create

    owner = User.objects.create_user(username="owner@bench.example.com", email="owner@bench.example.com")
    team = team_create(actor=Actor.system("bench"), slug=TEAM, name="Bench", owner=owner)
    project = Project.objects.create(team=team, slug="web", name="Web")
    app = App.objects.create(team=team, project=project, name="ticker", port=8080)
    deployment = Deployment.objects.create(team=team, app=app, number=1, image=image, status="live")
    Container.objects.create(team=team, app=app, deployment=deployment, replica=1, name=container_name)
    raws = []
    for i in range(tokens):
        _, raw = token_create(
            actor=Actor.system("bench"), team=team, user=owner, name=f"bench-{i}", scopes=["read", "logs"]
        )
        raws.append(raw)
    return raws


def start_server(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    argv = [
        sys.executable, "-m", "uvicorn", "pandastack.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--lifespan", "off", "--no-proxy-headers",
        "--timeout-graceful-shutdown", "5", "--no-access-log",
    ]  # fmt: skip
    log = log_path.open("wb")
    process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + 30
    while b"Uvicorn running on" not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    return process


def measure(base: str, token: str, count: int, deadline: float) -> list[float]:
    import httpx

    timings = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
        http.get(f"/api/v1/teams/{TEAM}/apps/").raise_for_status()  # warm up
        for _ in range(count):
            if time.monotonic() > deadline:
                raise RuntimeError("out of time while measuring")
            started = time.perf_counter()
            response = http.get(f"/api/v1/teams/{TEAM}/apps/")
            timings.append(time.perf_counter() - started)
            response.raise_for_status()
    return timings


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


class Followers:
    """`count` concurrent `logs?follow=1` clients on an event loop of their own."""

    def __init__(self, base: str, tokens: list[str], count: int) -> None:
        self.base, self.tokens, self.count = base, tokens, count
        self.statuses: list[int] = []
        self.lines = [0] * count
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _follow(self, http: "object", index: int) -> None:
        token = self.tokens[index // STREAMS_PER_TOKEN]
        url = f"/api/v1/teams/{TEAM}/apps/ticker/logs/?follow=1&tail=1"
        async with http.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
            self.statuses.append(response.status_code)
            async for line in response.aiter_lines():
                if line.strip():
                    self.lines[index] += 1

    async def _main(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=self.count + 10)
        timeout = httpx.Timeout(30.0, read=None)
        async with httpx.AsyncClient(base_url=self.base, limits=limits, timeout=timeout) as http:
            tasks = [asyncio.create_task(self._follow(http, i)) for i in range(self.count)]
            while not self.stop.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--followers", type=int, default=100)
    parser.add_argument("--requests", type=int, default=300, help="API requests per measurement")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout

    import docker

    from tests.support.images import build_web_image

    run_id = uuid.uuid4().hex[:12]
    client = docker.from_env()
    image = build_web_image()
    container = client.containers.run(
        image,
        ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done"],
        detach=True,
        name=f"pst-bench-{run_id}",
        labels={"io.pandastack.test-run": run_id},
    )
    server = None
    followers = None
    try:
        with tempfile.TemporaryDirectory(prefix="pandastack-bench-") as tmp:
            workdir = Path(tmp)
            env = configure(workdir)
            tokens = seed(container.name, image, tokens=-(-args.followers // STREAMS_PER_TOKEN))
            port = free_port()
            server = start_server(env, port, workdir / "uvicorn.log")
            base = f"http://127.0.0.1:{port}"

            idle = measure(base, tokens[0], args.requests, deadline)

            followers = Followers(base, tokens, args.followers)
            followers.thread.start()
            while len(followers.statuses) < args.followers or not all(followers.lines):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {len(followers.statuses)} streams answered, {sum(map(bool, followers.lines))} live"
                    )
                time.sleep(0.2)
            refused = [s for s in followers.statuses if s != 200]
            if refused:
                print(f"refused streams: {sorted(set(refused))}; server log:", file=sys.stderr)
                print((workdir / "uvicorn.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            before = list(followers.lines)
            started = time.monotonic()
            loaded = measure(base, tokens[0], args.requests, deadline)
            window = time.monotonic() - started
            delivered = [after - prior for after, prior in zip(followers.lines, before, strict=True)]

            print(f"API GET /api/v1/teams/{TEAM}/apps/, {args.requests} requests one at a time, uvicorn 1 process")
            print(
                f"  idle:                       p50 {statistics.median(idle) * 1000:7.1f} ms"
                f"   p95 {p95(idle) * 1000:7.1f} ms"
            )
            print(
                f"  with {args.followers} open follows:    p50 {statistics.median(loaded) * 1000:7.1f} ms"
                f"   p95 {p95(loaded) * 1000:7.1f} ms"
            )
            print(f"  p95 ratio (loaded / idle):  {p95(loaded) / p95(idle):.2f}  (goal: within 2x)")
            print(
                f"  streams: {args.followers - len(refused)} open (refused: {len(refused)}); during the loaded"
                f" measurement ({window:.1f} s) {sum(delivered)} lines delivered, every stream at least"
                f" {min(delivered)}"
            )
    finally:
        if followers is not None:
            followers.stop.set()
            followers.thread.join(10)
        if server is not None:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        container.remove(force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
