"""Real runs on the real Docker Engine, driven by the scheduler's tick: success with its log tail,
failure with its exit code and event, the timeout kill, the three concurrency policies, retries
with backoff, manual runs, app-attached jobs with the live release's image and variables, history
retention, and what is left on the engine afterwards (nothing)."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.cron import scheduler
from apps.cron.models import ConcurrencyPolicy, CronJob, CronRun, RunStatus, Trigger
from apps.cron.scheduler import TickSummary, tick
from apps.cron.services import cron_job_run_now
from apps.deployments.models import App, Deployment, DeploymentStatus
from apps.events.models import PlatformEvent
from apps.secrets.models import Level
from apps.secrets.services import Scope, variables_set
from pandastack.celery import app as celery_app
from tests.conftest import assert_error
from tests.cron.conftest import RUN_LABEL, ctx_of, finished, started, tick_until, wait_until
from tests.support import TEST_RUN_LABEL


def run_now(cron_world, job: CronJob) -> CronRun:
    return cron_job_run_now(ctx=ctx_of(cron_world.world), job=job)


def events(kind: str | None = None) -> list[PlatformEvent]:
    queryset = PlatformEvent.objects.order_by("id")
    return list(queryset.filter(kind=kind) if kind else queryset)


def api(cron_world) -> str:
    return f"/api/v1/teams/{cron_world.world.team.slug}"


# --- outcomes --------------------------------------------------------------------------------------
def test_a_run_succeeds_with_exit_zero_and_records_its_log_tail(cron_world):
    script = "echo hello from cron; echo to stderr >&2; echo $PANDASTACK_CRON_JOB $PANDASTACK_CRON_RUN"
    job = cron_world.job("report", command=["sh", "-c", script])
    run = finished(run_now(cron_world, job))

    assert (run.status, run.exit_code, run.reason) == (RunStatus.SUCCEEDED, 0, "")
    # Both streams; the engine stamps each stream's lines as it reads them, so only each stream's
    # own order is certain.
    lines = run.log_tail.splitlines()
    assert sorted(lines) == sorted(["hello from cron", "to stderr", f"report {run.pk}"])
    assert lines.index("hello from cron") < lines.index(f"report {run.pk}")
    assert run.image == cron_world.image
    assert run.started_at <= run.finished_at
    assert run.duration_seconds == (run.finished_at - run.started_at).total_seconds()
    assert cron_world.containers() == []  # the finished run's container is removed
    assert events() == []


def test_a_failing_command_records_its_exit_code_and_emits_run_failed(cron_world, client_for):
    job = cron_world.job("failing", command=["sh", "-c", "echo boom; exit 3"])
    run = finished(run_now(cron_world, job))

    assert (run.status, run.exit_code, run.reason) == (RunStatus.FAILED, 3, "exited with code 3")
    assert run.log_tail == "boom"
    [event] = events()
    assert (event.kind, event.severity, event.subject_id, event.team_id) == (
        "cron.run_failed",
        "error",
        str(job.pk),
        cron_world.world.team.pk,
    )
    assert event.data == {"run": run.pk, "attempt": 1, "exit_code": 3, "status": "failed"}
    assert f"failing: run {run.pk} failed: exited with code 3" == event.message
    assert CronRun.objects.filter(job=job).count() == 1  # no retries asked for
    assert cron_world.containers() == []

    # The one place events are read: the team's events API, filterable by kind, for any member.
    viewer = client_for(cron_world.world, "viewer")
    listed = viewer.get(f"{api(cron_world)}/events/", {"kind": "cron.run_failed"})
    assert listed.status_code == 200, listed.json()
    assert [(row["kind"], row["subject_label"], row["data"]["exit_code"]) for row in listed.json()["results"]] == [
        ("cron.run_failed", "failing", 3)
    ]
    assert viewer.get(f"{api(cron_world)}/events/", {"kind": "cron.run_missed"}).json()["results"] == []


def test_a_hanging_command_is_killed_at_its_timeout(cron_world):
    job = cron_world.job("hangs", command=["sleep", "60"], timeout_seconds=1)
    run = started(run_now(cron_world, job))
    assert run.status == RunStatus.RUNNING

    container = cron_world.container_of(run)
    assert container is not None and container.status == "running"
    assert container.labels[RUN_LABEL] == str(run.pk)
    assert container.labels["io.pandastack.cron-job"] == str(job.pk)
    assert container.labels["io.pandastack.team"] == cron_world.world.team.slug
    assert container.labels[TEST_RUN_LABEL] == cron_world.run_id
    assert "io.pandastack.managed" not in container.labels  # the app reconciler leaves it alone

    # Just before its timeout it keeps running; the first tick after it, it is killed.
    tick(run.started_at + timedelta(seconds=0.9))
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    run = finished(run, timeout=10)

    assert run.status == RunStatus.TIMED_OUT
    assert run.reason == "killed after its timeout of 1s"
    assert run.exit_code == 137  # SIGKILL: `docker stop -t 0`
    assert 1.0 < run.duration_seconds < 3.0, run.duration_seconds
    assert cron_world.container_of(run) is None
    [event] = events()
    assert (event.kind, event.severity, event.data["status"]) == ("cron.run_timed_out", "error", "timed_out")


def test_a_missing_image_fails_the_run_with_the_engines_reason(cron_world):
    job = cron_world.job("no-image", image="127.0.0.1:9/missing:v1")
    run = finished(run_now(cron_world, job))
    assert run.status == RunStatus.FAILED
    assert "127.0.0.1:9/missing:v1" in run.reason
    assert [e.kind for e in events()] == ["cron.run_failed"]


def test_a_container_that_disappears_fails_the_run_once_its_start_is_stale(cron_world):
    job = cron_world.job("vanishes", command=["sleep", "60"])
    run = started(run_now(cron_world, job))
    cron_world.engine.remove(run.container_name)

    # Right after the start it may just not be created yet (by another scheduler): no verdict.
    tick(run.started_at + timedelta(seconds=1))
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING

    tick(run.started_at + timedelta(seconds=settings.PANDASTACK_WORKER_STALE_SECONDS + 1))
    run.refresh_from_db()
    assert (run.status, run.reason) == (RunStatus.FAILED, "the run's container disappeared")
    assert [e.kind for e in events()] == ["cron.run_failed"]


def test_a_run_claimed_by_a_scheduler_that_died_before_naming_its_container_is_retried(cron_world):
    # Killed between claiming the run and recording its container: nothing runs for it.
    job = cron_world.job("orphaned", command=["sh", "-c", "echo second attempt"], retries=1, retry_backoff_seconds=0)
    started_at = timezone.now()
    run = CronRun.objects.create(
        team=job.team, job=job, trigger=Trigger.MANUAL, status=RunStatus.RUNNING, started_at=started_at
    )

    tick(started_at + timedelta(seconds=1))  # perhaps another scheduler is still starting it
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING

    tick(started_at + timedelta(seconds=settings.PANDASTACK_WORKER_STALE_SECONDS + 1))
    run.refresh_from_db()
    assert (run.status, run.reason) == (
        RunStatus.FAILED,
        "the run's container never started (its scheduler stopped while starting it)",
    )
    assert [e.kind for e in events()] == ["cron.run_failed"]
    retry = finished(CronRun.objects.get(job=job, attempt=2))
    assert (retry.status, retry.log_tail) == (RunStatus.SUCCEEDED, "second attempt")


def test_a_container_created_but_never_started_fails_the_run_once_its_starter_is_silent(cron_world):
    # Killed between creating the container and starting it.
    job = cron_world.job("half-started")
    started_at = timezone.now()
    run = CronRun.objects.create(
        team=job.team, job=job, trigger=Trigger.MANUAL, status=RunStatus.RUNNING, started_at=started_at
    )
    run.container_name = f"ps-cron-{job.team.slug}-{job.name}-{run.pk}"
    run.save(update_fields=["container_name"])
    labels = {TEST_RUN_LABEL: cron_world.run_id, RUN_LABEL: str(run.pk)}
    cron_world.engine.client.containers.create(cron_world.image, ["true"], name=run.container_name, labels=labels)

    tick(started_at + timedelta(seconds=1))
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING

    tick(started_at + timedelta(seconds=settings.PANDASTACK_WORKER_STALE_SECONDS + 1))
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.reason == "the run's container never started (its scheduler stopped while starting it)"
    assert cron_world.containers() == []


def test_a_run_finished_elsewhere_while_its_container_was_created_leaves_nothing_running(cron_world):
    # Scheduler A claimed the run; while it created the container, scheduler B finished the run
    # (replaced it). A must not leave a container running that nobody reaps.
    job = cron_world.job("raced", command=["sleep", "60"])
    run = CronRun.objects.create(team=job.team, job=job, trigger=Trigger.MANUAL, status=RunStatus.CANCELLED)
    run = CronRun.objects.select_related("job__team", "job__project").get(pk=run.pk)

    scheduler._start_container(run)

    assert cron_world.containers() == []


# --- concurrency policies ---------------------------------------------------------------------------
def test_forbid_skips_a_run_that_would_overlap(cron_world):
    job = cron_world.job("forbid", command=["sleep", "60"], concurrency_policy=ConcurrencyPolicy.FORBID)
    first = started(run_now(cron_world, job))
    job.next_run_at = timezone.now()
    job.save()

    summary = tick()

    assert (summary.scheduled, summary.skipped, summary.started) == (1, 1, 0)
    second = CronRun.objects.get(job=job, trigger=Trigger.SCHEDULE)
    assert second.status == RunStatus.SKIPPED
    assert second.reason == "the previous run was still running (policy: forbid)"
    assert second.started_at is None and second.finished_at is not None
    first.refresh_from_db()
    assert first.status == RunStatus.RUNNING
    assert [c.labels[RUN_LABEL] for c in cron_world.containers()] == [str(first.pk)]
    [event] = events()
    assert (event.kind, event.severity, event.data["run"]) == ("cron.run_skipped", "warning", second.pk)


def test_forbid_does_not_skip_when_the_previous_run_has_already_exited(cron_world):
    job = cron_world.job("quick", command=["true"], concurrency_policy=ConcurrencyPolicy.FORBID)
    first = started(run_now(cron_world, job))
    # Its container exits between two ticks: the scheduler has not seen it yet.
    wait_until(lambda: cron_world.container_of(first).status == "exited")
    job.next_run_at = timezone.now()
    job.save()

    summary = tick()

    assert (summary.scheduled, summary.skipped, summary.started) == (1, 0, 1)
    first.refresh_from_db()
    assert first.status == RunStatus.SUCCEEDED
    assert CronRun.objects.get(job=job, trigger=Trigger.SCHEDULE).status != RunStatus.SKIPPED


def test_replace_stops_the_running_run_and_starts_the_new_one(cron_world):
    job = cron_world.job("replace", command=["sleep", "60"], concurrency_policy=ConcurrencyPolicy.REPLACE)
    first = started(run_now(cron_world, job))
    second = run_now(cron_world, job)

    summary = tick()

    assert summary.started == 1
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.reason) == (RunStatus.CANCELLED, "replaced by a newer run (policy: replace)")
    assert first.finished_at is not None
    assert second.status == RunStatus.RUNNING
    assert [c.labels[RUN_LABEL] for c in cron_world.containers()] == [str(second.pk)]
    assert events() == []  # a replaced run is not a failure


def test_allow_runs_overlapping_runs_side_by_side(cron_world):
    job = cron_world.job("allow", command=["sleep", "60"], concurrency_policy=ConcurrencyPolicy.ALLOW)
    first = started(run_now(cron_world, job))
    second = started(run_now(cron_world, job))

    first.refresh_from_db()
    assert (first.status, second.status) == (RunStatus.RUNNING, RunStatus.RUNNING)
    assert sorted(c.labels[RUN_LABEL] for c in cron_world.containers()) == sorted([str(first.pk), str(second.pk)])


# --- retries -----------------------------------------------------------------------------------------
def test_a_failed_scheduled_run_is_retried_once_as_attempt_two(cron_world):
    job = cron_world.job("flaky", command=["sh", "-c", "exit 1"], retries=1, retry_backoff_seconds=0)
    job.next_run_at = timezone.now()
    job.save()

    tick_until(lambda: CronRun.objects.filter(job=job, attempt=2, status=RunStatus.FAILED).exists())
    tick()

    runs = list(CronRun.objects.filter(job=job).order_by("attempt"))
    assert [(r.trigger, r.attempt, r.status, r.exit_code) for r in runs] == [
        (Trigger.SCHEDULE, 1, RunStatus.FAILED, 1),
        (Trigger.RETRY, 2, RunStatus.FAILED, 1),
    ]
    assert runs[1].scheduled_for == runs[0].scheduled_for  # the same slot's second attempt
    assert [(e.kind, e.data["attempt"]) for e in events()] == [("cron.run_failed", 1), ("cron.run_failed", 2)]


def test_retry_backoff_doubles_with_each_attempt(cron_world):
    job = cron_world.job("backoff", command=["sh", "-c", "exit 2"], retries=2, retry_backoff_seconds=30)
    first = finished(run_now(cron_world, job))

    second = CronRun.objects.get(job=job, attempt=2)
    assert (second.trigger, second.status) == (Trigger.RETRY, RunStatus.PENDING)
    assert abs((second.not_before - first.finished_at).total_seconds() - 30) < 2
    assert tick() == TickSummary()  # not before its time

    summary = tick(second.not_before)
    assert summary.started == 1
    second = finished(second)
    assert second.status == RunStatus.FAILED

    third = CronRun.objects.get(job=job, attempt=3)
    assert abs((third.not_before - second.finished_at).total_seconds() - 60) < 2
    tick(third.not_before)
    assert finished(third).status == RunStatus.FAILED
    assert not CronRun.objects.filter(job=job, attempt=4).exists()  # retries=2: three attempts in all


# --- manual runs, app jobs, retention ---------------------------------------------------------------------
def test_run_now_through_the_api_starts_within_one_tick(cron_world, client_for):
    job = cron_world.job("manual", command=["sh", "-c", "echo by hand"])
    developer = client_for(cron_world.world, "developer")

    response = developer.post(f"{api(cron_world)}/cron-jobs/manual/run/")

    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["trigger"], body["status"], body["scheduled_for"], body["attempt"]) == ("manual", "pending", None, 1)
    assert AuditEvent.objects.filter(action="cron.run", target_id=str(job.pk)).count() == 1

    assert tick().started == 1
    run = CronRun.objects.get(pk=body["id"])
    assert run.status in (RunStatus.RUNNING, RunStatus.SUCCEEDED) and run.started_at is not None
    assert finished(run).log_tail == "by hand"

    logs = developer.get(f"{api(cron_world)}/cron-jobs/manual/runs/{run.pk}/logs/")
    assert logs.status_code == 200
    assert logs.json() == {"id": run.pk, "status": "succeeded", "log": "by hand"}


def test_logs_of_a_running_run_come_live_from_its_container(cron_world, client_for):
    job = cron_world.job("live-logs", command=["sh", "-c", "echo first line; sleep 60"])
    run = started(run_now(cron_world, job))
    developer = client_for(cron_world.world, "developer")
    url = f"{api(cron_world)}/cron-jobs/{job.name}/runs/{run.pk}/logs/"

    body = tick_until(lambda: (r := developer.get(url).json()) and "first line" in r["log"] and r, timeout=10)

    assert body == {"id": run.pk, "status": "running", "log": "first line"}


def make_live_app(cron_world) -> App:
    """An app whose live release #1 runs the test image (its variables recorded as no release yet)."""
    world = cron_world.world
    app = App.objects.create(team=world.team, project=world.project, name="api")
    deployment = Deployment.objects.create(
        team=world.team, app=app, number=1, image=cron_world.image, status=DeploymentStatus.LIVE, config={}
    )
    app.live_deployment = deployment
    app.save(update_fields=["live_deployment"])
    return app


def test_an_app_job_runs_the_live_release_image_with_its_variables(cron_world):
    ctx = ctx_of(cron_world.world)
    app = make_live_app(cron_world)
    result = variables_set(
        ctx=ctx, scope=Scope(level=Level.APP, app=app), values={"MY_VAR": "from-the-app"}, secret=True, restart=False
    )
    # What the release recorded when it was deployed: the version of each variable it runs with.
    app.live_deployment.config = {"variables": {"MY_VAR": result.variables[0].current_id}}
    app.live_deployment.save(update_fields=["config"])
    # Set after the release: the job runs with what the live release runs with, not with this.
    variables_set(ctx=ctx, scope=Scope(level=Level.TEAM), values={"LATER_VAR": "not-yet-deployed"}, restart=False)
    job = cron_world.job("app-job", image="", app=app, command=["sh", "-c", "echo MY_VAR=$MY_VAR LATER=$LATER_VAR"])

    run = finished(run_now(cron_world, job))

    assert (run.status, run.image) == (RunStatus.SUCCEEDED, cron_world.image)
    # The secret reached the container (the mask stands exactly where its value was printed) and
    # not the stored log (apps.secrets.masking).
    assert run.log_tail == "MY_VAR=*** LATER="


def test_an_app_job_without_a_live_release_fails_with_the_reason(cron_world, client_for):
    world = cron_world.world
    app = App.objects.create(team=world.team, project=world.project, name="api")
    job = cron_world.job("orphan", image="", app=app)
    job.next_run_at = timezone.now()
    job.save()

    tick()

    run = CronRun.objects.get(job=job)
    assert (run.status, run.reason) == (RunStatus.FAILED, "app api has no live release to run the job with")
    assert [e.kind for e in events()] == ["cron.run_failed"]
    # "Run now" refuses up front.
    response = client_for(world, "developer").post(f"{api(cron_world)}/cron-jobs/orphan/run/")
    assert_error(response, 409, "no_live_release")
    assert CronRun.objects.filter(job=job).count() == 1


def test_history_is_pruned_to_the_plans_cron_history_runs(cron_world):
    plan = cron_world.world.team.plan
    plan.cron_history_runs = 3
    plan.save()
    job = cron_world.job("pruned", command=["true"])
    old = [
        CronRun.objects.create(team=job.team, job=job, trigger=Trigger.MANUAL, status=RunStatus.SUCCEEDED)
        for _ in range(4)
    ]

    run = finished(run_now(cron_world, job))

    assert list(CronRun.objects.filter(job=job).values_list("pk", flat=True)) == [run.pk, old[3].pk, old[2].pk]


def test_deleting_a_job_stops_its_running_run(cron_world, client_for, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)  # the task runs here, not in a worker
    job = cron_world.job("doomed", command=["sleep", "60"])
    run = started(run_now(cron_world, job))
    assert cron_world.container_of(run) is not None
    developer = client_for(cron_world.world, "developer")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = developer.delete(f"{api(cron_world)}/cron-jobs/doomed/", {"confirm": "doomed"}, format="json")

    assert response.status_code == 204
    assert len(callbacks) == 1
    assert not CronJob.objects.filter(pk=job.pk).exists()
    assert not CronRun.objects.filter(pk=run.pk).exists()
    assert cron_world.containers() == []


def test_a_real_failed_run_fires_the_jobs_alert_rule(cron_world):
    """The whole path on the real engine: a run exits 3, the scheduler records `cron.run_failed`,
    and the next evaluation fires the job's rule (notifying its channel once)."""
    from apps.alerts.evaluation import evaluate_rules
    from apps.alerts.models import AlertRule, Delivery
    from apps.alerts.rules import rule_create
    from apps.alerts.services import channel_create

    ctx = ctx_of(cron_world.world)
    job = cron_world.job("nightly", command=["sh", "-c", "exit 3"])
    channel, _ = channel_create(ctx=ctx, name="ops", kind="email", target="ops@example.com")
    rule_create(
        ctx=ctx, name="nightly-failed", scope="cron_job", cron_job=job, metric="event", event_kind="cron.run_failed",
        operator="gte", threshold=1, window_seconds=600, channels=[channel],
    )  # fmt: skip
    evaluate_rules()
    assert AlertRule.objects.get().state == "ok"
    assert finished(run_now(cron_world, job)).status == RunStatus.FAILED
    evaluate_rules()
    evaluate_rules()
    assert AlertRule.objects.get().state == "firing"
    assert Delivery.objects.filter(trigger="alert", channel=channel).count() == 1
