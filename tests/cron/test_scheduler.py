"""The scheduler's tick with a controlled clock: due slots become runs (exactly those), late ones
become missed runs and events, suspended jobs stay quiet, and however many schedulers tick at once
or one after the other, each slot runs once.

Tests that only look at which runs are made use a clock far from the real one and stop before a
run would start (a missed run starts nothing; `_schedule_due` is the first step of `tick`); tests
that let runs start use the real Docker Engine and a clock next to the real one."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.cron import scheduler
from apps.cron.models import CronJob, CronRun, RunStatus, Trigger
from apps.cron.scheduler import TickSummary, tick
from apps.cron.services import cron_job_set_suspended
from apps.deployments import orchestrator
from apps.events.models import PlatformEvent
from tests.cron.conftest import ctx_of, finished, make_job

FIXED = datetime(2030, 1, 7, 12, 0, tzinfo=UTC)  # a Monday, noon UTC


def schedule_due(now: datetime) -> TickSummary:
    """The tick's first step alone: slots become runs, nothing starts."""
    summary = TickSummary()
    scheduler._schedule_due(now, summary)
    return summary


# --- which slots become runs (no containers) -----------------------------------------------------
@pytest.mark.parametrize(
    ("late", "status"),
    [(-1, None), (0, RunStatus.PENDING), (30, RunStatus.PENDING), (60, RunStatus.PENDING), (61, RunStatus.MISSED)],
)
def test_a_slot_becomes_a_run_once_due_and_missed_after_its_starting_deadline(team_a, late, status):
    job = make_job(team_a, starting_deadline_seconds=60, next_run_at=FIXED)
    now = FIXED + timedelta(seconds=late)

    summary = schedule_due(now)

    runs = list(CronRun.objects.filter(job=job))
    if status is None:
        assert runs == []
        assert summary == TickSummary()
        job.refresh_from_db()
        assert job.next_run_at == FIXED
        return
    [run] = runs
    assert (run.status, run.trigger, run.scheduled_for, run.attempt) == (status, Trigger.SCHEDULE, FIXED, 1)
    assert (summary.scheduled, summary.missed) == ((1, 0) if status == RunStatus.PENDING else (0, 1))


def test_due_jobs_get_one_run_for_their_slot_and_advance_to_the_next(team_a):
    due = make_job(team_a, "due", schedule="*/5 * * * *", next_run_at=FIXED - timedelta(seconds=10))
    exactly = make_job(team_a, "exactly", schedule="0 * * * *", next_run_at=FIXED)
    not_yet = make_job(team_a, "not-yet", next_run_at=FIXED + timedelta(seconds=1))
    unscheduled = make_job(team_a, "unscheduled", next_run_at=None)

    summary = schedule_due(FIXED)

    assert summary.scheduled == 2
    assert sorted(CronRun.objects.values_list("job__name", "scheduled_for", "status")) == [
        ("due", FIXED - timedelta(seconds=10), RunStatus.PENDING),
        ("exactly", FIXED, RunStatus.PENDING),
    ]
    for job in (due, exactly, not_yet, unscheduled):
        job.refresh_from_db()
    # Each advances from its slot, not from now: a late tick does not shift the schedule.
    assert due.next_run_at == datetime(2030, 1, 7, 12, 0, tzinfo=UTC)
    assert exactly.next_run_at == datetime(2030, 1, 7, 13, 0, tzinfo=UTC)
    assert not_yet.next_run_at == FIXED + timedelta(seconds=1)
    assert unscheduled.next_run_at is None


def test_scheduling_twice_at_the_same_time_makes_one_run_per_slot(team_a):
    job = make_job(team_a, next_run_at=FIXED)
    first = schedule_due(FIXED)
    second = schedule_due(FIXED)
    assert (first.scheduled, second.scheduled) == (1, 0)
    assert CronRun.objects.filter(job=job).count() == 1


def test_a_slot_that_already_has_a_run_is_not_run_again(team_a):
    # As after a scheduler that made the slot's run while another still read the old next_run_at.
    job = make_job(team_a, next_run_at=FIXED)
    existing = CronRun.objects.create(
        team=team_a.team, job=job, trigger=Trigger.SCHEDULE, scheduled_for=FIXED, status=RunStatus.SUCCEEDED
    )

    summary = tick(FIXED + timedelta(seconds=5))

    assert summary == TickSummary()
    assert list(CronRun.objects.filter(job=job)) == [existing]
    job.refresh_from_db()
    assert job.next_run_at == FIXED + timedelta(minutes=1)


def test_a_missed_slot_is_recorded_with_an_event_and_the_schedule_catches_up(team_a):
    job = make_job(team_a, "nightly", schedule="0 * * * *", starting_deadline_seconds=60, next_run_at=FIXED)
    now = FIXED + timedelta(hours=2, minutes=30)  # the scheduler was down for 2.5 hours

    summary = tick(now)

    assert summary == TickSummary(missed=1)
    [run] = CronRun.objects.filter(job=job)
    assert run.status == RunStatus.MISSED
    assert run.scheduled_for == FIXED
    assert run.finished_at == now
    assert run.started_at is None and run.container_name == ""
    assert "not started within 60s of 2030-01-07 12:00:00 UTC" in run.reason
    [event] = PlatformEvent.objects.filter(team=team_a.team)
    assert event.kind == "cron.run_missed"
    assert event.severity == "warning"
    assert (event.subject_type, event.subject_id, event.subject_label) == ("cron.cronjob", str(job.pk), "nightly")
    assert event.data == {"run": run.pk, "attempt": 1, "exit_code": None, "status": "missed"}
    assert "12:00 UTC run was missed" in event.message
    # One missed run for the outage, not one per lost slot; the next slot is after now.
    job.refresh_from_db()
    assert job.next_run_at == datetime(2030, 1, 7, 15, 0, tzinfo=UTC)
    assert job.next_run_at > now
    assert tick(now) == TickSummary()


def test_after_an_outage_the_slot_still_within_its_deadline_runs(team_a):
    # Down from 11:50 to 12:00:20: the 11:50 slot is missed, but 12:00 is only 20s late.
    job = make_job(team_a, starting_deadline_seconds=60, next_run_at=FIXED - timedelta(minutes=10))
    now = FIXED + timedelta(seconds=20)

    first = schedule_due(now)
    second = schedule_due(now)

    assert (first.missed, second.scheduled) == (1, 1)
    assert list(CronRun.objects.filter(job=job).order_by("id").values_list("scheduled_for", "status")) == [
        (FIXED - timedelta(minutes=10), RunStatus.MISSED),
        (FIXED, RunStatus.PENDING),
    ]
    job.refresh_from_db()
    assert job.next_run_at == FIXED + timedelta(minutes=1)


def test_two_schedulers_together_schedule_every_due_slot_in_the_same_tick(transactional_db, team_a):
    # Between them, two schedulers ticking at once make a run for every due slot: one takes the
    # locked jobs, the other skips them. (Locking the joined team rows as well used to make each
    # skip rows the other had half-locked, leaving slots for a later tick now and then.)
    jobs = [make_job(team_a, f"job-{i}", schedule="0 0 1 1 *") for i in range(20)]
    short_rounds = []

    def scheduler_process(barrier: threading.Barrier, now: datetime, scheduled: list[int]) -> None:
        try:
            barrier.wait(timeout=10)
            scheduled.append(schedule_due(now).scheduled)
        finally:
            connection.close()

    for round_number in range(30):
        now = timezone.now()
        CronJob.objects.update(next_run_at=now - timedelta(seconds=1))
        scheduled: list[int] = []
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=scheduler_process, args=(barrier, now, scheduled)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        if sum(scheduled) != len(jobs):
            short_rounds.append((round_number, scheduled))
    assert short_rounds == []
    assert CronRun.objects.count() == 30 * len(jobs)


def test_suspended_jobs_produce_nothing(team_a):
    job = make_job(team_a, suspended=True, next_run_at=FIXED - timedelta(hours=1))

    assert tick(FIXED) == TickSummary()

    assert not CronRun.objects.exists()
    assert not PlatformEvent.objects.exists()
    job.refresh_from_db()
    assert job.next_run_at == FIXED - timedelta(hours=1)


def test_resume_computes_the_next_slot_from_now_and_replays_nothing(team_a):
    job = make_job(team_a, schedule="0 * * * *", suspended=True, next_run_at=FIXED - timedelta(days=400))
    before = timezone.now()

    cron_job_set_suspended(ctx=ctx_of(team_a), job=job, suspended=False)

    job.refresh_from_db()
    assert job.suspended is False
    assert before < job.next_run_at <= before + timedelta(hours=1)
    assert (job.next_run_at.minute, job.next_run_at.second) == (0, 0)
    assert tick() == TickSummary()
    assert not CronRun.objects.exists()
    assert AuditEvent.objects.filter(action="cron.resume").count() == 1


def test_suspending_keeps_next_run_at_and_is_audited_once(team_a):
    job = make_job(team_a, next_run_at=FIXED)
    ctx = ctx_of(team_a)
    cron_job_set_suspended(ctx=ctx, job=job, suspended=True)
    cron_job_set_suspended(ctx=ctx, job=job, suspended=True)
    job.refresh_from_db()
    assert (job.suspended, job.next_run_at) == (True, FIXED)
    assert AuditEvent.objects.filter(action="cron.suspend").count() == 1


def test_a_retry_waits_for_its_not_before(team_a):
    job = make_job(team_a)
    run = CronRun.objects.create(
        team=team_a.team, job=job, trigger=Trigger.RETRY, attempt=2, not_before=FIXED + timedelta(seconds=30)
    )
    assert tick(FIXED + timedelta(seconds=29)) == TickSummary()
    run.refresh_from_db()
    assert (run.status, run.started_at) == (RunStatus.PENDING, None)


# --- due runs start (real Docker Engine) ---------------------------------------------------------
def test_tick_starts_exactly_the_due_runs(cron_world):
    now = timezone.now()
    yearly = "0 0 1 1 *"  # the slot after the one set here is far away
    due = cron_world.job("due", schedule=yearly, next_run_at=now - timedelta(seconds=5))
    exactly = cron_world.job("exactly", schedule=yearly, next_run_at=now)
    not_yet = cron_world.job("not-yet", schedule=yearly, next_run_at=now + timedelta(seconds=1))

    summary = tick(now)
    again = tick(now)

    assert (summary.scheduled, summary.started, again.scheduled, again.started) == (2, 2, 0, 0)
    runs = {run.job.name: run for run in CronRun.objects.select_related("job")}
    assert set(runs) == {"due", "exactly"}
    assert runs["due"].scheduled_for == due.next_run_at
    assert runs["exactly"].scheduled_for == exactly.next_run_at
    for run in runs.values():
        assert run.status != RunStatus.PENDING and run.started_at is not None
        assert run.container_name == f"ps-cron-{cron_world.world.team.slug}-{run.job.name}-{run.pk}"

    later = tick(now + timedelta(seconds=1))
    assert (later.scheduled, later.started) == (1, 1)
    assert CronRun.objects.get(job=not_yet).scheduled_for == not_yet.next_run_at
    for run in CronRun.objects.all():
        assert finished(run).status == RunStatus.SUCCEEDED


def test_two_schedulers_ticking_together_make_one_run_per_slot(transactional_db, cron_world):
    # Yearly jobs whose slot each round sets just before "now": one due slot per job and round.
    # allow: whether a previous round's run was reaped yet must not matter here.
    jobs = [cron_world.job(f"job-{i}", schedule="0 0 1 1 *", concurrency_policy="allow") for i in range(6)]
    # Up to 18 runs at once: above the default plan's cap on concurrent runs (tests/security covers the cap).
    cron_world.world.team.plan.max_concurrent_cron_runs = 50
    cron_world.world.team.plan.save()
    # The team's network exists before: two engines creating the same network at the same moment is
    # a race of the runtime's ensure_network (duplicate networks, "ambiguous" names), not of the cron
    # scheduler; this test is about slots and claims.
    slug = cron_world.world.team.slug
    orchestrator.engine().ensure_network(orchestrator.team_network(slug), orchestrator.network_labels(slug))
    rounds = 3
    summaries: list[TickSummary] = []
    errors: list[BaseException] = []

    def scheduler_process(barrier: threading.Barrier, now: datetime) -> None:
        try:
            barrier.wait(timeout=10)
            summaries.append(tick(now))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            connection.close()  # each thread had its own connection to the test database

    for _ in range(rounds):
        now = timezone.now()
        CronJob.objects.filter(pk__in=[job.pk for job in jobs]).update(next_run_at=now - timedelta(seconds=1))
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=scheduler_process, args=(barrier, now)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors

    # Each slot: one run, started by one of the two schedulers.
    problems = list(CronRun.objects.exclude(status=RunStatus.RUNNING).values_list("job__name", "status", "reason"))
    assert sum(s.scheduled for s in summaries) == len(jobs) * rounds, (summaries, problems)
    assert sum(s.started for s in summaries) == len(jobs) * rounds, (summaries, problems)
    for job in jobs:
        slots = list(CronRun.objects.filter(job=job).values_list("scheduled_for", flat=True))
        assert len(slots) == rounds == len(set(slots)), (job.name, slots)
    for run in CronRun.objects.all():
        assert finished(run).status == RunStatus.SUCCEEDED, (run.status, run.reason)
