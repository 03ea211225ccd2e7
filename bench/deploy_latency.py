#!/usr/bin/env python
"""Deploy latency and zero-downtime, measured (not asserted).

Prints, for a local image:
  1. the median and p95 time from the deploy API call to the first 200 through the router, next to
     the time from a raw `docker run` of the same image to its first 200 — and their ratio
     (our goal: under 1.5);
  2. failed requests during N back-to-back deploys under a steady client load.

It runs the platform in-process on a throwaway SQLite database with Celery tasks executed eagerly
(the worker's code path without the broker hop), the real Docker Engine and a HAProxy of its own on
a free port. Needs dockerd and haproxy, like the e2e tests:

    .venv/bin/python bench/deploy_latency.py [--runs 7] [--deploys 10]
"""

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def configure(workdir: Path, run_id: str) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "pandastack.settings.local",
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "CELERY_TASK_ALWAYS_EAGER": "true",
            "PANDASTACK_ROUTER_DIR": str(workdir / "router"),
            "PANDASTACK_ROUTER_HTTP_PORT": str(free_port()),
            "PANDASTACK_EXTRA_LABELS": f"io.pandastack.test-run={run_id}",
            "PANDASTACK_API_THROTTLE_RATE": "100000/min",
        }
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def first_200(url: str, headers: dict[str, str], deadline: float) -> float:
    import httpx

    with httpx.Client(headers=headers, timeout=1.0) as http:
        while time.monotonic() < deadline:
            try:
                if http.get(url).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
    raise RuntimeError(f"no 200 from {url} in time")


def raw_docker_run(image: str, run_id: str) -> float:
    import docker

    client = docker.from_env()
    started = time.monotonic()
    container = client.containers.run(
        image, detach=True, environment={"PORT": "8080"}, labels={"io.pandastack.test-run": run_id}
    )
    try:
        container.reload()
        ip = container.attrs["NetworkSettings"]["IPAddress"]
        while not ip:
            container.reload()
            ip = container.attrs["NetworkSettings"]["IPAddress"]
        return first_200(f"http://{ip}:8080/healthz", {}, started + 60) - started
    finally:
        container.remove(force=True)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="deploys (and raw runs) to time")
    parser.add_argument("--deploys", type=int, default=10, help="back-to-back deploys under load")
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:12]
    workdir = Path(tempfile.mkdtemp(prefix="pandastack-bench-"))
    configure(workdir, run_id)

    from django.conf import settings
    from rest_framework.test import APIClient

    from apps.accounts.models import User
    from apps.core.actors import Actor
    from apps.deployments import orchestrator
    from apps.teams.models import Project
    from apps.teams.services import team_create
    from apps.tokens.services import token_create
    from tests.support import remove_test_run
    from tests.support.images import build_web_image

    image = build_web_image()
    image_v2 = build_web_image("pandastack-test/web:v2", version="v2")
    owner = User.objects.create_user(username="bench@example.com", email="bench@example.com")
    team = team_create(actor=Actor.system("bench"), slug=f"bench{run_id[:6]}", name="Bench", owner=owner)
    Project.objects.create(team=team, slug="web", name="Web")
    _, raw = token_create(actor=Actor.system("bench"), team=team, user=owner, name="bench", scopes=["deploy", "infra"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    base = f"/api/v1/teams/{team.slug}/apps/"
    router_url = f"http://127.0.0.1:{settings.PANDASTACK_ROUTER_HTTP_PORT}/healthz"

    try:
        raw_times = [raw_docker_run(image, run_id) for _ in range(args.runs)]
        deploy_times = []
        for i in range(args.runs):
            name = f"lat{i}"
            body = {"name": name, "project": "web", "health_check_path": "/healthz"}
            assert api.post(base, body, format="json").status_code == 201
            host = {"Host": f"{name}.{team.slug}.{settings.PANDASTACK_APPS_DOMAIN}"}
            started = time.monotonic()
            response = api.post(f"{base}{name}/deployments/", {"image": image}, format="json")
            assert response.status_code == 202, response.content
            deploy_times.append(first_200(router_url, host, started + 120) - started)
            api.delete(f"{base}{name}/", {"confirm": name}, format="json")

        # Zero downtime: a client keeps requesting while the app is redeployed back to back.
        body = {"name": "load", "project": "web", "health_check_path": "/healthz", "replicas": 2}
        assert api.post(base, body, format="json").status_code == 201
        host = {"Host": f"load.{team.slug}.{settings.PANDASTACK_APPS_DOMAIN}"}
        api.post(f"{base}load/deployments/", {"image": image}, format="json")
        counts = {"ok": 0, "failed": 0}
        stop = threading.Event()

        def load() -> None:
            import httpx

            with httpx.Client(headers=host, timeout=5.0) as http:
                while not stop.is_set():
                    try:
                        ok = http.get(router_url).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    counts["ok" if ok else "failed"] += 1

        thread = threading.Thread(target=load)
        thread.start()
        try:
            for i in range(args.deploys):
                api.post(f"{base}load/deployments/", {"image": image_v2 if i % 2 == 0 else image}, format="json")
        finally:
            stop.set()
            thread.join()
    finally:
        orchestrator.router().stop()
        remove_test_run(orchestrator.engine().client, run_id)

    med_raw, med_deploy = statistics.median(raw_times), statistics.median(deploy_times)
    p95_raw = percentile(raw_times, 95)
    print(f"raw docker run -> first 200:   median {med_raw:.3f}s  p95 {p95_raw:.3f}s  (n={args.runs})")
    print(
        f"panda deploy (API) -> first 200 via router: median {med_deploy:.3f}s  "
        f"p95 {percentile(deploy_times, 95):.3f}s  (n={args.runs})"
    )
    print(f"ratio (median): {med_deploy / med_raw:.2f}  (goal < 1.5)")
    print(
        f"back-to-back deploys under load: {args.deploys} deploys, {counts['ok'] + counts['failed']} requests, "
        f"{counts['failed']} failed"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
