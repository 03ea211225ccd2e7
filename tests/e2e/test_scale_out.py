"""Web and workers scale out: two of every process `scripts/run` starts — two uvicorn web servers, two
Celery workers (distinct -n names), two Celery beats, two cron schedulers and two monitors — against
the one test database (PostgreSQL) and the one Redis behave as one. Everything goes through the real
API of BOTH web servers in turn, with a team token, against the real Docker Engine and HAProxy:

- deploys, rollbacks and restarts of three apps fired at once from both webs, while throwaway apps are
  created and deleted (configuration reloads) and both beats send the reconciler every 2 s: every
  deployment ends exactly once, no app ever has two deployments switching traffic at once, the newest
  deployment of each app is the live one, exactly its replicas run (no container left over, on the
  engine or in the database), the router routes exactly those servers and runs exactly the
  configuration the database gives, and no request through the router fails meanwhile;
- cron jobs made due now (their next slot set to now, as tests/cron do) twice: one run per slot across
  the two schedulers;
- an alert rule on deployment failures with a webhook channel to a local receiver: one notification
  for the firing across two monitors (both evaluate rules) and two workers (either may send it).

Two beats send every periodic task twice: that is allowed (no leader election), because each periodic
task is safe to run twice at once (see docs/scale-out.md). The figures (requests per web, deployments,
router requests, how long each phase took) are printed: run with -s."""

import itertools
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.alerts.models import Delivery
from apps.cron.models import FINISHED, CronJob, CronRun
from apps.deployments import orchestrator
from apps.deployments.models import IN_PROGRESS, App, Container, Deployment, DeploymentEvent
from apps.events.models import PlatformEvent
from apps.teams.models import Plan
from tests.conftest import make_team, make_token
from tests.support.platform_fixtures import MONITOR_ENV, TERMINAL, WorkerProcess, free_port, platform_command, wait_for
from tests.support.receiver import Receiver
from tests.support.router_load import Load

TEAM = "scale"
APPS = {"a1": 2, "a2": 1, "a3": 1}  # name -> replicas
# Per app, one after the other: a number is the seconds to wait before the next action (a deploy takes a
# few seconds, so the next one supersedes it in flight); END waits until the action's deployment ended
# (it switched traffic, while the other apps' deployments run and reloads happen).
END = "end"
STORM = (
    ("v2", 0.3), ("restart", END), ("v1", 0.8), ("rollback", END), ("v2", 0.3), ("restart", 0.3),
    ("rollback", END), ("v1", 1.5), ("v2", END),
)  # fmt: skip
READY = {
    "worker": b"ready.",
    "beat": b"beat: Starting",
    "scheduler": b"cron scheduler running",
    "monitor": b"monitor running",
    "web": b"Uvicorn running on",
}


@dataclass
class Cluster:
    webs: list[str]
    processes: dict[str, WorkerProcess]

    def logs(self, kind: str) -> dict[str, str]:
        return {
            name: proc.log_path.read_text(errors="replace")
            for name, proc in self.processes.items()
            if name.startswith(kind)
        }


@pytest.fixture
def cluster(platform, platform_settings, tmp_path) -> Iterator[Cluster]:
    """Two of each platform process on the test database, the session's router state and Redis. The
    session's own worker is stopped meanwhile (the next test that needs it starts it again), so that
    exactly two workers take the tasks."""
    platform.worker.stop()
    env = {
        **platform_settings["env"],
        **MONITOR_ENV,
        "PANDASTACK_RECONCILE_INTERVAL": "2",
        "PANDASTACK_API_THROTTLE_RATE": "100000/min",  # the API's throttle is not what this test is about
    }
    ports = [free_port(), free_port()]
    processes: dict[str, WorkerProcess] = {}
    try:
        for kind in ("worker", "scheduler", "monitor", "web", "beat"):
            for n in (1, 2):
                argv = platform_command(
                    kind, web_port=ports[n - 1], beat_schedule=tmp_path / f"beat{n}-schedule", node=f"scale{n}@%h"
                )
                proc = WorkerProcess(env, tmp_path / f"{kind}{n}.log", argv=argv, ready=READY[kind])
                processes[f"{kind}{n}"] = proc
                proc.start()
        yield Cluster(
            webs=[f"http://127.0.0.1:{port}" for port in ports],
            processes=processes,
        )
    finally:
        for name in ("beat1", "beat2"):  # no more periodic tasks; then let the workers empty the queue
            if name in processes:
                processes[name].stop()
        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        deadline = time.monotonic() + 60
        while broker.llen("celery") and time.monotonic() < deadline and "worker1" in processes:
            time.sleep(0.2)
        broker.close()
        for proc in processes.values():
            proc.stop()


class Api:
    """The team's API through both web servers in turn (each call goes to the next one), every answer
    recorded."""

    def __init__(self, webs: list[str], token: str) -> None:
        self.bases = [f"{web}/api/v1/teams/{TEAM}/" for web in webs]
        self.headers = {"Authorization": f"Bearer {token}"}
        self.turn = itertools.count()
        self.lock = threading.Lock()
        self.answers: list[tuple[int, str, str, int]] = []  # web, method, path, status
        self.local = threading.local()

    def call(self, method: str, path: str, body: dict | None = None, *, expect: int | None = None) -> httpx.Response:
        if not hasattr(self.local, "clients"):
            self.local.clients = [httpx.Client(base_url=base, headers=self.headers, timeout=60) for base in self.bases]
        with self.lock:
            web = next(self.turn) % len(self.bases)
        response = self.local.clients[web].request(method, path, json=body)
        with self.lock:
            self.answers.append((web, method, path, response.status_code))
        assert expect is None or response.status_code == expect, (web, method, path, response.text[:500])
        return response

    def report(self) -> str:
        per_web = Counter(web for web, *_ in self.answers)
        statuses = Counter(status for *_, status in self.answers)
        return f"API: {len(self.answers)} requests, per web {dict(sorted(per_web.items()))}, by status {dict(statuses)}"


class SwitchWatch:
    """Samples the database every few milliseconds: an app must never have two deployments in progress
    whose containers are routed (switching traffic) at the same moment."""

    def __init__(self) -> None:
        self.samples = 0
        self.overlaps: list[tuple[int, list[int]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        try:
            while not self.stop.is_set():
                switching = set(
                    Container.objects.filter(
                        app__team__slug=TEAM, in_router=True, deployment__status__in=IN_PROGRESS
                    ).values_list("app_id", "deployment_id")
                )
                per_app = Counter(app for app, _ in switching)
                self.overlaps += [
                    (app, sorted(d for a, d in switching if a == app)) for app, n in per_app.items() if n > 1
                ]
                self.samples += 1
                time.sleep(0.02)
        finally:
            connection.close()

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)


def went_live(deployment: Deployment) -> bool:
    """Live now, or replaced after it was live (superseded or rolled back without being stopped)."""
    return deployment.status == "live" or (
        deployment.status in ("superseded", "rolled_back") and deployment.cancelled_at is None
    )


def test_two_of_every_process_behave_as_one(
    cluster, web_image, web_image_v2, broken_image, docker_engine, platform_settings
):
    started = time.monotonic()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is too much here
    world = make_team(TEAM)
    Plan.objects.filter(pk=world.team.plan_id).update(
        max_apps=10, max_cron_jobs=10, max_concurrent_cron_runs=10, max_replicas_per_app=2
    )
    _, token = make_token(world.team, world.user("owner"))
    api = Api(cluster.webs, token)
    images = {"v1": web_image, "v2": web_image_v2}

    # --- apps and their first releases, all at once (a new team: both workers want its network) ----------
    for name, replicas in APPS.items():
        body = {"name": name, "project": "web", "port": 8080, "health_check_path": "/healthz", "replicas": replicas}
        api.call("POST", "apps/", body, expect=201)
    for name in APPS:
        api.call("POST", f"apps/{name}/deployments/", {"image": web_image}, expect=202)

    def all_ended() -> bool:
        return not Deployment.objects.filter(app__team=world.team, status__in=IN_PROGRESS).exists()

    wait_for(all_ended, timeout=120, what="the first releases")
    releases = [Deployment.objects.get(app__team=world.team, app__name=name, number=1) for name in APPS]
    assert [d.status for d in releases] == ["live"] * 3, [(d.status, d.reason) for d in releases]
    print(f"\nsetup: 3 apps live {time.monotonic() - started:.1f}s after the start")

    # --- the storm: deploys, rollbacks and restarts from both webs, reloads and reconciles meanwhile -----
    # Keep-alive clients, one per app, retrying (as browsers and curl do) only a request whose reused
    # connection the router had closed before any answer (an old worker after a reload).
    loads = [Load(orchestrator.router(), f"{name}.{TEAM}.localhost", keepalive=True) for name in APPS]
    for load in loads:
        load.start()
    watch = SwitchWatch()
    storm_started = time.monotonic()
    crashes: list[str] = []
    rng = random.Random(12)

    def storm(name: str, start_after: float) -> None:
        try:
            time.sleep(start_after)
            for action, then in STORM:
                if action == "restart":
                    response = api.call("POST", f"apps/{name}/restart/", expect=202)
                elif action == "rollback":
                    response = api.call("POST", f"apps/{name}/rollback/", {}, expect=202)
                else:
                    response = api.call("POST", f"apps/{name}/deployments/", {"image": images[action]}, expect=202)
                if then == END:
                    number = response.json()["id"]
                    wait_for(
                        lambda number=number: (
                            Deployment.objects.get(app__team=world.team, app__name=name, number=number).status
                            in TERMINAL
                        ),
                        timeout=90,
                        what=f"{name} #{number} to end",
                    )
                else:
                    time.sleep(then)
        except Exception as exc:  # reported by the test
            crashes.append(f"{name}: {exc!r}")
        finally:
            connection.close()  # this thread's own

    def churn() -> None:
        """Apps created and deleted: each is a configuration reload on a worker, while the others add and
        remove servers at run time."""
        try:
            for n in range(6):
                body = {"name": f"tmp{n}", "project": "web", "port": 8080}
                api.call("POST", "apps/", body, expect=201)
                time.sleep(0.7)
                api.call("DELETE", f"apps/tmp{n}/", {"confirm": f"tmp{n}"}, expect=204)
                time.sleep(0.3)
        except Exception as exc:  # reported by the test
            crashes.append(f"churn: {exc!r}")

    threads = [threading.Thread(target=storm, args=(name, rng.uniform(0, 1))) for name in APPS]
    threads.append(threading.Thread(target=churn))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert crashes == []
    wait_for(all_ended, timeout=240, what="every deployment to end")
    storm_seconds = time.monotonic() - storm_started

    # Settled: the newest deployment of each app is live, with exactly its replicas, routed.
    def settled() -> bool:
        for name, replicas in APPS.items():
            app = App.objects.get(team=world.team, name=name)
            newest = Deployment.objects.filter(app=app).order_by("-number").first()
            names = {c.name for c in docker_engine.list(ours({"io.pandastack.app": str(app.pk)}))}
            rows = set(Container.objects.filter(app=app).values_list("name", flat=True))
            if app.live_deployment_id != newest.pk or len(names) != replicas or names != rows:
                return False
        return True

    wait_for(settled, timeout=30, what="every app to run exactly its newest release's replicas")
    time.sleep(1.0)  # a few more requests and reconciles on the settled state
    watch.finish()
    for load in loads:
        load.finish()
    served = {name: sum(load.seen.values()) for name, load in zip(APPS, loads, strict=True)}
    failures = [failure for load in loads for failure in load.failures]
    print(f"storm: {storm_seconds:.1f}s; router requests served {served}, {len(failures)} failed,"
          f" {sum(load.stale_retries for load in loads)} retried on a new connection;"
          f" {watch.samples} switch samples")  # fmt: skip

    deployments = list(Deployment.objects.filter(app__team=world.team).select_related("app").order_by("app", "number"))
    statuses = Counter(d.status for d in deployments)
    print(f"deployments: {len(deployments)} {dict(statuses)}, {sum(map(went_live, deployments))} went live")
    assert set(statuses) <= TERMINAL - {"failed", "cancelled"}, statuses
    assert failures == [], failures[:10]
    assert all(count > 100 for count in served.values()), served
    assert watch.overlaps == [], watch.overlaps[:10]
    # Every deployment ended exactly once: one "Live at" and one deployment.succeeded for each release
    # that went live, none for the others.
    live_events = Counter(
        DeploymentEvent.objects.filter(deployment__app__team=world.team, message__startswith="Live at ").values_list(
            "deployment_id", flat=True
        )
    )
    succeeded = Counter(
        (e.subject_id, e.data["deployment"])
        for e in PlatformEvent.objects.filter(team=world.team, kind="deployment.succeeded")
    )
    for d in deployments:
        expected = 1 if went_live(d) else 0
        assert live_events[d.pk] == expected, (d.app.name, d.number, d.status, live_events[d.pk])
        assert succeeded[(str(d.app_id), d.number)] == expected, (d.app.name, d.number, d.status)
    assert not PlatformEvent.objects.filter(team=world.team, kind="deployment.failed").exists()
    for name, replicas in APPS.items():
        app = App.objects.get(team=world.team, name=name)
        live = Container.objects.filter(app=app)
        assert set(live.values_list("deployment_id", flat=True)) == {app.live_deployment_id}
        assert live.count() == replicas and live.filter(in_router=True).count() == replicas
        routed = orchestrator.router().servers(app.router_backend)
        assert {(s.name, s.admin_state) for s in routed} == {(c.router_server, "ready") for c in live}
    # Nothing of the deleted apps is left, and the router runs exactly what the database says: one more
    # programmer (this process) finds nothing to change.
    assert orchestrator.sync_router() is False
    engine_names = {
        c.name for c in docker_engine.list(ours({"io.pandastack.team": TEAM, "io.pandastack.managed": "true"}))
    }
    assert engine_names == set(Container.objects.filter(app__team=world.team).values_list("name", flat=True))

    # --- cron: two slots made due now, two schedulers ---------------------------------------------------
    cron_started = time.monotonic()
    for n in range(4):
        body = {"name": f"tick{n}", "project": "web", "app": "a3", "command": ["sh", "-c", "echo ran"],
                "schedule": "* * * * *"}  # fmt: skip
        api.call("POST", "cron-jobs/", body, expect=201)
    jobs = list(CronJob.objects.filter(team=world.team))
    slots = []
    for _ in range(2):
        slot = timezone.now() + timedelta(seconds=1)
        slots.append(slot)
        CronJob.objects.filter(pk__in=[j.pk for j in jobs]).update(next_run_at=slot)
        wait_for(
            lambda slot=slot: (
                CronRun.objects.filter(job__in=jobs, scheduled_for=slot, status__in=FINISHED).count() == len(jobs)
            ),
            timeout=60,
            what="every job's run of the slot to finish",
        )
    time.sleep(1.5)  # a few more ticks of both schedulers: nothing may be added after the fact
    runs = list(CronRun.objects.filter(job__in=jobs))  # a minute boundary passed meanwhile adds its own slot
    per_slot = Counter((r.job_id, r.scheduled_for) for r in runs)
    print(f"cron: {len(runs)} runs of {len(jobs)} jobs, {time.monotonic() - cron_started:.1f}s")
    assert all(count == 1 for count in per_slot.values()), per_slot
    for slot in slots:
        assert sorted(j for j, s in per_slot if s == slot) == sorted(j.pk for j in jobs)
    slot_runs = [r for r in runs if r.scheduled_for in slots]
    outcomes = [(r.status, r.log_tail, r.reason) for r in slot_runs]
    assert all(outcome[:2] == ("succeeded", "ran") for outcome in outcomes), outcomes
    for log in cluster.logs("scheduler").values():
        assert "tick failed" not in log

    # --- an alert that fires: one notification across two monitors and two workers ----------------------
    alert_started = time.monotonic()
    receiver = Receiver()
    try:
        api.call("POST", "notification-channels/", {"name": "ops", "kind": "webhook", "target": receiver.url},
                 expect=201)  # fmt: skip
        rule = {"name": "failed-deploys", "scope": "app", "app": "a2", "metric": "event",
                "event_kind": "deployment.failed", "operator": "gte", "threshold": 1, "window_seconds": 300,
                "for_seconds": 0, "severity": "critical", "channels": ["ops"]}  # fmt: skip
        api.call("POST", "alert-rules/", rule, expect=201)
        broken = api.call("POST", "apps/a2/deployments/", {"image": broken_image}, expect=202).json()["id"]
        wait_for(lambda: receiver.requests, timeout=60, what="the webhook notification")
        time.sleep(3.0)  # about six more evaluation rounds of each monitor: no second notification
        triggers = [json.loads(r["body"])["trigger"] for r in receiver.requests]
    finally:
        receiver.close()
    print(f"alert: notified {time.monotonic() - alert_started:.1f}s after the failing deploy was asked")
    assert Deployment.objects.get(app__name="a2", number=broken).status == "failed"
    assert triggers == ["alert"], triggers
    assert Delivery.objects.filter(team=world.team, trigger="alert").count() == 1
    assert PlatformEvent.objects.filter(team=world.team, kind="alert.firing").count() == 1

    # --- every process of the pair did its share and is still up ---------------------------------------
    print(api.report())
    per_web = Counter(web for web, *_ in api.answers)
    assert per_web[0] > 20 and per_web[1] > 20, per_web
    assert all(status < 500 for *_, status in api.answers)
    for name, proc in cluster.processes.items():
        assert proc.process is not None and proc.process.poll() is None, f"{name} died:\n{proc.log_tail()}"
    worker_logs = cluster.logs("worker")
    assert all("deployments.run" in log for log in worker_logs.values()), "both workers ran deploys"
    assert all("Sending due task reconcile" in log for log in cluster.logs("beat").values())
    monitors = cluster.logs("monitor")
    assert any("standing by" in log for log in monitors.values()), monitors  # one collector per host
    print(f"whole test {time.monotonic() - started:.1f}s")


def ours(labels: dict[str, str | None]) -> dict[str, str | None]:
    """`labels` and this session's test-run label (other runs may share the engine)."""
    return {**labels, **settings.PANDASTACK_EXTRA_LABELS}
