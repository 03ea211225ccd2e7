"""Issue 11, item 5: no team can exhaust the host.

Attacks against the real Docker Engine and the real platform (API, Celery worker, scheduler):
- a process bomb inside an app container deployed through the API stays inside the plan's PID limit
  while the host keeps forking;
- the app, cron-run and dedicated-database containers carry the one hardening policy (PID limit, every
  capability dropped but a short list, no-new-privileges, the plan's memory and CPUs), even for a cron
  job saved under a more generous plan;
- the plan refuses oversized memory and CPU requests (apps, scale, cron jobs) with `quota_exceeded`;
- a team cannot run more cron containers at once than its plan allows, and run-now is rate-limited.

The process-bomb test first spawns a bounded number of sleeps (safe on a host without the limit: on the
code before the fix it fails with about 200 processes in the container), and only once that proved the
limit holds does it start a real fork bomb, for three seconds, then removes the container.
"""

import subprocess
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

from apps.cron.models import CronRun, RunStatus
from apps.databases import dedicated
from apps.deployments.models import Container, Deployment
from apps.events.models import PlatformEvent
from apps.runtime.engine import APP_CAPABILITIES, DATABASE_CAPABILITIES
from apps.teams.models import Plan, Team
from tests.conftest import assert_error, make_team, make_token, token_client
from tests.cron.conftest import cron_world, ctx_of, later, make_job, started, tick_until  # noqa: F401
from tests.databases.test_dedicated import dedicated_world, make_database  # noqa: F401
from tests.support.platform_fixtures import wait_deployment

MiB = 1024 * 1024
PIDS = 48  # the test plan's max_pids_per_container
SPAWNED = 200  # sleeps the bounded attack tries to start: far above PIDS


def own_plan(team: Team, **limits: Any) -> Plan:
    """A plan of the team's own, so that changing its limits touches no other test's team."""
    plan = Plan.objects.create(slug=f"p-{uuid.uuid4().hex[:10]}", name="Test plan", **limits)
    team.plan = plan
    team.save(update_fields=["plan"])
    return plan


def host_can_fork() -> bool:
    return subprocess.run(["true"], timeout=10).returncode == 0


def hardening_of(engine: Any, name_or_id: str) -> dict[str, Any]:
    host = engine.client.api.inspect_container(name_or_id)["HostConfig"]
    return {
        "PidsLimit": host.get("PidsLimit"),
        "CapDrop": host.get("CapDrop"),
        "CapAdd": sorted(host.get("CapAdd") or []),
        "SecurityOpt": host.get("SecurityOpt"),
        "Memory": host.get("Memory"),
        "NanoCpus": host.get("NanoCpus"),
        "Privileged": host.get("Privileged"),
    }


def expected_hardening(*, pids: int, capabilities: tuple[str, ...], memory_mb: int, cpus: float) -> dict[str, Any]:
    return {
        "PidsLimit": pids,
        "CapDrop": ["ALL"],
        "CapAdd": sorted(capabilities),
        "SecurityOpt": ["no-new-privileges:true"],
        "Memory": memory_mb * MiB,
        "NanoCpus": int(cpus * 1_000_000_000),
        "Privileged": False,
    }


class PidSampler:
    """Reads the container's pids.current (the engine's stats) as fast as it can, in a thread."""

    def __init__(self, engine: Any, container_id: str) -> None:
        self.engine, self.container_id = engine, container_id
        self.samples: list[int] = []
        self.limit: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            stats = self.engine.client.api.stats(self.container_id, stream=False, one_shot=True)
            pids = stats.get("pids_stats") or {}
            if "current" in pids:
                self.samples.append(int(pids["current"]))
                self.limit = pids.get("limit")

    def __enter__(self) -> "PidSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def exec_detached(engine: Any, container_id: str, script: str) -> str:
    exec_id = engine.client.api.exec_create(container_id, ["sh", "-c", script])["Id"]
    engine.client.api.exec_start(exec_id, detach=True)
    return exec_id


def wait_exec(engine: Any, exec_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (state := engine.client.api.exec_inspect(exec_id))["Running"]:
        assert time.monotonic() < deadline, f"the exec still runs after {timeout:.0f}s"
        time.sleep(0.1)
    return state


# --- the process bomb ------------------------------------------------------------------------------
def test_a_fork_bomb_in_an_app_container_stays_inside_its_pid_limit_and_the_host_keeps_working(
    platform,
    web_image,
    docker_engine,
):
    world = make_team(f"fb-{uuid.uuid4().hex[:8]}")
    own_plan(world.team, max_pids_per_container=PIDS)
    _, raw = make_token(world.team, world.user("owner"))
    client = token_client(raw)
    base = f"/api/v1/teams/{world.team.slug}/apps/"
    created = client.post(base, {"name": "web", "project": "web", "port": 8080, "health_check_path": "/healthz",
                                 "memory_mb": 64, "cpus": "0.5"}, format="json")  # fmt: skip
    assert created.status_code == 201, created.json()
    response = client.post(f"{base}web/deployments/", {"image": web_image}, format="json")
    assert response.status_code == 202, response.json()
    deployment = Deployment.objects.get(app__team=world.team, number=response.json()["id"])
    done = wait_deployment(deployment.pk, worker=platform.worker)
    assert done.status == "live", (done.status, done.reason)
    container = Container.objects.get(deployment=deployment)

    try:
        # 1. Bounded: try to start SPAWNED sleeps. Without a PID limit they all start.
        with PidSampler(docker_engine, container.docker_id) as sampler:
            spawner = exec_detached(
                docker_engine,
                container.docker_id,
                f"i=0; while [ $i -lt {SPAWNED} ]; do sleep 300 & i=$((i+1)); done; echo spawned $i",
            )
            state = wait_exec(docker_engine, spawner, timeout=60)
            time.sleep(0.5)  # a few more samples once the spawner ended
        assert sampler.samples, "no pids reading from the engine"
        assert max(sampler.samples) <= PIDS, f"{max(sampler.samples)} processes in a container limited to {PIDS}"
        assert state["ExitCode"] != 0  # its shell could not fork any more: the limit stopped it
        assert host_can_fork()

        # 2. The real thing, now that the limit is known to hold: a fork bomb for three seconds.
        with PidSampler(docker_engine, container.docker_id) as sampler:
            exec_detached(docker_engine, container.docker_id, "b(){ b | b & }; b")
            forks_ok = []
            give_up = time.monotonic() + 3
            while time.monotonic() < give_up:
                forks_ok.append(host_can_fork())
                time.sleep(0.2)
        assert sampler.samples and max(sampler.samples) <= PIDS, sampler.samples[-20:]
        assert sampler.limit == PIDS
        assert forks_ok and all(forks_ok)  # the host kept forking during the bomb
        assert docker_engine.ping()  # and its engine kept answering
    finally:
        docker_engine.remove(container.docker_id)  # ends the bomb (the fixture would at teardown too)
    assert host_can_fork()


# --- the policy on every kind of container ---------------------------------------------------------
def test_app_containers_carry_the_hardening_policy_with_the_plans_limits(platform, web_image, docker_engine):
    world = make_team(f"hp-{uuid.uuid4().hex[:8]}")
    own_plan(world.team, max_pids_per_container=100, max_memory_mb_per_app=128, max_cpus_per_app=Decimal("0.5"))
    _, raw = make_token(world.team, world.user("owner"))
    client = token_client(raw)
    base = f"/api/v1/teams/{world.team.slug}/apps/"
    body = {"name": "web", "project": "web", "port": 8080, "memory_mb": 96, "cpus": "0.25"}
    assert client.post(base, body, format="json").status_code == 201
    response = client.post(f"{base}web/deployments/", {"image": web_image}, format="json")
    assert response.status_code == 202, response.json()
    deployment = Deployment.objects.get(app__team=world.team, number=response.json()["id"])
    assert wait_deployment(deployment.pk, worker=platform.worker).status == "live"

    container = Container.objects.get(deployment=deployment)
    assert hardening_of(docker_engine, container.docker_id) == expected_hardening(
        pids=100, capabilities=APP_CAPABILITIES, memory_mb=96, cpus=0.25
    )


def test_cron_run_containers_carry_the_policy_capped_by_the_plan_even_for_an_old_oversized_job(cron_world):  # noqa: F811
    own_plan(cron_world.world.team, max_pids_per_container=40, max_memory_mb_per_app=128,
             max_cpus_per_app=Decimal("0.5"))  # fmt: skip
    from apps.cron.services import cron_job_run_now

    # Within the plan: its own values.
    job = cron_world.job("small", command=["sh", "-c", "sleep 30"], memory_mb=64, cpus=Decimal("0.25"))
    run = started(cron_job_run_now(ctx=ctx_of(cron_world.world), job=job))
    assert hardening_of(cron_world.engine, run.container_name) == expected_hardening(
        pids=40, capabilities=APP_CAPABILITIES, memory_mb=64, cpus=0.25
    )

    # Saved before the plan was lowered (or straight into the database): "64 GB" runs with the plan's 128 MB.
    greedy = cron_world.job("greedy", command=["sh", "-c", "sleep 30"], memory_mb=65536, cpus=Decimal("8"))
    run = started(cron_job_run_now(ctx=ctx_of(cron_world.world), job=greedy))
    assert hardening_of(cron_world.engine, run.container_name) == expected_hardening(
        pids=40, capabilities=APP_CAPABILITIES, memory_mb=128, cpus=0.5
    )


def test_a_dedicated_database_container_carries_the_database_capability_set(dedicated_world, redis_image):  # noqa: F811
    plan = own_plan(dedicated_world.world.team, max_pids_per_container=64, dedicated_database_memory_mb=64,
                    dedicated_database_cpus=Decimal("0.5"))  # fmt: skip
    assert plan.allow_dedicated_databases is False  # the container is started directly here
    database = dedicated_world.database()

    server = dedicated.ensure_container(database, image=redis_image)

    assert hardening_of(dedicated_world.engine, server.container_name) == expected_hardening(
        pids=64, capabilities=DATABASE_CAPABILITIES, memory_mb=64, cpus=0.5
    )


# --- the plan refuses oversized requests ------------------------------------------------------------
def test_the_plan_refuses_oversized_memory_and_cpus_for_apps_scale_and_cron_jobs(team_a, client_for):
    own_plan(team_a.team, max_memory_mb_per_app=512, max_cpus_per_app=Decimal("1.00"), max_replicas_per_app=2)
    owner = client_for(team_a, "owner")
    apps = "/api/v1/teams/alpha/apps/"
    jobs = "/api/v1/teams/alpha/cron-jobs/"
    app = {"name": "web", "project": "web"}
    job = {"name": "nightly", "project": "web", "image": "busybox:1.36", "command": ["true"], "schedule": "@daily"}

    def refused(response: Any, limit: str, maximum: float) -> None:
        error = assert_error(response, 403, "quota_exceeded")
        assert (error["limit"], error["maximum"]) == (limit, maximum), error

    refused(owner.post(apps, {**app, "memory_mb": 4096}, format="json"), "max_memory_mb_per_app", 512)
    refused(owner.post(apps, {**app, "cpus": "4"}, format="json"), "max_cpus_per_app", 1.0)
    assert owner.post(apps, {**app, "memory_mb": 512, "cpus": "1"}, format="json").status_code == 201
    refused(owner.patch(f"{apps}web/", {"cpus": "2"}, format="json"), "max_cpus_per_app", 1.0)
    refused(owner.patch(f"{apps}web/", {"memory_mb": 1024}, format="json"), "max_memory_mb_per_app", 512)
    refused(owner.post(f"{apps}web/scale/", {"replicas": 3}, format="json"), "max_replicas_per_app", 2)

    # Today's hole: a cron job asking for 64 GB (or 8 CPUs).
    refused(owner.post(jobs, {**job, "memory_mb": 65536}, format="json"), "max_memory_mb_per_app", 512)
    refused(owner.post(jobs, {**job, "cpus": "8"}, format="json"), "max_cpus_per_app", 1.0)
    assert owner.post(jobs, {**job, "memory_mb": 512, "cpus": "1"}, format="json").status_code == 201
    refused(owner.patch(f"{jobs}nightly/", {"memory_mb": 65536}, format="json"), "max_memory_mb_per_app", 512)
    refused(owner.patch(f"{jobs}nightly/", {"cpus": "1.5"}, format="json"), "max_cpus_per_app", 1.0)

    detail = owner.get(f"{jobs}nightly/").json()
    assert (detail["memory_mb"], detail["cpus"]) == (512, 1.0)  # nothing refused was written
    web = owner.get(f"{apps}web/").json()
    assert (web["memory_mb"], web["cpus"], web["replicas"]) == (512, 1.0, 1)


# --- cron: concurrent runs per team and run-now ------------------------------------------------------
def test_a_team_runs_no_more_cron_containers_at_once_than_its_plan_allows(cron_world):  # noqa: F811
    own_plan(cron_world.world.team, max_concurrent_cron_runs=1)
    from apps.cron.services import cron_job_run_now

    ctx = ctx_of(cron_world.world)
    slow = cron_world.job("slow", command=["sh", "-c", "sleep 2"], starting_deadline_seconds=60)
    quick = cron_world.job("quick", command=["sh", "-c", "echo queued and ran"], starting_deadline_seconds=60)
    first = cron_job_run_now(ctx=ctx, job=slow)
    second = cron_job_run_now(ctx=ctx, job=quick)

    # The first takes the team's only slot; the second waits, queued, and runs once the slot is free.
    running_at_once: list[int] = []

    def quick_finished() -> CronRun | None:
        running_at_once.append(len([c for c in cron_world.containers() if c.status == "running"]))
        second.refresh_from_db()
        return second if second.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.SKIPPED) else None

    done = tick_until(quick_finished, timeout=30)
    first.refresh_from_db()
    assert first.status == RunStatus.SUCCEEDED
    assert (done.status, done.log_tail) == (RunStatus.SUCCEEDED, "queued and ran")
    assert done.started_at >= first.finished_at
    assert max(running_at_once) == 1

    # A run that cannot get a slot within its job's starting deadline is skipped, with the reason.
    hog = cron_world.job("hog", command=["sh", "-c", "sleep 30"])
    starved = cron_world.job("starved", command=["true"], starting_deadline_seconds=5)
    started(cron_job_run_now(ctx=ctx, job=hog))
    waiting = cron_job_run_now(ctx=ctx, job=starved)
    tick_until(lambda: True)
    waiting.refresh_from_db()
    assert waiting.status == RunStatus.PENDING
    tick_until(lambda: CronRun.objects.get(pk=waiting.pk).status != RunStatus.PENDING, clock=lambda: later(10))
    waiting.refresh_from_db()
    assert waiting.status == RunStatus.SKIPPED
    assert "max_concurrent_cron_runs" in waiting.reason
    assert PlatformEvent.objects.filter(kind="cron.run_skipped", subject_id=str(starved.pk)).exists()
    assert len(cron_world.containers()) == 1  # only the hog's


def test_run_now_is_rate_limited_per_job_and_per_team_with_a_429(team_a, client_for):
    own_plan(team_a.team, cron_run_now_per_minute=5)
    for name in ("one", "two", "three"):
        make_job(team_a, name)
    owner = client_for(team_a, "owner")

    def run(name: str) -> Any:
        return owner.post(f"/api/v1/teams/alpha/cron-jobs/{name}/run/", format="json")

    assert [run("one").status_code for _ in range(3)] == [202, 202, 202]
    error = assert_error(response := run("one"), 429, "throttled")
    assert "runs of one" in error["message"]
    assert 1 <= error["retry_after"] <= 61 and response["Retry-After"] == str(error["retry_after"])

    # Another job still may, until the team's budget (the plan's 5 a minute) is spent.
    assert [run("two").status_code for _ in range(2)] == [202, 202]
    error = assert_error(run("three"), 429, "throttled")
    assert "manual cron runs in this team" in error["message"]
    assert CronRun.objects.filter(team=team_a.team).count() == 5

