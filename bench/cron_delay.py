#!/usr/bin/env python
"""Cron scheduling delay, measured (not asserted): how long after its slot each run's container
starts, over a few minutes of real runs.

Runs the scheduler (`manage.py run_scheduler`, two of them at once to show slots still run once) as
subprocesses on a throwaway SQLite database (or the empty PostgreSQL database BENCH_DATABASE_URL
names), with several every-minute jobs running a tiny image on the real Docker Engine, then prints
the median and worst delay and any double runs:

    .venv/bin/python bench/cron_delay.py [--minutes 3] [--jobs 4]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--schedulers", type=int, default=2)
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:12]
    workdir = Path(tempfile.mkdtemp(prefix="pandastack-cron-bench-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "pandastack.settings.local",
            # PostgreSQL (what production runs) when DATABASE_URL names one; else a throwaway SQLite.
            "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{workdir / 'bench.sqlite3'}",
            "PANDASTACK_EXTRA_LABELS": f"io.pandastack.test-run={run_id}",
            "PANDASTACK_SECRET_KEYS": "3cK39bdHjGef-eVP4uODNhRieCuiO-M5fSoq18SGUrU=",
        }
    )
    os.environ.pop("REDIS_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from apps.accounts.models import User
    from apps.core.access import resolve_team
    from apps.core.actors import Actor
    from apps.cron.models import CronRun
    from apps.cron.services import cron_job_create
    from apps.deployments import orchestrator
    from apps.teams.models import Plan, Project
    from apps.teams.services import team_create
    from tests.support import remove_test_run
    from tests.support.images import build_web_image

    image = build_web_image()
    owner = User.objects.create_user(username="cron@example.com", email="cron@example.com")
    team = team_create(actor=Actor.system("bench"), slug=f"cron{run_id[:6]}", name="Cron", owner=owner)
    team.plan = Plan.objects.create(slug=f"bench{run_id[:6]}", name="Bench", max_cron_jobs=args.jobs)
    team.save()
    project = Project.objects.create(team=team, slug="jobs", name="Jobs")
    ctx = resolve_team(Actor(user=owner), team.slug)
    for i in range(args.jobs):
        cron_job_create(
            ctx=ctx,
            project=project,
            name=f"tick{i}",
            image=image,
            command=["sh", "-c", "echo tick"],
            schedule="* * * * *",
        )

    env = {**os.environ}
    schedulers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "run_scheduler"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"scheduler{i}.log").open("wb"),
        )
        for i in range(args.schedulers)
    ]
    try:
        deadline = time.monotonic() + args.minutes * 60 + 5
        while time.monotonic() < deadline:
            time.sleep(1)
    finally:
        for process in schedulers:
            process.terminate()
        for process in schedulers:
            process.wait(30)
        remove_test_run(orchestrator.engine().client, run_id)

    runs = list(CronRun.objects.filter(trigger="schedule").exclude(started_at=None))
    delays = [(r.started_at - r.scheduled_for).total_seconds() for r in runs]
    slots = [(r.job_id, r.scheduled_for) for r in CronRun.objects.filter(trigger="schedule")]
    doubles = len(slots) - len(set(slots))
    statuses = {s: CronRun.objects.filter(status=s).count() for s in ("succeeded", "failed", "missed", "running")}
    if not delays:
        print("no runs started: is the Docker Engine running?")
        return 1
    print(
        f"cron runs: {len(delays)} over {args.minutes} min, {args.jobs} every-minute jobs, {args.schedulers} schedulers"
    )
    print(
        f"delay from slot to container start: median {statistics.median(delays):.3f}s  "
        f"worst {max(delays):.3f}s  best {min(delays):.3f}s"
    )
    print(f"double runs: {doubles}; statuses: {statuses}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
