#!/usr/bin/env python
"""The control plane at 1,000 teams and 10,000 apps, measured (not asserted).

Creates, in a PostgreSQL database of its own, 1,000 teams holding 10,000 apps in all (the largest
team a tenth of them, the others about ten each) — each app with three deployments (#3 live), a
container row, variables and secrets, a cron job with two finished runs, an alert rule and metric
buckets; each team a project, team variables, a notification channel and a Redis database — with
bulk_create (a minute or two at full size), then prints, each against its goal:

  1. the API's p50/p95 for the main list and detail endpoints, through Django's test Client with a
     real Bearer token (in-process: the whole Django/DRF stack and PostgreSQL, no HTTP server);
  2. the HAProxy configuration with one backend per app: read from the database and rendered by the
     router's own code, checked by `haproxy -c`, and a real HAProxy started with it and reloaded;
  3. one reconciler pass (apps.deployments.orchestrator.reconcile) over every app, with a few
     crashed containers to replace and orphans to remove, then a steady pass;
  4. one alert-evaluation pass (apps.alerts.evaluation.evaluate_rules) over every rule;
  5. cron scheduler ticks (apps.cron.scheduler.tick) over one cron job per app: none due, ~1% due,
     and the tick that reaps those runs once their containers exited;
  6. the metrics rollup pass (apps.monitoring.services.rollup) and the database usage refresh
     (apps.databases.tasks.refresh_usage) against a redis-server the bench starts for itself.

STUBBED, because 10,000 real containers cannot run here (everything else is the real code):
  - the Docker Engine: InMemoryEngine, in memory, answers the Engine interface as DockerEngine does
    (ContainerInfo, label filters, running/exited states). Its "containers" all answer health
    checks at 127.0.0.1:<port> (a small HTTP server of the bench), so convergence probes something
    real. Cron runs' containers are "started" on it too.
    (tests/support/fakes.py, shared with the query-count tests.) The one engine listing a pass
    makes is timed separately on the real engine over --engine-sample containers.
  - HAProxy's process and runtime API in items 3-5: InMemoryRuntimeRouter is the real
    HAProxyRouter (validation, config and map render, model files, `haproxy -c`) whose commands
    to the running HAProxy (`show servers state`, `add server`, a reload...) are answered from
    memory the way HAProxy answers them; it counts them. Item 2 runs a real HAProxy.

Database: `ps_bench` on the local PostgreSQL by default, or --database-url. The bench creates the
database itself and marks it (a COMMENT ON DATABASE); it refuses to touch a database without that
mark, drops its own at the end unless --keep, and with --keep reuses one of the same size (the
time-dependent rows — metric buckets, cron slots, alert states — are made again on every run).
REDIS_URL, when set, is the platform's cache (the per-app locks), as in production; without it an
in-process cache.

    .venv/bin/python bench/control_plane.py [--teams 1000] [--apps 10000] [--keep]
    .venv/bin/python bench/control_plane.py --teams 10 --apps 100        # a quick run
"""

from __future__ import annotations

import argparse
import http.server
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from tests.support.fakes import InMemoryEngine

DEFAULT_DATABASE_URL = "postgres://pandastack:pandastack@127.0.0.1:5432/ps_bench"
MARKER = "pandastack bench/control_plane.py database: made by the benchmark, dropped by it"
BENCH_KEY = "3cK39bdHjGef-eVP4uODNhRieCuiO-M5fSoq18SGUrU="  # the tests' fixed Fernet key; bench data only
API_GOAL_MS = 50.0
RECONCILE_GOAL_S = 5.0
ALERTS_GOAL_S = 2.0
TICK_GOAL_S = 0.2
RENDER_GOAL_S = 1.0
# No goal in the issue for these two: a tenth of how often they run (the monitor rolls up every
# 60 s, beat refreshes database usage every 300 s) is chosen here.
ROLLUP_GOAL_S = 6.0
USAGE_GOAL_S = 30.0
REDIS_KEYS_PER_TENANT = 50
REDIS_KEYS_BIG_TENANT = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the bench's own database ---------------------------------------------------------------------
def _admin_connection(url: str) -> Any:
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    )


def _database_name(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise SystemExit(f"refusing: {parts.scheme}:// is not PostgreSQL; the bench measures PostgreSQL only")
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise SystemExit(f"refusing: {name!r} is not a plain database name")
    return name


def _marker_of(admin: Any, name: str) -> tuple[bool, str | None]:
    row = admin.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [name]
    ).fetchone()
    return (row is not None, row[0] if row else None)


def own_database(url: str, *, keep: bool) -> bool:
    """Make `url` the bench's own, freshly made database; with `keep`, reuse the bench's database
    if there is one. Returns whether an existing one is reused. Refuses (exits) on a database the
    bench did not make."""
    from psycopg import sql

    name = _database_name(url)
    with _admin_connection(url) as admin:
        exists, marker = _marker_of(admin, name)
        if exists and marker != MARKER:
            raise SystemExit(
                f"refusing: database {name} exists and was not made by this benchmark (it lacks the bench's "
                f"COMMENT ON DATABASE); it is left untouched. Name another with --database-url."
            )
        if exists and keep:
            return True
        if exists:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(MARKER)))
    return False


def drop_own_database(url: str) -> None:
    from django.db import connections
    from psycopg import sql

    connections.close_all()
    name = _database_name(url)
    with _admin_connection(url) as admin:
        exists, marker = _marker_of(admin, name)
        if exists and marker == MARKER:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# --- figures ----------------------------------------------------------------------------------------
@dataclass
class Figure:
    name: str
    measured: str
    goal: str
    verdict: str  # PASS, MISS or info


FIGURES: list[Figure] = []


def judge(name: str, value: float, goal: float, unit: str, note: str = "") -> None:
    shown = f"{value * 1000:.1f} ms" if unit == "ms" else f"{value:.2f} s"
    goal_shown = f"<= {goal * 1000:.0f} ms" if unit == "ms" else f"<= {goal:g} s"
    FIGURES.append(Figure(name, shown + (f" {note}" if note else ""), goal_shown, "PASS" if value <= goal else "MISS"))


def inform(name: str, measured: str) -> None:
    FIGURES.append(Figure(name, measured, "-", "info"))


@contextmanager
def counted_queries() -> Iterator[list[int]]:
    """Count the SQL statements this thread's connection runs (box[0])."""
    from django.db import connection

    box = [0]

    def count(execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        box[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        yield box


def timed(step: Callable[[], Any]) -> tuple[float, Any, int]:
    with counted_queries() as queries:
        started = time.perf_counter()
        result = step()
        elapsed = time.perf_counter() - started
    return elapsed, result, queries[0]


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


# --- stand-ins for what cannot run 10,000 times here ----------------------------------------------------
class HealthServer:
    """Answers 200 to every request on 127.0.0.1:<port>, where every InMemoryEngine container "listens"."""

    def __init__(self, port: int = 0) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- seeding ------------------------------------------------------------------------------------------
def apps_per_team(teams: int, apps: int) -> list[int]:
    """The largest team holds a tenth of the apps; the others share the rest evenly."""
    if teams == 1:
        return [apps]
    big = max(apps // 10, (apps + teams - 1) // teams)
    rest, others = apps - big, teams - 1
    return [big] + [rest // others + (1 if i < rest % others else 0) for i in range(others)]


def seed(n_teams: int, n_apps: int, port: int) -> None:
    """Every row at once, with bulk_create; values read later (ids) come back from PostgreSQL."""
    from django.db.models import OuterRef, Subquery
    from django.utils import timezone

    from apps.accounts.models import User
    from apps.alerts.models import AlertRule, ChannelKind, NotificationChannel, Operator, RuleMetric, RuleScope
    from apps.cron.models import CronJob, CronRun, RunStatus, Trigger
    from apps.databases.models import Database, DatabaseAttachment, DatabaseServer, DatabaseStatus
    from apps.deployments.models import App, Container, Deployment, DeploymentStatus
    from apps.monitoring.models import AppHealth, HealthStatus
    from apps.secrets import crypto
    from apps.secrets.models import Level, Variable, VariableVersion
    from apps.teams.models import Membership, Plan, Project, Team

    batch = 5000
    now = timezone.now()
    plan = Plan.objects.create(
        slug="bench", name="Bench", max_projects=100, max_apps=n_apps, max_replicas_per_app=10,
        max_databases=100, max_cron_jobs=n_apps, max_concurrent_cron_runs=1000, cron_history_runs=10,
        max_database_size_mb=1024,
    )  # fmt: skip
    owners = User.objects.bulk_create(
        (User(username=f"owner{i}@bench.example.com", email=f"owner{i}@bench.example.com", password="!")  # noqa: S106 - unusable
         for i in range(n_teams)), batch_size=batch,
    )  # fmt: skip
    teams = Team.objects.bulk_create(
        (Team(slug=f"t{i:04d}", name=f"Team {i}", plan=plan) for i in range(n_teams)), batch_size=batch
    )
    Membership.objects.bulk_create(
        (Membership(team=t, user=u, role="owner") for t, u in zip(teams, owners, strict=True)), batch_size=batch
    )
    projects = Project.objects.bulk_create((Project(team=t, slug="web", name="Web") for t in teams), batch_size=batch)
    apps: list[App] = []
    for team, project, count in zip(teams, projects, apps_per_team(n_teams, n_apps), strict=True):
        apps += [
            App(team=team, project=project, name=f"app{j:04d}", port=port, health_check_path="/healthz", replicas=1)
            for j in range(count)
        ]
    apps = App.objects.bulk_create(apps, batch_size=batch)
    print(f"  {len(teams)} teams, {len(apps)} apps", flush=True)

    # Variables: two per team, two per app (one secret each), version 1 current.
    variables = Variable.objects.bulk_create(
        [
            *(Variable(team=t, level=Level.TEAM, name=n, secret=s) for t in teams
              for n, s in (("LOG_LEVEL", False), ("SENTRY_DSN", True))),
            *(Variable(team=a.team, level=Level.APP, project=a.project, app=a, name=n, secret=s) for a in apps
              for n, s in (("POOL_SIZE", False), ("API_KEY", True))),
        ],
        batch_size=batch,
    )  # fmt: skip
    owner_of = {t.pk: u for t, u in zip(teams, owners, strict=True)}
    versions = VariableVersion.objects.bulk_create(
        (VariableVersion(variable=v, number=1, secret=v.secret, value_encrypted=crypto.encrypt(f"value-{v.name}"),
                         created_by=owner_of[v.team_id], created_by_label="owner") for v in variables),
        batch_size=batch,
    )  # fmt: skip
    Variable.objects.update(
        current=Subquery(VariableVersion.objects.filter(variable=OuterRef("pk"), number=1).values("pk")[:1])
    )
    version_of: dict[tuple[int, int | None, str], int] = {
        (v.team_id, v.app_id, v.name): version.pk for v, version in zip(variables, versions, strict=True)
    }
    print(f"  {len(variables)} variables and secrets", flush=True)

    # Deployments: #1 superseded, #2 failed, #3 live; a container of #3 in the router.
    def config(app: App) -> dict[str, Any]:
        names = {n: version_of[(app.team_id, None, n)] for n in ("LOG_LEVEL", "SENTRY_DSN")} | {
            n: version_of[(app.team_id, app.pk, n)] for n in ("POOL_SIZE", "API_KEY")
        }
        return {"port": port, "health_check_path": "/healthz", "memory_mb": 256, "cpus": "0.5", "command": None,
                "variables": names}  # fmt: skip

    statuses = {1: DeploymentStatus.SUPERSEDED, 2: DeploymentStatus.FAILED, 3: DeploymentStatus.LIVE}
    deployments = Deployment.objects.bulk_create(
        (Deployment(team_id=a.team_id, app=a, number=n, image=f"registry.local/{a.name}:{n}", status=s,
                    config=config(a), created_by_label="owner", started_at=now, finished_at=now,
                    reason="Health check did not pass within 60s" if s == DeploymentStatus.FAILED else "")
         for a in apps for n, s in statuses.items()),
        batch_size=batch,
    )  # fmt: skip
    App.objects.update(
        live_deployment=Subquery(Deployment.objects.filter(app=OuterRef("pk"), number=3).values("pk")[:1])
    )
    slugs = {t.pk: t.slug for t in teams}
    Container.objects.bulk_create(
        (Container(team_id=d.team_id, app_id=d.app_id, deployment=d, replica=1, ip="127.0.0.1", in_router=True,
                   name=f"ps-{slugs[d.team_id]}-{d.app.name}-{d.app_id}-{d.number}-r1", docker_id=uuid.uuid4().hex)
         for d in deployments if d.number == 3),
        batch_size=batch,
    )  # fmt: skip
    print(f"  {len(deployments)} deployments, {len(apps)} containers", flush=True)

    # Cron jobs, one per app (every other one runs its app's image), with two finished runs each.
    jobs = CronJob.objects.bulk_create(
        (CronJob(team_id=a.team_id, project_id=a.project_id, name=f"job{i:05d}", app=a if i % 2 else None,
                 image="" if i % 2 else "registry.local/job:1", command=["true"], schedule="0 3 * * *",
                 next_run_at=now + timedelta(hours=1))
         for i, a in enumerate(apps)),
        batch_size=batch,
    )  # fmt: skip
    CronRun.objects.bulk_create(
        (CronRun(team_id=j.team_id, job=j, trigger=Trigger.SCHEDULE, scheduled_for=now - timedelta(days=d),
                 status=RunStatus.SUCCEEDED, exit_code=0, started_at=now - timedelta(days=d),
                 finished_at=now - timedelta(days=d), container_name=f"ps-cron-{j.pk}-{d}")
         for j in jobs for d in (1, 2)),
        batch_size=batch,
    )  # fmt: skip
    print(f"  {len(jobs)} cron jobs, {2 * len(jobs)} cron runs", flush=True)

    # A webhook channel per team; an alert rule per app, of every kind the evaluator reads, none holding.
    channels = NotificationChannel.objects.bulk_create(
        (NotificationChannel(team=t, name="ops", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/hook")
         for t in teams), batch_size=batch,
    )  # fmt: skip
    channel_of = {c.team_id: c for c in channels}
    kinds = [
        (RuleMetric.ERROR_RATE, Operator.GT, 5.0),
        (RuleMetric.LATENCY_P95, Operator.GT, 2000.0),
        (RuleMetric.MEMORY, Operator.GT, 4096.0),
        (RuleMetric.UP, Operator.LT, 1.0),
        (RuleMetric.EVENT, Operator.GT, 3.0),  # cron.run_failed events of the app's cron job
    ]
    rules = []
    for i, (app, job) in enumerate(zip(apps, jobs, strict=True)):
        metric, op, threshold = kinds[i % len(kinds)]
        event = metric == RuleMetric.EVENT
        rules.append(
            AlertRule(team_id=app.team_id, project_id=app.project_id, name=f"rule{i:05d}",
                      scope=RuleScope.CRON_JOB if event else RuleScope.APP, app=None if event else app,
                      cron_job=job if event else None, metric=metric, event_kind="cron.run_failed" if event else "",
                      operator=op, threshold=threshold, window_seconds=300)
        )  # fmt: skip
    rules = AlertRule.objects.bulk_create(rules, batch_size=batch)
    AlertRule.channels.through.objects.bulk_create(
        (AlertRule.channels.through(alertrule=r, notificationchannel=channel_of[r.team_id]) for r in rules),
        batch_size=batch,
    )
    AppHealth.objects.bulk_create(
        (AppHealth(app=a, status=HealthStatus.UP, last_checked_at=now, changed_at=now) for a in apps), batch_size=batch
    )
    print(f"  {len(channels)} channels, {len(rules)} alert rules", flush=True)

    # A Redis database per team on the bench's Redis server (its address is set on every run).
    server = DatabaseServer.objects.create(
        name="bench-redis", engine="redis", admin_url_encrypted=crypto.encrypt("redis://127.0.0.1:1/0"), version="7"
    )
    databases = Database.objects.bulk_create(
        (Database(team=t, project=p, name="cache", engine="redis", server=server, status=DatabaseStatus.AVAILABLE,
                  db_name=f"ps_{t.slug}_cache", username=f"ps_{t.slug}_cache",
                  password_encrypted=crypto.encrypt("bench-password"), host="127.0.0.1", port=1)
         for t, p in zip(teams, projects, strict=True)),
        batch_size=batch,
    )  # fmt: skip
    first_app: dict[int, App] = {}
    for app in apps:
        first_app.setdefault(app.team_id, app)
    DatabaseAttachment.objects.bulk_create(
        (DatabaseAttachment(team_id=d.team_id, database=d, app=first_app[d.team_id], env_name="REDIS_URL")
         for d in databases), batch_size=batch,
    )  # fmt: skip
    print(f"  {len(databases)} databases", flush=True)


def refresh_time_dependent(port: int, redis_port: int | None) -> int:
    """The rows that depend on the clock or on this run's ports, made again on every run: metric
    buckets (the last whole 5-minute period raw, the last hour in 5-minute buckets, the hour before
    rolled up, so one rollup pass has a period of each tier to write), cron slots an hour ahead,
    alert rules back to ok. Returns how many metric buckets were written."""
    from django.db import connection
    from django.utils import timezone

    from apps.alerts.models import AlertRule, AlertState
    from apps.cron.models import CronJob, CronRun, RunStatus
    from apps.databases.models import Database, DatabaseServer
    from apps.deployments.models import App
    from apps.monitoring.models import MetricBucket, Resolution
    from apps.monitoring.selectors import bucket_start
    from apps.secrets import crypto

    now = timezone.now()
    App.objects.update(port=port)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE deployments_deployment SET config = jsonb_set(config, '{port}', to_jsonb(%s::int))", [port]
        )
    CronJob.objects.update(next_run_at=now + timedelta(hours=1), suspended=False)
    CronRun.objects.exclude(status__in=[RunStatus.SUCCEEDED]).delete()
    AlertRule.objects.update(state=AlertState.OK, state_since=None, pending_since=None, last_value=None,
                             last_evaluated_at=None)  # fmt: skip
    if redis_port:
        DatabaseServer.objects.filter(name="bench-redis").update(
            admin_url_encrypted=crypto.encrypt(f"redis://127.0.0.1:{redis_port}/0")
        )
        Database.objects.filter(engine="redis").update(port=redis_port)

    MetricBucket.objects.all().delete()
    app_ids = list(App.objects.values_list("pk", "team_id"))
    period = bucket_start(now, Resolution.FIVE_MINUTES) - timedelta(minutes=5)
    hour = bucket_start(now, Resolution.HOUR) - timedelta(hours=1)
    slots = (
        [(Resolution.RAW, period + timedelta(seconds=10 * k)) for k in range(30)]
        + [(Resolution.FIVE_MINUTES, hour + timedelta(minutes=5 * k)) for k in range(12)]
        + [(Resolution.HOUR, hour - timedelta(hours=1))]
    )

    def rows() -> Iterator[MetricBucket]:
        for app_id, team_id in app_ids:
            for resolution, start in slots:
                scale = resolution // 10
                yield MetricBucket(
                    app_id=app_id, team_id=team_id, resolution=resolution, start=start, requests=20 * scale,
                    latency_ms_sum=600 * scale, latency_le_25ms=12 * scale, latency_le_50ms=8 * scale,
                    cpu_percent_sum=3.0 * scale, cpu_samples=scale, memory_bytes_sum=50e6 * scale,
                    memory_bytes_max=60_000_000, resource_samples=scale, health_checks=scale,
                )  # fmt: skip

    MetricBucket.objects.bulk_create(rows(), batch_size=10_000)
    return len(app_ids) * len(slots)


# --- 1. the API -------------------------------------------------------------------------------------
def measure_api(requests: int) -> None:
    from django.db.models import Count
    from django.test import Client

    from apps.core.actors import Actor
    from apps.deployments.models import App
    from apps.teams.models import Membership, Team
    from apps.tokens.services import token_create

    section(f"API: p50/p95 over {requests} requests per endpoint (Django test Client, in-process, Bearer token)")
    sizes = dict(App.objects.values_list("team").annotate(n=Count("pk")))
    teams = sorted(Team.objects.all(), key=lambda t: (-sizes.get(t.pk, 0), t.slug))
    for team in teams:
        team.n = sizes.get(team.pk, 0)
    big, typical = teams[0], teams[1 : 1 + 20] or teams[:1]

    def client_for(team: Team) -> Client:
        owner = Membership.objects.get(team=team, role="owner").user
        _, raw = token_create(actor=Actor.system("bench"), team=team, user=owner, name="bench", scopes=["read"])
        return Client(HTTP_AUTHORIZATION=f"Bearer {raw}")

    clients = {t.slug: client_for(t) for t in [big, *typical]}
    endpoints = [
        ("apps list", "/api/v1/teams/{t}/apps/", typical),
        ("app detail", "/api/v1/teams/{t}/apps/app0001/", typical),
        ("deployments list", "/api/v1/teams/{t}/apps/app0001/deployments/", typical),
        ("deployment detail", "/api/v1/teams/{t}/apps/app0001/deployments/3/", typical),
        ("app variables list", "/api/v1/teams/{t}/apps/app0001/variables/", typical),
        ("cron jobs list", "/api/v1/teams/{t}/cron-jobs/", typical),
        ("alert rules list", "/api/v1/teams/{t}/alert-rules/", typical),
        ("databases list", "/api/v1/teams/{t}/databases/", typical),
        ("database detail", "/api/v1/teams/{t}/databases/cache/", typical),
        (f"apps list, largest team ({big.n} apps)", "/api/v1/teams/{t}/apps/", [big]),
        (f"cron jobs list, largest team ({big.n})", "/api/v1/teams/{t}/cron-jobs/", [big]),
        (f"alert rules list, largest team ({big.n})", "/api/v1/teams/{t}/alert-rules/", [big]),
    ]
    for name, template, targets in endpoints:
        samples, queries = [], 0
        for i in range(requests + 3):
            team = targets[i % len(targets)]
            url = template.format(t=team.slug)
            with counted_queries() as box:
                started = time.perf_counter()
                response = clients[team.slug].get(url)
                elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}: {response.content[:300]!r}")
            if i >= 3:  # the first few warm caches (and record the tokens' first use)
                samples.append(elapsed)
                queries = max(queries, box[0])
        p50 = statistics.median(samples)
        p95 = statistics.quantiles(samples, n=20)[18] if len(samples) >= 2 else samples[0]
        print(f"  {name:44s} p50 {p50 * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms  ({queries} queries)", flush=True)
        judge(f"API p95: {name}", p95, API_GOAL_MS / 1000, "ms", f"(p50 {p50 * 1000:.1f} ms, {queries} q)")


# --- 2. the router configuration -------------------------------------------------------------------
def measure_router_config(workdir: Path) -> float | None:
    """Returns the measured time of one runtime API command against the real HAProxy (or None)."""
    from apps.deployments import orchestrator
    from apps.runtime.router import Backend, HAProxyRouter, RouterError, _check_backends

    section("HAProxy configuration with one backend per app (the router's own code)")
    elapsed, backends, queries = timed(orchestrator.router_backends)
    print(f"  router_backends(): {len(backends)} backends from the database in {elapsed:.3f} s ({queries} queries)")
    real = HAProxyRouter(state_dir=workdir / "haproxy-real", http_port=free_port(), bind_address="127.0.0.1")
    started = time.perf_counter()
    canonical = _check_backends(backends)
    config = real._render_config(canonical, map_path=real.map_path)
    hosts_map = real._render_map(canonical)
    render = time.perf_counter() - started
    print(
        f"  validate + render: {render:.3f} s ({len(config) / 1e6:.1f} MB of config, {len(hosts_map) / 1e6:.1f} MB map)"
    )
    judge("HAProxy config: read + render", elapsed + render, RENDER_GOAL_S, "s")

    started = time.perf_counter()
    real._validate(canonical)
    check = time.perf_counter() - started
    print(f"  haproxy -c: {check:.2f} s")
    inform("HAProxy config: haproxy -c", f"{check:.2f} s")
    per_command = None
    try:
        started = time.perf_counter()
        real.apply_config(backends)  # validates again, writes, starts, waits for the worker
        start = time.perf_counter() - started
        rss = sum(_rss_kb(pid) for pid in real._own_processes()) / 1024
        started = time.perf_counter()
        real.apply_config([*backends, Backend(name="bench_extra", hosts=("extra.bench.localhost",))])
        reload = time.perf_counter() - started
        names = [b.name for b in backends[: min(200, len(backends))]]
        started = time.perf_counter()
        for name in names:
            real.servers(name)
        per_command = (time.perf_counter() - started) / len(names) / 2  # servers() = 2 runtime commands
        print(
            f"  real HAProxy: start {start:.2f} s, reload {reload:.2f} s (each incl. haproxy -c), "
            f"{rss:.0f} MB RSS; runtime API: {per_command * 1000:.2f} ms per command"
        )
        inform("HAProxy: start with this config (real)", f"{start:.2f} s, {rss:.0f} MB RSS")
        inform("HAProxy: seamless reload (real)", f"{reload:.2f} s")
        inform("HAProxy: one runtime API command (real)", f"{per_command * 1000:.2f} ms")
    except RouterError as exc:
        print(f"  real HAProxy could not run this config: {exc}")
        inform("HAProxy: start/reload (real)", "failed, see above")
    finally:
        real.stop()
    return per_command


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


# --- 3. the reconciler ---------------------------------------------------------------------------------
def fill_engine(fake: InMemoryEngine) -> None:
    from django.conf import settings

    from apps.deployments import orchestrator
    from apps.deployments.models import Container
    from apps.runtime.engine import LABEL_PREFIX

    fake.containers.clear()
    for c in Container.objects.select_related("app__team", "deployment").iterator(chunk_size=5000):
        fake.add(c.name, orchestrator.labels_for(c.app, c.deployment, c.replica))
    for i in range(3):  # platform containers of no app (left by a crash): orphans
        fake.add(f"ps-orphan-{i}", {f"{LABEL_PREFIX}managed": "true", **settings.PANDASTACK_EXTRA_LABELS})


def measure_reconciler(fake: InMemoryEngine, router: Any, per_command: float | None) -> None:
    from apps.deployments import orchestrator
    from apps.deployments.models import App, Container

    section("Reconciler: one pass over every app (engine and HAProxy runtime API STUBBED in memory)")
    fill_engine(fake)
    apps = App.objects.exclude(live_deployment=None).count()
    crashed = max(1, apps // 1000)
    for c in Container.objects.order_by("?")[:crashed]:
        fake.exit(c.name, 137)
    for label in (f"{crashed} crashed, 3 orphans", "steady, nothing to do"):
        fake.calls.clear()
        router.commands.clear()
        elapsed, summary, queries = timed(orchestrator.reconcile)
        engine_calls = sum(fake.calls.values())
        commands = sum(router.commands.values())
        print(
            f"  pass ({label}): {elapsed:.2f} s, {queries} queries, {engine_calls} engine calls "
            f"({dict(fake.calls)}), {commands} runtime API commands; {summary}",
            flush=True,
        )
        if per_command is not None and commands:
            print(f"    with the real runtime API ({per_command * 1000:.2f} ms each): +{commands * per_command:.2f} s")
        note = f"({queries} q, {engine_calls} engine, {commands} router)"
        judge(f"reconciler pass, {apps} apps ({label})", elapsed, RECONCILE_GOAL_S, "s", note)


# --- 4. alert rules ----------------------------------------------------------------------------------
def measure_alerts() -> None:
    from apps.alerts.evaluation import evaluate_rules
    from apps.alerts.models import AlertRule

    section("Alert rules: one evaluation pass over every enabled rule")
    rules = AlertRule.objects.filter(enabled=True).count()
    for label in ("first", "second"):
        elapsed, summary, queries = timed(evaluate_rules)
        print(f"  {label} pass: {elapsed:.2f} s, {queries} queries, {summary}", flush=True)
    judge(f"alert evaluation pass, {rules} rules", elapsed, ALERTS_GOAL_S, "s", f"({queries} q)")


# --- 5. the cron scheduler ----------------------------------------------------------------------------
def measure_scheduler(fake: InMemoryEngine) -> None:
    from django.utils import timezone

    from apps.cron.models import CronJob, CronRun, RunStatus
    from apps.cron.scheduler import tick

    jobs = CronJob.objects.count()
    section(f"Cron scheduler: ticks over {jobs} cron jobs (container starts STUBBED on the fake engine)")
    idle = []
    for _ in range(5):
        elapsed, summary, queries = timed(tick)
        idle.append(elapsed)
    print(f"  none due: median {statistics.median(idle) * 1000:.1f} ms, worst {max(idle) * 1000:.1f} ms, "
          f"{queries} queries ({summary})")  # fmt: skip
    judge(f"scheduler tick, {jobs} jobs, none due", max(idle), TICK_GOAL_S, "ms", f"({queries} q)")

    due = max(1, jobs // 100)
    ids = list(CronJob.objects.order_by("?").values_list("pk", flat=True)[:due])
    CronJob.objects.filter(pk__in=ids).update(next_run_at=timezone.now() - timedelta(seconds=1))
    elapsed, summary, queries = timed(tick)
    print(f"  {due} due: {elapsed * 1000:.1f} ms, {queries} queries in the ticking thread, two per run in the "
          f"threads starting them ({summary})")  # fmt: skip
    judge(f"scheduler tick, {due} of {jobs} due", elapsed, TICK_GOAL_S, "ms", f"({queries} q + 2 per run)")

    running = list(CronRun.objects.filter(status=RunStatus.RUNNING).values_list("container_name", flat=True))
    for name in running:  # every run's container exits (as `true` does at once)
        if name in fake.containers:
            fake.exit(name, 0)
    elapsed, summary, queries = timed(tick)
    print(f"  reaping {len(running)} exited runs: {elapsed * 1000:.1f} ms, {queries} queries in the ticking thread, "
          f"two per run in the threads ending them ({summary})")  # fmt: skip
    judge(f"scheduler tick reaping {len(running)} runs", elapsed, TICK_GOAL_S, "ms", f"({queries} q + 2 per run)")


# --- the real engine's listing -----------------------------------------------------------------------
def measure_engine_listing(count: int, run_id: str) -> None:
    """The one engine listing a reconciler pass makes, against the real Docker Engine, over `count`
    containers created (never started) for the purpose and removed after."""
    from apps.runtime.engine import DockerEngine, EngineError
    from tests.support import TEST_RUN_LABEL, remove_test_run
    from tests.support.images import build_web_image

    section(f"Docker Engine listing (REAL engine): {count} containers created for it, never started")
    engine = DockerEngine.from_settings()
    if not engine.ping():
        print("  no Docker Engine here: not measured")
        return
    labels = {"io.pandastack.bench": "listing", TEST_RUN_LABEL: run_id}  # not "managed": no reconciler's
    try:
        image = build_web_image()
        for i in range(count):
            engine.client.api.create_container(image, labels=labels, name=f"ps-bench-{run_id}-{i}")
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        started = time.perf_counter()
        listed = engine.list(labels)
        one_call = time.perf_counter() - started
        started = time.perf_counter()
        engine.client.containers.list(all=True, filters=filters, ignore_removed=True)  # an inspect each
        inspected = time.perf_counter() - started
        per_10k = one_call / max(1, len(listed)) * 10_000
        print(
            f"  DockerEngine.list: {one_call * 1000:.0f} ms for {len(listed)} (one engine call; ~{per_10k:.2f} s per "
            f"10,000 at this rate); listing then inspecting each, as before: {inspected * 1000:.0f} ms"
        )
        measured = f"{one_call * 1000:.0f} ms (inspecting each: {inspected * 1000:.0f} ms)"
        inform(f"engine listing, {len(listed)} containers (real)", measured)
    except EngineError as exc:
        print(f"  not measured: {exc}")
    finally:
        remove_test_run(engine.client, run_id)


# --- 6. rollup and usage -----------------------------------------------------------------------------
def measure_rollup(buckets: int) -> None:
    from apps.monitoring.services import rollup

    section(f"Metrics rollup over {buckets} buckets")
    for label in ("first", "second"):
        elapsed, written, queries = timed(rollup)
        print(f"  {label} pass: {elapsed:.2f} s, {queries} queries, buckets written per resolution {written}")
        if label == "first":
            judge("metrics rollup pass", elapsed, ROLLUP_GOAL_S, "s", f"({queries} q; goal chosen here)")


class BenchRedis:
    """A redis-server of the bench's own on a free port, gone at the end."""

    def __init__(self, workdir: Path) -> None:
        import redis

        self.port = free_port()
        self.process = subprocess.Popen(  # noqa: S603 - the system's redis-server, our own arguments
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--maxmemory", "1gb", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def commands(self) -> Counter[str]:
        return Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in self.client.info("commandstats").items()})

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(10)


def measure_usage(bench_redis: BenchRedis) -> None:
    from apps.databases import services
    from apps.databases.models import Database
    from apps.databases.tasks import refresh_usage

    databases = list(Database.objects.filter(engine="redis").select_related("team__plan", "server").order_by("pk"))
    section(f"Database usage refresh: {len(databases)} Redis databases on one shared server")
    pipe = bench_redis.client.pipeline(transaction=False)
    for i, database in enumerate(databases):
        for k in range(REDIS_KEYS_BIG_TENANT if i == 0 else REDIS_KEYS_PER_TENANT):
            pipe.set(f"{database.db_name}:k{k}", "x" * 100)
            if len(pipe) >= 10_000:
                pipe.execute()
    pipe.execute()
    total = bench_redis.client.dbsize()
    big = databases[0]
    before = bench_redis.commands()
    started = time.perf_counter()
    usage = services.provisioner_of(big).usage(services.spec_for(big))
    one = time.perf_counter() - started
    spent = bench_redis.commands() - before
    print(f"  usage() of the largest ({REDIS_KEYS_BIG_TENANT} keys of {total}): {one * 1000:.0f} ms, "
          f"{usage.size_bytes} bytes, Redis commands {dict(spent)}")  # fmt: skip
    inform(
        "Redis usage() of one database (20,000 keys)",
        f"{one * 1000:.0f} ms, {spent['scan']} SCAN + {spent['memory|usage']} MEMORY USAGE pipelined per page",
    )
    before = bench_redis.commands()
    elapsed, count, queries = timed(refresh_usage)
    spent = bench_redis.commands() - before
    print(f"  refresh_usage(): {elapsed:.2f} s for {count} databases, {queries} queries, Redis commands {dict(spent)}")
    judge(f"database usage refresh, {count} Redis databases", elapsed, USAGE_GOAL_S, "s",
          f"({sum(spent.values())} Redis commands; goal chosen here)")  # fmt: skip


# --- main ---------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teams", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=40, help="timed requests per API endpoint")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL,
        help=f"the bench's own PostgreSQL database (default {DEFAULT_DATABASE_URL.rsplit('@', 1)[1]})",
    )
    parser.add_argument("--keep", action="store_true", help="reuse the bench database if there is one; keep it")
    parser.add_argument(
        "--engine-sample",
        type=int,
        default=200,
        help="containers created on the real engine to time its listing (0: none)",
    )
    args = parser.parse_args()
    if args.teams < 1 or args.apps < args.teams * 2:
        parser.error("--apps must be at least twice --teams (the benchmark reads app0001 of every team)")

    reused = own_database(args.database_url, keep=args.keep)
    workdir = Path(tempfile.mkdtemp(prefix="pandastack-control-plane-"))
    run_id = uuid.uuid4().hex[:12]
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "pandastack.settings.local",
            "DJANGO_DEBUG": "false",  # DEBUG would keep every query in memory
            "DATABASE_URL": args.database_url,
            "PANDASTACK_SECRET_KEYS": BENCH_KEY,
            "PANDASTACK_ROUTER_DIR": str(workdir / "router"),
            "PANDASTACK_ROUTER_HTTP_PORT": str(free_port()),
            "PANDASTACK_EXTRA_LABELS": f"io.pandastack.test-run={run_id}",
            "PANDASTACK_API_THROTTLE_RATE": "1000000/min",
            "CELERY_BROKER_URL": "memory://",  # nothing here may reach a real worker
        }
    )
    import logging

    import django

    django.setup()
    for noisy in ("apps", "httpx"):  # the reconciler's "replaced container", one line per health probe
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from django.core.management import call_command

    from apps.deployments import orchestrator
    from apps.deployments.models import App
    from apps.teams.models import Team

    health = HealthServer()
    bench_redis = BenchRedis(workdir) if shutil.which("redis-server") else None
    print(f"database {_database_name(args.database_url)} ({'kept' if reused else 'made'} by the bench); "
          f"cache: {'Redis ' + os.environ['REDIS_URL'] if os.environ.get('REDIS_URL') else 'in-process'}")  # fmt: skip
    try:
        call_command("migrate", verbosity=0)
        if reused and (Team.objects.count(), App.objects.count()) not in ((0, 0), (args.teams, args.apps)):
            raise SystemExit(
                f"the kept database holds {Team.objects.count()} teams and {App.objects.count()} apps, not "
                f"{args.teams} and {args.apps}: run without --keep to make it again"
            )
        if not App.objects.exists():
            section(f"Seeding {args.teams} teams, {args.apps} apps (bulk_create)")
            started = time.perf_counter()
            seed(args.teams, args.apps, health.port)
            print(f"  seeded in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        buckets = refresh_time_dependent(health.port, bench_redis.port if bench_redis else None)
        print(f"time-dependent rows made again in {time.perf_counter() - started:.0f} s ({buckets} metric buckets)")
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        measure_api(args.requests)
        per_command = measure_router_config(workdir)

        from tests.support.fakes import InMemoryEngine, InMemoryRuntimeRouter

        fake_engine = InMemoryEngine()
        fake_router = InMemoryRuntimeRouter.from_settings()
        orchestrator.engine = lambda: fake_engine  # STUB: see the module docstring
        orchestrator.router = lambda: fake_router
        orchestrator.sync_router()  # the router's state as a running platform has it
        if args.engine_sample:
            measure_engine_listing(args.engine_sample, run_id)
        measure_reconciler(fake_engine, fake_router, per_command)
        measure_alerts()
        measure_scheduler(fake_engine)
        measure_rollup(buckets)
        if bench_redis is not None:
            measure_usage(bench_redis)
        else:
            print("\n(no redis-server on this machine: the usage refresh was not measured)")
    finally:
        health.close()
        if bench_redis is not None:
            bench_redis.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep:
            drop_own_database(args.database_url)

    width = max(len(f.name) for f in FIGURES)
    measured_width = max(len(f.measured) for f in FIGURES)
    print(f"\n{'figure':{width}}  {'measured':{measured_width}}  {'goal':10}  verdict")
    for f in FIGURES:
        print(f"{f.name:{width}}  {f.measured:{measured_width}}  {f.goal:10}  {f.verdict}")
    print(
        "\nSTUBBED (10,000 containers cannot run here): the Docker Engine (InMemoryEngine, in memory) and the running "
        "HAProxy's runtime API (InMemoryRuntimeRouter) in the reconciler and scheduler figures; the HAProxy and "
        "engine-listing figures ran a real HAProxy and the real Docker Engine. API through Django's test Client "
        "(in-process, real token, PostgreSQL)."
    )
    return 1 if any(f.verdict == "MISS" for f in FIGURES) else 0


if __name__ == "__main__":
    sys.exit(main())
