#!/usr/bin/env python
"""Alert latency and access-log ingestion cost, measured (not asserted).

Prints:
  1. the time from the start of an error spike (the first 500 sent through the router) to the
     arrival of the signed webhook at a local receiver — median and worst over several spikes —
     for the rule "error_rate > 5% over the window, for 0 s";
  2. the monitor process's CPU time per 10,000 requests of access log (its CPU during a burst of
     requests through the router, minus its CPU while idle for as long).

It runs the real Docker Engine, a HAProxy of its own on a free port, the monitor as a subprocess
(`manage.py run_monitor`, default intervals: flush 1 s, rules every 2 s) and, when REDIS_URL is
set, a Celery worker subprocess for the deliveries (else the monitor sends them inline). The
database is a throwaway SQLite file, or the empty PostgreSQL database BENCH_DATABASE_URL names:

    .venv/bin/python bench/alert_latency.py [--spikes 5] [--window 30] [--requests 10000]
"""

import argparse
import json
import logging
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


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


class Traffic:
    """Steady requests to a path in a background thread until stopped."""

    def __init__(self, url: str, host: str, path: str, per_second: float) -> None:
        self.url, self.host, self.path, self.interval = url, host, path, 1.0 / per_second
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.first_sent: float | None = None

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, headers={"Host": self.host}, timeout=5) as client:
            while not self.stop_event.is_set():
                if self.first_sent is None:
                    self.first_sent = time.monotonic()
                client.get(self.path)
                self.stop_event.wait(self.interval)

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spikes", type=int, default=5)
    parser.add_argument(
        "--window", type=int, default=30, help="the rule's window in seconds (a multiple of 10, at least 30)"
    )
    parser.add_argument("--requests", type=int, default=10000, help="requests for the ingestion-cost burst")
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:12]
    workdir = Path(tempfile.mkdtemp(prefix="pandastack-alert-bench-"))
    redis_url = os.environ.get("REDIS_URL", "")
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "pandastack.settings.local",
            "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'bench.sqlite3'}",
            "PANDASTACK_ROUTER_DIR": str(workdir / "router"),
            "PANDASTACK_ROUTER_HTTP_PORT": str(free_port()),
            "PANDASTACK_ROUTER_ACCESS_LOG_PORT": str(free_port(socket.SOCK_DGRAM)),
            "PANDASTACK_EXTRA_LABELS": f"io.pandastack.test-run={run_id}",
            "PANDASTACK_SECRET_KEYS": "3cK39bdHjGef-eVP4uODNhRieCuiO-M5fSoq18SGUrU=",
            "PANDASTACK_API_THROTTLE_RATE": "100000/min",
        }
    )
    if redis_url:
        os.environ["CELERY_BROKER_URL"] = redis_url.rsplit("/", 1)[0] + "/9"  # a db of its own
    # This process deploys inline (eager); the monitor sends inline too unless a worker runs.
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the figures
    logging.getLogger("celery").setLevel(logging.WARNING)

    import httpx

    from apps.accounts.models import User
    from apps.alerts.models import NotificationChannel
    from apps.alerts.rules import rule_create
    from apps.alerts.services import channel_create
    from apps.core.access import resolve_team
    from apps.core.actors import Actor
    from apps.deployments import orchestrator
    from apps.deployments.models import Deployment
    from apps.deployments.services import app_create, deployment_create
    from apps.teams.models import Project
    from apps.teams.services import team_create
    from tests.support import remove_test_run
    from tests.support.images import build_web_image
    from tests.support.receiver import Receiver

    image = build_web_image()
    owner = User.objects.create_user(username="alerts@example.com", email="alerts@example.com")
    team = team_create(actor=Actor.system("bench"), slug=f"al{run_id[:6]}", name="Alerts", owner=owner)
    project = Project.objects.create(team=team, slug="web", name="Web")
    ctx = resolve_team(Actor(user=owner), team.slug)
    app = app_create(ctx=ctx, project=project, name="web", port=8080, health_check_path="/healthz")
    receiver = Receiver()

    def arrivals() -> list[tuple[float, str]]:
        """(arrival time, trigger) of each webhook received so far."""
        return [(r["at"], json.loads(r["body"])["trigger"]) for r in list(receiver.requests)]

    channel, _secret = channel_create(ctx=ctx, name="ops", kind="webhook", target=receiver.url)
    rule_create(
        ctx=ctx, name="errors", scope="app", app=app, metric="error_rate", operator="gt", threshold=5,
        window_seconds=args.window, for_seconds=0, severity="critical",
        channels=list(NotificationChannel.objects.filter(pk=channel.pk)),
    )  # fmt: skip

    processes: list[subprocess.Popen] = []
    logs = workdir / "logs"
    logs.mkdir()

    def spawn(name: str, argv: list[str]) -> subprocess.Popen:
        env = {**os.environ}
        if redis_url:
            env.pop("CELERY_TASK_ALWAYS_EAGER")
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            argv, cwd=ROOT, env=env, stdout=(logs / f"{name}.log").open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        processes.append(process)
        return process

    try:
        deployment = deployment_create(ctx=ctx, app=app, image=image)  # runs inline (eager) here
        deployment.refresh_from_db()
        if deployment.status != "live":
            print("deploy failed:", Deployment.objects.get(pk=deployment.pk).reason)
            return 1
        if redis_url:
            worker = [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "pandastack",
                "worker",
                "-l",
                "warning",
                "--concurrency",
                "1",
            ]
            spawn("worker", [*worker, "--without-heartbeat", "--without-gossip", "--without-mingle"])
        monitor = spawn("monitor", [sys.executable, "manage.py", "run_monitor"])
        time.sleep(3)
        url = f"http://127.0.0.1:{os.environ['PANDASTACK_ROUTER_HTTP_PORT']}"
        host = orchestrator.app_host(app)
        assert httpx.get(url, headers={"Host": host}).status_code == 200

        latencies = []
        with Traffic(url, host, "/", 20):
            for spike in range(args.spikes):
                seen = len(arrivals())
                with Traffic(url, host, "/cgi-bin/fail", 5) as errors:
                    deadline = time.monotonic() + 60
                    while not any(t == "alert" for _, t in arrivals()[seen:]) and time.monotonic() < deadline:
                        time.sleep(0.02)
                alert_at = next((at for at, t in arrivals()[seen:] if t == "alert"), None)
                if alert_at is None or errors.first_sent is None:
                    print(f"spike {spike + 1}: no notification within 60 s")
                    return 1
                latencies.append(alert_at - errors.first_sent)
                print(f"spike {spike + 1}: notified after {latencies[-1]:.2f} s")
                deadline = time.monotonic() + args.window + 60
                while not any(t == "resolved" for _, t in arrivals()[seen:]) and time.monotonic() < deadline:
                    time.sleep(0.1)
        triggers = [t for _, t in arrivals()]
        print(
            f"\nspike -> webhook: median {statistics.median(latencies):.2f} s, worst {max(latencies):.2f} s "
            f"over {len(latencies)} spikes (goal: under 15 s); deliveries: {triggers.count('alert')} alert, "
            f"{triggers.count('resolved')} resolved (one each per spike expected); "
            f"deliveries via {'a Celery worker (Redis)' if redis_url else 'the monitor inline (eager, no broker)'}"
        )

        # Ingestion cost: the monitor's CPU for a burst of requests, minus its CPU idle for as long.
        time.sleep(3)
        idle_start = cpu_seconds(monitor.pid)
        started = time.monotonic()
        with httpx.Client(base_url=url, headers={"Host": host}, timeout=5) as client:
            for _ in range(args.requests):
                client.get("/")
        burst = time.monotonic() - started
        time.sleep(2.5)  # the last flush
        busy = cpu_seconds(monitor.pid) - idle_start
        idle_start = cpu_seconds(monitor.pid)
        time.sleep(burst + 2.5)
        idle = cpu_seconds(monitor.pid) - idle_start
        per_10k = (busy - idle) * 10000 / args.requests
        print(
            f"ingestion: {args.requests} requests in {burst:.1f} s; monitor CPU {busy:.2f} s busy vs {idle:.2f} s "
            f"idle for as long -> {per_10k:.3f} CPU s per 10,000 requests of access log"
        )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        receiver.close()
        orchestrator.router().stop()
        remove_test_run(orchestrator.engine().client, run_id)
        print(f"(logs in {logs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
