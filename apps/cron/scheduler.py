"""The cron scheduler: one `tick()` schedules due slots, starts pending runs and reaps finished
ones. `manage.py run_scheduler` calls it twice a second; any number of schedulers may run at once
(row locks with SKIP LOCKED, a unique run per slot, and a compare-and-set claim on each run make
every slot run exactly once).

A scheduler that is stopped or killed loses nothing: a run's container keeps running without it and
the next tick of any scheduler reaps it with its real exit code. A run whose scheduler died while
starting it (claimed, its image pulling, its container created but not started) is told from a slow
start by the starter's heartbeat (apps.core.leases): no heartbeat for PANDASTACK_WORKER_STALE_SECONDS
and the run fails with the reason, its half-made container removed, never started twice.

At 10,000 jobs a tick stays a few queries plus a fixed few per run it starts or ends: due slots
become runs in one insert, pending runs are claimed in one transaction, what their containers need
is read once for all of them, and running runs are reaped from one engine listing."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.bulk import bulk_set
from apps.core.leases import lease, stale_before
from apps.cron.models import FINISHED, ConcurrencyPolicy, CronJob, CronRun, RunStatus, Trigger
from apps.cron.schedule import next_run
from apps.deployments import orchestrator
from apps.events.models import Severity
from apps.events.services import event_emit
from apps.registries.selectors import credentials_for, image_pull_for
from apps.runtime.engine import LABEL_PREFIX, ContainerSpec, EngineError, ImagePull, Workload
from apps.secrets.crypto import DecryptionFailed
from apps.secrets.selectors import (
    environment_from_versions,
    log_masker_for_cron_job,
    secret_values_for_apps,
    versions_of,
)
from apps.teams.models import Team
from apps.teams.quotas import Limit, plan_cap

log = logging.getLogger(__name__)
LOG_TAIL_LINES = 50


@dataclass
class TickSummary:
    scheduled: int = 0
    missed: int = 0
    started: int = 0
    skipped: int = 0
    finished: int = 0


def tick(now: datetime | None = None) -> TickSummary:
    now = now or timezone.now()
    summary = TickSummary()
    _schedule_due(now, summary)
    # Reap before starting: a run whose container exited since the last tick must not make the
    # forbid policy skip the next one.
    _reap_running(now, summary)
    _start_pending(now, summary)
    return summary


# --- 1. slots become runs ---------------------------------------------------------------------------
def job_first_run(job: CronJob, now: datetime | None = None) -> datetime:
    return next_run(job.schedule, job.timezone, now or timezone.now())


def _schedule_due(now: datetime, summary: TickSummary) -> None:
    # Most ticks find nothing due: ask first, without a transaction. On SQLite every transaction takes
    # the database's one write lock (IMMEDIATE), so an idle scheduler would otherwise queue behind, and
    # hold up, every other writer twice a second.
    if not CronJob.objects.filter(suspended=False, next_run_at__lte=now).exists():
        return
    with transaction.atomic():
        # Lock the job rows only ("self"): locking the joined team row too would make two schedulers
        # skip each other's half-locked rows (and block every insert that references the team).
        due = list(
            CronJob.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(suspended=False, next_run_at__lte=now)
            .select_related("team")
        )
        runs = [_slot_run(job, now) for job in due]
        try:
            with transaction.atomic():
                created = CronRun.objects.bulk_create(runs)  # every due slot at once: the usual case
        except IntegrityError:
            # Some slot has its run already (another scheduler made it while this one still read the
            # old next_run_at): one at a time, each in its own savepoint.
            created = [run for run in runs if _create_run(run)]
        for run in created:
            if run.status == RunStatus.MISSED:
                summary.missed += 1
                slot = run.scheduled_for
                _emit(run, "cron.run_missed", Severity.WARNING, f"{run.job.name}: the {slot:%H:%M} UTC run was missed")
            else:
                summary.scheduled += 1
        schedules: dict[int, dict[str, object]] = {}
        for job in due:
            slot = job.next_run_at
            missed = (now - slot).total_seconds() > job.starting_deadline_seconds
            # After a miss, catch up instead of replaying every lost slot, but keep a slot that is still
            # within its starting deadline (it runs on the next tick): it is not missed, so not lost.
            catch_up = now - timedelta(seconds=job.starting_deadline_seconds)
            try:
                job.next_run_at = next_run(job.schedule, job.timezone, catch_up if missed else slot)
            except (
                ValueError,
                KeyError,
            ) as exc:  # a row that bypassed validation (ZoneInfoNotFoundError is a KeyError)
                # One broken job must not stop the others: suspend it and say why.
                job.suspended, job.next_run_at = True, None
                event_emit(
                    team=job.team,
                    kind="cron.job_suspended",
                    subject=job,
                    message=f"{job.name}: suspended, its schedule cannot be evaluated ({exc})",
                    severity=Severity.ERROR,
                )
            schedules[job.pk] = {"next_run_at": job.next_run_at, "suspended": job.suspended}
        bulk_set(CronJob, schedules, ["next_run_at", "suspended"], updated_at=timezone.now())


def _slot_run(job: CronJob, now: datetime) -> CronRun:
    """The run of the job's due slot: pending, or missed when it is past the starting deadline."""
    slot = job.next_run_at
    missed = (now - slot).total_seconds() > job.starting_deadline_seconds
    return CronRun(
        team=job.team,
        job=job,
        trigger=Trigger.SCHEDULE,
        scheduled_for=slot,
        status=RunStatus.MISSED if missed else RunStatus.PENDING,
        reason=f"not started within {job.starting_deadline_seconds}s of {slot:%Y-%m-%d %H:%M:%S} UTC" if missed else "",
        finished_at=now if missed else None,
    )


def _create_run(run: CronRun) -> bool:
    try:
        with transaction.atomic():
            run.save(force_insert=True)
    except IntegrityError:
        return False  # another scheduler made this slot's run already
    return True


# --- 2. pending runs start -------------------------------------------------------------------------
def _start_pending(now: datetime, summary: TickSummary) -> None:
    pending = list(
        CronRun.objects.filter(status=RunStatus.PENDING)
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .select_related("job__team__plan", "job__app__live_deployment", "job__project")
        .order_by("id")
    )
    if not pending:
        return
    claimed, skipped, team_full = _claim_within_team_caps(pending)
    for run in skipped:
        summary.skipped += 1
        _emit(run, "cron.run_skipped", Severity.WARNING, f"{run.job.name}: skipped, previous run still running")
    for run in team_full:
        _wait_or_skip_at_team_cap(run, now, summary)
    for run in claimed:
        if run.job.concurrency_policy == ConcurrencyPolicy.REPLACE:
            for other in CronRun.objects.filter(job=run.job, status=RunStatus.RUNNING).exclude(pk=run.pk):
                _stop(other, RunStatus.CANCELLED, "replaced by a newer run (policy: replace)")
    if not claimed:
        return
    ids = [run.pk for run in claimed]

    def touch() -> None:
        CronRun.objects.filter(pk__in=ids, status=RunStatus.RUNNING).update(updated_at=timezone.now())

    # One heartbeat for every run this tick starts, until the last container runs: a slow image pull
    # is not mistaken for a dead scheduler by the others.
    with lease(None, holder="cron-start", touch=touch):
        summary.started += _start_claimed(claimed)


def _start_claimed(claimed: list[CronRun]) -> int:
    launches = _prepare(claimed)
    if len(claimed) > 1 and not connection.in_atomic_block:
        # Starting a container takes a few hundred milliseconds: the due runs start side by side so
        # the last one is not late. Each team's network first, once: concurrent creations of one
        # network would race.
        for slug in sorted({run.job.team.slug for run in claimed}):
            # On failure each run's own start reports the engine's error.
            with contextlib.suppress(EngineError):
                orchestrator.engine().ensure_network(orchestrator.team_network(slug), orchestrator.network_labels(slug))
    return sum(_side_by_side([functools.partial(_start, run, launches[run.pk]) for run in claimed]))


START_THREADS = 8
_FORBIDDEN = "the previous run was still running (policy: forbid)"


def _claim_within_team_caps(pending: list[CronRun]) -> tuple[list[CronRun], list[CronRun], list[CronRun]]:
    """pending -> running for the runs that may start: not while another run of the job runs
    (policy forbid: skipped), and only while the team runs fewer cron containers than its plan
    allows (the others wait, see _wait_or_skip_at_team_cap). Returns (claimed, skipped, team full).

    One transaction for all of them: the teams' rows are locked (FOR NO KEY UPDATE, in id order so
    two schedulers cannot deadlock; inserts that reference a team are not blocked) for the counts and
    the claims, so two schedulers cannot both take a team's last slot; the pending runs are locked
    with SKIP LOCKED, so a run another scheduler is deciding on is left to it."""
    claimed: list[CronRun] = []
    skipped: list[CronRun] = []
    team_full: list[CronRun] = []
    with transaction.atomic():
        teams = sorted({run.team_id for run in pending})
        list(Team.objects.select_for_update(no_key=True).filter(pk__in=teams).order_by("pk").values_list("pk"))
        ours = set(
            CronRun.objects.select_for_update(skip_locked=True)
            .filter(pk__in=[run.pk for run in pending], status=RunStatus.PENDING)
            .values_list("pk", flat=True)
        )
        in_team: Counter[int] = Counter()
        of_job: Counter[int] = Counter()
        for team_id, job_id in CronRun.objects.filter(team_id__in=teams, status=RunStatus.RUNNING).values_list(
            "team_id", "job_id"
        ):
            in_team[team_id] += 1
            of_job[job_id] += 1
        for run in pending:
            if run.pk not in ours:
                continue
            job = run.job
            if of_job[job.pk] and job.concurrency_policy == ConcurrencyPolicy.FORBID:
                skipped.append(run)
                continue
            # A replace run's predecessors are stopped as soon as it is claimed: they do not count.
            replaced = of_job[job.pk] if job.concurrency_policy == ConcurrencyPolicy.REPLACE else 0
            if in_team[job.team_id] - replaced >= job.team.plan.max_concurrent_cron_runs:
                team_full.append(run)
                continue
            in_team[job.team_id] += 1 - replaced
            of_job[job.pk] += 1 - replaced
            claimed.append(run)
        claimed_at = timezone.now()
        CronRun.objects.filter(pk__in=[run.pk for run in claimed]).update(
            status=RunStatus.RUNNING, started_at=claimed_at, updated_at=claimed_at
        )
        CronRun.objects.filter(pk__in=[run.pk for run in skipped]).update(
            status=RunStatus.SKIPPED, reason=_FORBIDDEN, finished_at=claimed_at
        )
    for run in claimed:
        run.status, run.started_at = RunStatus.RUNNING, claimed_at
    for run in skipped:
        run.status, run.reason, run.finished_at = RunStatus.SKIPPED, _FORBIDDEN, claimed_at
    return claimed, skipped, team_full


def _wait_or_skip_at_team_cap(run: CronRun, now: datetime, summary: TickSummary) -> None:
    """A run due while its team is at its cap stays queued (pending) until a slot frees, for at most its
    job's starting deadline after it became due; then it is skipped, with an event, like a run the
    forbid policy skips. Queued runs are bounded: one per schedule slot, and run-now is rate-limited."""
    job = run.job
    due = run.not_before or run.scheduled_for or run.created_at
    if (now - due).total_seconds() <= job.starting_deadline_seconds:
        return
    cap = job.team.plan.max_concurrent_cron_runs
    reason = (
        f"the team was running its plan's limit of {cap} concurrent cron runs (max_concurrent_cron_runs) "
        f"for the job's starting deadline of {job.starting_deadline_seconds}s"
    )
    if _finish_unstarted(run, RunStatus.SKIPPED, reason):
        summary.skipped += 1
        _emit(run, "cron.run_skipped", Severity.WARNING, f"{job.name}: skipped, {reason}")


def _start(run: CronRun, launch: _Launch | Exception) -> bool:
    try:
        _start_container(run, launch)
    except (EngineError, DecryptionFailed, ValueError) as exc:
        _finish(run, RunStatus.FAILED, reason=str(exc))
        return False
    return True


def _finish_unstarted(run: CronRun, status: str, reason: str) -> bool:
    return bool(
        CronRun.objects.filter(pk=run.pk, status=RunStatus.PENDING).update(
            status=status, reason=reason, finished_at=timezone.now()
        )
    )


@dataclass(frozen=True)
class _Launch:
    """What starting a run's container takes."""

    spec: ContainerSpec
    pull: ImagePull


def _prepare(runs: list[CronRun]) -> dict[int, _Launch | Exception]:
    """What starting each run's container takes — its image, its app's environment, the team's
    registry login — read for all the runs at once (or why it cannot start), and each run's image
    recorded (one statement)."""
    lives = [run.job.app.live_deployment for run in runs if run.job.app_id is not None]
    versions = versions_of((live.config.get("variables") or {}) for live in lives if live is not None)
    credentials = credentials_for(live.image for live in lives if live is not None)
    credentials += credentials_for(run.job.image for run in runs if run.job.app_id is None)
    launches: dict[int, _Launch | Exception] = {}
    images: dict[int, dict[str, str]] = {}
    for run in runs:
        job = run.job
        try:
            env: dict[str, str] = {}
            if job.app_id is not None:
                live = job.app.live_deployment
                if live is None:
                    raise ValueError(f"app {job.app.name} has no live release to run the job with")
                image = live.image
                env = environment_from_versions(live.config.get("variables") or {}, versions=versions)
            else:
                image = job.image
            name = f"ps-cron-{job.team.slug}-{job.name}-{run.pk}"
            # As for a deploy: with the team's registry login, and asking the registry again for a private host.
            pull = image_pull_for(team=job.team, image=image, credentials=credentials)
        except (DecryptionFailed, ValueError) as exc:
            launches[run.pk] = exc
            continue
        launches[run.pk] = _Launch(spec=_container_spec(run, name, image, env), pull=pull)
        images[run.pk] = {"image": image}
        run.image = image
    bulk_set(CronRun, images, ["image"])
    return launches


def _container_spec(run: CronRun, name: str, image: str, env: dict[str, str]) -> ContainerSpec:
    job = run.job
    return ContainerSpec(
        name=name,
        image=image,
        port=0,
        env={
            **env,
            "PANDASTACK_TEAM": job.team.slug,
            "PANDASTACK_CRON_JOB": job.name,
            "PANDASTACK_CRON_RUN": str(run.pk),
        },
        # Not "managed": the app reconciler leaves cron containers to the scheduler.
        labels={
            f"{LABEL_PREFIX}team": job.team.slug,
            f"{LABEL_PREFIX}cron-job": str(job.pk),
            f"{LABEL_PREFIX}cron-run": str(run.pk),
            **settings.PANDASTACK_EXTRA_LABELS,
        },
        network=orchestrator.team_network(job.team.slug),
        command=job.command,
        # The plan's caps, also for a job saved under a more generous plan than the team's current one.
        memory_mb=int(plan_cap(team=job.team, limit=Limit.MEMORY_MB_PER_APP, value=job.memory_mb)),
        cpus=plan_cap(team=job.team, limit=Limit.CPUS_PER_APP, value=job.cpus),
        pids_limit=job.team.plan.max_pids_per_container,
        workload=Workload.CRON,
    )


def _start_container(run: CronRun, launch: _Launch | Exception | None = None) -> None:
    """Create and start the run's container (`launch`: prepared with the tick's other runs)."""
    if launch is None:
        launch = _prepare([run])[run.pk]
    if isinstance(launch, Exception):
        raise launch
    engine = orchestrator.engine()
    engine.ensure_image(launch.spec.image, auth=launch.pull.auth, always_pull=launch.pull.always_pull)
    engine.ensure_network(launch.spec.network, orchestrator.network_labels(run.job.team.slug))
    # Named once the image is here, just before the container is made: a run without a name never had a
    # container (its starter died pulling), one whose named container is gone had it disappear.
    CronRun.objects.filter(pk=run.pk).update(container_name=launch.spec.name)
    run.container_name = launch.spec.name
    engine.run(launch.spec)
    # started_at is when the container runs (the claim time only guards against double starts).
    # Another scheduler may have finished the run while the container was being created (replaced
    # it, or gave up on it): then nothing may keep running for it.
    if not CronRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(started_at=timezone.now()):
        engine.remove(launch.spec.name)


# --- 3. running runs finish ------------------------------------------------------------------------
def _reap_running(now: datetime, summary: TickSummary) -> None:
    running = list(CronRun.objects.filter(status=RunStatus.RUNNING).select_related("job__team__plan", "job__app"))
    if not running:
        return
    engine = orchestrator.engine()
    # One engine listing for every run's container, twice a second, however many runs there are; a
    # container it does not show (not created yet, gone, or made under other labels) is asked by name.
    listed = {
        info.name: info for info in engine.list({f"{LABEL_PREFIX}cron-run": None, **settings.PANDASTACK_EXTRA_LABELS})
    }
    endings: list[tuple[Callable[..., None], CronRun, str, dict[str, Any]]] = []  # _finish or _stop
    for run in running:
        # No name yet, or a container created but not started: a scheduler is starting it right now
        # (its heartbeat keeps the run fresh through a slow pull), or died while it did (no heartbeat).
        info = (listed.get(run.container_name) or engine.inspect(run.container_name)) if run.container_name else None
        if info is None or info.status == "created":
            if run.updated_at >= stale_before(now):
                continue
            if info is None and run.container_name:
                reason = "the run's container disappeared"
            else:
                reason = "the run's container never started (its scheduler stopped while starting it)"
            endings.append((_finish, run, RunStatus.FAILED, {"reason": reason}))
        elif info.status in ("exited", "dead"):
            status = RunStatus.SUCCEEDED if info.exit_code == 0 else RunStatus.FAILED
            reason = "" if status == RunStatus.SUCCEEDED else f"exited with code {info.exit_code}"
            endings.append((_finish, run, status, {"exit_code": info.exit_code, "reason": reason}))
        elif run.started_at and now - run.started_at > timedelta(seconds=run.job.timeout_seconds):
            reason = f"killed after its timeout of {run.job.timeout_seconds}s"
            endings.append((_stop, run, RunStatus.TIMED_OUT, {"reason": reason}))
    summary.finished += len(endings)
    # The secrets to mask in the logs kept, for every app at once.
    secrets = secret_values_for_apps(
        {run.job.app_id: run.job.app for _, run, _, _ in endings if run.job.app_id}.values()
    )
    # Each ending reads the container's log and removes it (engine calls of some milliseconds each):
    # many at once go side by side, as starts do.
    _side_by_side([functools.partial(end, run, status, secrets=secrets, **how) for end, run, status, how in endings])


def _side_by_side(steps: list[Callable[[], Any]]) -> list[Any]:
    """Run `steps` in a few threads, each taking a share on a database connection of its own; in
    this thread when there is only one, or inside a transaction (threads see only committed rows)."""
    if len(steps) < 2 or connection.in_atomic_block:
        return [step() for step in steps]
    threads = min(START_THREADS, len(steps))
    with ThreadPoolExecutor(max_workers=threads) as pool:
        shares = pool.map(_in_thread, [steps[i::threads] for i in range(threads)])
        return [result for share in shares for result in share]


def _in_thread(steps: list[Callable[[], Any]]) -> list[Any]:
    try:
        return [step() for step in steps]
    finally:
        connection.close()


def _stop(run: CronRun, status: str, reason: str, *, secrets: Mapping[int, list[str]] | None = None) -> None:
    engine = orchestrator.engine()
    if run.container_name:
        engine.stop(run.container_name, timeout=0)
    info = engine.inspect(run.container_name) if run.container_name else None
    _finish(run, status, exit_code=info.exit_code if info else None, reason=reason, secrets=secrets)


def _finish(
    run: CronRun,
    status: str,
    *,
    exit_code: int | None = None,
    reason: str = "",
    secrets: Mapping[int, list[str]] | None = None,
) -> None:
    """`secrets`: the secret values of the run's app, read with those of other runs ending now."""
    engine = orchestrator.engine()
    tail = ""
    if run.container_name:
        try:
            lines = (line.text for line in engine.logs(run.container_name, tail=LOG_TAIL_LINES))
            masker = log_masker_for_cron_job(run.job, secrets=secrets)
            tail = "\n".join(masker.mask_lines(lines))  # stored: no secret in it
        except EngineError:
            tail = ""
    finished_at = timezone.now()
    updated = (
        CronRun.objects.filter(pk=run.pk)
        .exclude(status__in=FINISHED)
        .update(status=status, exit_code=exit_code, reason=reason, log_tail=tail, finished_at=finished_at)
    )
    if run.container_name:
        engine.remove(run.container_name)
    if not updated:
        return
    run.status, run.exit_code, run.reason, run.log_tail, run.finished_at = status, exit_code, reason, tail, finished_at
    job = run.job
    if status in (RunStatus.FAILED, RunStatus.TIMED_OUT):
        kind = "cron.run_failed" if status == RunStatus.FAILED else "cron.run_timed_out"
        _emit(run, kind, Severity.ERROR, f"{job.name}: run {run.pk} {status.replace('_', ' ')}: {reason}")
        if run.attempt <= job.retries:
            delay = job.retry_backoff_seconds * 2 ** (run.attempt - 1)
            CronRun.objects.create(
                team=job.team,
                job=job,
                trigger=Trigger.RETRY,
                scheduled_for=run.scheduled_for,
                attempt=run.attempt + 1,
                not_before=timezone.now() + timedelta(seconds=delay),
            )
    _prune(job)


def _prune(job: CronJob) -> None:
    """Keep the plan's number of finished runs per job."""
    keep = job.team.plan.cron_history_runs
    stale = list(
        CronRun.objects.filter(job=job, status__in=FINISHED).order_by("-id").values_list("pk", flat=True)[keep:]
    )
    if stale:
        CronRun.objects.filter(pk__in=stale).delete()


def _emit(run: CronRun, kind: str, severity: str, message: str) -> None:
    event_emit(
        team=run.job.team,
        kind=kind,
        subject=run.job,
        message=message,
        severity=severity,
        data={"run": run.pk, "attempt": run.attempt, "exit_code": run.exit_code, "status": run.status},
    )
