"""Outage drills: what the platform's own dependencies going away does to it, on the real services.

Each drill is bounded in time and prints how long convergence took (run with -s to see it):

* the broker (Redis) stopped for OUTAGE_SECONDS and started again: the API answers 503
  `service_unavailable` at once while it is down, and every task queued before or during the outage
  runs exactly once afterwards;
* HAProxy killed -9 (master and workers): the monitor brings the routes back within ROUTER_BACK_WITHIN;
* dockerd restarted: with live-restore the app keeps serving through the restart; containers that
  stopped with the engine are brought back by the reconciler.
"""

import os
import re
import signal
import threading
import time
from collections import Counter

import httpx
import pytest
import redis as redis_py

from apps.core.models import PendingTask
from apps.deployments import orchestrator
from apps.deployments.models import App, Container, Deployment
from apps.teams.models import Plan
from tests.conftest import assert_error, make_team
from tests.e2e.test_deploy import create_app, deploy, host, owner_client
from tests.support.outage import DockerDaemon, RestartableRedis, redis_as_broker_and_cache
from tests.support.platform_fixtures import Platform, WorkerProcess, wait_for

APPS = "/api/v1/teams/alpha/apps"
OUTAGE_SECONDS = 30.0  # the figure: Redis stopped for 30 s
ANSWER_WITHIN = 2.0  # a refused write answers in this long, not after a connect timeout
RECOVERED_WITHIN = 120.0  # after Redis is back, every queued task has run within this long
TASK_LINE = re.compile(rb"Task (?P<name>[\w.]+)\[(?P<id>[0-9a-f-]{36})\] (?P<what>received|succeeded)")


@pytest.fixture
def world(platform):
    world = make_team("alpha")
    world.team.plan = Plan.objects.create(slug="drill", name="Drill", max_apps=10, max_replicas_per_app=5)
    world.team.save(update_fields=["plan"])
    return world


def redis_client(server: RestartableRedis) -> redis_py.Redis:
    return redis_py.Redis.from_url(server.url(1))


def serves(platform: Platform, host_name: str) -> bool:
    """Whether the app answers 200 through the router now (a second at most)."""
    try:
        return platform.get(host_name, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def task_lines(worker: WorkerProcess) -> dict[str, Counter]:
    """From the worker's log: how often each task id was received and succeeded, and its name."""
    received: Counter = Counter()
    succeeded: Counter = Counter()
    names: dict[str, str] = {}
    for match in TASK_LINE.finditer(worker.log_path.read_bytes()):
        task_id = match["id"].decode()
        names[task_id] = match["name"].decode()
        (received if match["what"] == b"received" else succeeded)[task_id] += 1
    return {"received": received, "succeeded": succeeded, "names": Counter(names.values())}


def test_drill_broker_stopped_for_30s_refuses_writes_fast_and_loses_no_task(
    platform, platform_settings, world, web_image, slow_image, settings, monkeypatch, tmp_path
):
    """Redis — the broker and the cache, as one REDIS_URL sets them up — stopped cleanly for
    OUTAGE_SECONDS and started again, with deploys queued and one running when it stops.

    The broker is a redis-server of the test's own (with an append-only file, as the platform's broker
    must run), used by this process's API and by a worker of the drill's own; the suite's Redis is not
    touched. The worker's log says which task ids it ran: each must have run exactly once."""
    redis = RestartableRedis()
    redis.start()
    worker = None
    try:
        with redis_as_broker_and_cache(settings, monkeypatch, redis) as env:
            worker = WorkerProcess({**platform_settings["env"], **env}, tmp_path / "worker.log")
            worker.start()
            client = owner_client(world)
            names = ["a1", "a2", "a3", "a4"]
            for name in names:
                body = {"name": name, "project": "web", "port": 8080, "health_check_path": "/healthz"}
                assert client.post(f"{APPS}/", body, format="json").status_code == 201
            first = client.post(f"{APPS}/a1/deployments/", {"image": web_image}, format="json")
            assert first.status_code == 202, first.json()
            wait_for(lambda: Deployment.objects.filter(app__name="a1", status="live").exists(), timeout=60,
                     what="a1 to go live before the outage")  # fmt: skip

            # Three slow deploys (each takes ~5 s to pass its health check), then Redis stops: one is
            # running on the worker, the others wait in the broker.
            for name in names[1:]:
                response = client.post(f"{APPS}/{name}/deployments/", {"image": slow_image}, format="json")
                assert response.status_code == 202, response.json()
            wait_for(
                lambda: Deployment.objects.filter(app__name="a2").exclude(status="pending").exists(),
                timeout=30,
                what="the first slow deploy to start",
            )
            redis.stop()
            down_at = time.monotonic()
            before = set(Deployment.objects.values_list("pk", flat=True))

            # While it is down: writes that need a worker answer 503 at once and write nothing; reads
            # work; creating an app (which needs no worker) works and its router sync is kept.
            slowest, probes, statuses = 0.0, 0, Counter()
            created_during = False
            while time.monotonic() - down_at < OUTAGE_SECONDS:
                started = time.monotonic()
                refused = client.post(f"{APPS}/a1/deployments/", {"image": web_image}, format="json")
                slowest = max(slowest, time.monotonic() - started)
                error = assert_error(refused, 503, "service_unavailable")
                assert "task queue" in error["message"] and refused["Retry-After"] == "10"
                statuses[refused.status_code] += 1
                statuses[client.get(f"{APPS}/").status_code] += 1
                statuses[client.post(f"{APPS}/a1/scale/", {"replicas": 2}, format="json").status_code] += 1
                if not created_during:
                    body = {"name": "late", "project": "web", "port": 8080}
                    statuses[client.post(f"{APPS}/", body, format="json").status_code] += 1
                    created_during = True
                probes += 1
                time.sleep(1.0)
            assert statuses == Counter({503: 2 * probes, 200: probes, 201: 1}), statuses
            assert slowest < ANSWER_WITHIN, f"a refused write took {slowest:.2f}s"
            assert set(Deployment.objects.values_list("pk", flat=True)) == before
            assert App.objects.get(name="a1").replicas == 1
            assert PendingTask.objects.filter(task="deployments.sync_router").count() == 1

            offset = worker.log_path.stat().st_size
            redis.start()
            back_at = time.monotonic()
            wait_for(lambda: b"Connected to redis" in worker.log_path.read_bytes()[offset:], timeout=RECOVERED_WITHIN,
                     what="the worker to reconnect")  # fmt: skip
            reconnected = time.monotonic() - back_at

            def all_done() -> bool:
                live = Deployment.objects.filter(app__name__in=names, status="live").count()
                return live == len(names) and not PendingTask.objects.exists()

            try:
                wait_for(all_done, timeout=RECOVERED_WITHIN, what="every queued task to run")
            except AssertionError:
                states = list(Deployment.objects.values_list("app__name", "number", "status", "reason"))
                raise AssertionError(f"not recovered: {states}\nWorker:\n{worker.log_tail(60)}") from None
            recovered = time.monotonic() - back_at
            # The relayed router sync runs after the last deploy finished; give it its moment.
            wait_for(lambda: task_lines(worker)["names"]["deployments.sync_router"] == len(names) + 1, timeout=30,
                     what="the kept router sync to run")  # fmt: skip
            time.sleep(1.0)  # nothing may run twice a moment later either
            lines = task_lines(worker)
            assert {n: c for n, c in lines["received"].items() if c != 1} == {}, worker.log_tail(80)
            assert set(lines["succeeded"]) == set(lines["received"]), worker.log_tail(80)
            assert {n: c for n, c in lines["succeeded"].items() if c != 1} == {}, worker.log_tail(80)
            # Every deploy and every router sync asked for ran (a4's deploy, queued in the broker, too).
            assert lines["names"]["deployments.run"] == len(names)
            assert lines["names"]["deployments.sync_router"] == len(names) + 1
            assert platform.get("a4.alpha.localhost").status_code == 200
            # Nothing is left unacknowledged in the broker either (it would run again after the
            # visibility timeout): the task that ran through the outage was acknowledged after it.
            assert redis_client(redis).hlen("unacked") == 0
            print(
                f"drill: broker (Redis) down {OUTAGE_SECONDS:.0f}s: {2 * probes} refused writes answered 503 in "
                f"<= {slowest:.2f}s, {probes} reads 200, no 500; worker reconnected {reconnected:.1f}s and every "
                f"queued task ({sum(lines['succeeded'].values())}, each once) done {recovered:.1f}s after Redis "
                "was back"
            )
    finally:
        if worker is not None:
            worker.stop()
        redis.close()


ROUTER_BACK_WITHIN = 10.0  # the bound for routes after HAProxy is killed -9


def test_drill_haproxy_killed_9_routes_are_back_within_10s(platform, monitor, world, web_image):
    """HAProxy's master and workers killed -9 at once: the monitor (default settings: it asks the
    router every PANDASTACK_ROUTER_WATCH_INTERVAL = 2 s) starts it again with every route and server;
    no reconciler pass runs here (no beat), so this is the monitor's doing."""
    client = owner_client(world)
    create_app(client)
    deploy(client, web_image, platform=platform)
    assert platform.get(host()).status_code == 200
    master = int((platform.router_dir / "haproxy.pid").read_text().split()[0])
    os.killpg(os.getpgid(master), signal.SIGKILL)  # the master and its workers share its process group
    killed_at = time.monotonic()
    wait_for(lambda: not orchestrator.router().is_running(), timeout=5, what="HAProxy to die")
    wait_for(lambda: serves(platform, host()), timeout=ROUTER_BACK_WITHIN + 20, what="the app to answer again")
    took = time.monotonic() - killed_at
    print(f"drill: HAProxy killed -9 (master and workers): the app answered 200 through the router {took:.1f}s later")
    assert took <= ROUTER_BACK_WITHIN, f"routes came back after {took:.1f}s"
    assert b"started it again with its routes" in monitor.log_path.read_bytes()


ENGINE_BACK_WITHIN = 60.0  # a dockerd restart (stop + start) takes seconds; this bounds the drill


def test_drill_dockerd_restart_apps_keep_serving_and_stopped_ones_come_back(platform, world, web_image, settings):
    """dockerd stopped and started again, the way it was started (tests/support/outage.py: DockerDaemon).

    With live-restore (scripts/lib.sh turns it on) the containers keep running without their engine:
    app `kept` answers every request through the router during the restart. An engine without
    live-restore stops its containers with it; restarting the machine's shared engine that way would stop
    every other container on it, so the drill does to app `lost`'s containers what such an engine does —
    they are killed while dockerd is down — and the reconciler brings `lost` back."""
    daemon = DockerDaemon()
    daemon.ensure_live_restore()
    client = owner_client(world)
    for name in ("kept", "lost"):
        create_app(client, name=name)
        deploy(client, web_image, app=name, platform=platform)
    kept = {
        c.name: orchestrator.engine().client.containers.get(c.name) for c in Container.objects.filter(app__name="kept")
    }
    lost_pids = [
        orchestrator.engine().client.containers.get(c.name).attrs["State"]["Pid"]
        for c in Container.objects.filter(app__name="lost")
    ]

    results = Counter()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{platform.router_port}", headers={"Host": host("kept")}) as http:
            while not stop.is_set():
                try:
                    results[http.get("/", timeout=2.0).status_code] += 1
                except httpx.HTTPError as exc:
                    results[type(exc).__name__] += 1
                time.sleep(0.01)

    def kill_lost() -> None:  # what an engine without live-restore does to its containers
        for pid in lost_pids:
            os.kill(pid, signal.SIGKILL)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        away = daemon.restart(while_down=kill_lost)
        time.sleep(2.0)  # and a little after
    finally:
        stop.set()
        thread.join(10)
    assert away < ENGINE_BACK_WITHIN
    served = results[200]
    assert served > 0 and set(results) == {200}, f"requests to `kept` during the restart: {dict(results)}"
    for name, before in kept.items():  # the same containers, never restarted
        after = orchestrator.engine().client.containers.get(name)
        assert (after.id, after.status, after.attrs["State"]["StartedAt"]) == (
            before.id, "running", before.attrs["State"]["StartedAt"]
        )  # fmt: skip

    for container in Container.objects.filter(app__name="lost"):  # stopped with the engine, as without live-restore
        assert orchestrator.engine().inspect(container.name).status == "exited"
    started = time.monotonic()
    orchestrator.reconcile()  # beat's next pass (every PANDASTACK_RECONCILE_INTERVAL, 15 s by default)
    wait_for(lambda: serves(platform, host("lost")), timeout=30, what="`lost` to serve again")
    reconciled = time.monotonic() - started
    print(
        f"drill: dockerd restarted (engine away {away:.1f}s): with live-restore `kept` answered all {served} "
        f"requests, 0 failed; `lost`, whose containers stopped, served again {reconciled:.1f}s into the next "
        f"reconciler pass (beat runs one every {settings.PANDASTACK_RECONCILE_INTERVAL:.0f}s)"
    )
