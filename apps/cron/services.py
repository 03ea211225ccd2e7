"""Writes for cron jobs: validated, audited; the scheduler (apps.cron.scheduler) does the runs."""

import time
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.broker import enqueue
from apps.core.errors import Conflict, RateLimited, ValidationFailed, require_confirmation
from apps.cron.models import CronJob, CronRun, RunStatus, Trigger
from apps.cron.schedule import next_run, schedule_error, timezone_error
from apps.deployments.models import App
from apps.runtime.images import image_reference_check
from apps.teams.models import Project, Team
from apps.teams.quotas import Limit, quota_check, quota_check_value

SCHEDULING_FIELDS = ("schedule", "timezone")
# "Run now" is rate-limited so that a token in a loop cannot queue runs faster than they can run: per
# job (one job's button cannot use up the team's budget) and per team (the plan's
# cron_run_now_per_minute), in fixed one-minute windows counted in the cache (Redis in production).
RUN_NOW_WINDOW_SECONDS = 60
RUN_NOW_PER_JOB = 3


def _validate(job: CronJob) -> None:
    errors: dict[str, list[str]] = {}
    if problem := schedule_error(job.schedule):
        errors["schedule"] = [problem]
    if problem := timezone_error(job.timezone):
        errors["timezone"] = [problem]
    if (job.app_id is None) == (not job.image):
        errors["image"] = ["Give exactly one of app (run its live image) or image."]
    if job.app_id is not None and job.app.project_id != job.project_id:
        errors["app"] = ["The app belongs to another project."]
    command = job.command
    if not isinstance(command, list) or not command or not all(isinstance(p, str) and p for p in command):
        errors["command"] = ["A non-empty list of strings."]
    if errors:
        raise ValidationFailed("Invalid cron job.", fields=errors)
    job.full_clean()
    if job.image:
        image_reference_check(job.image)  # no pulls from the platform's own network (the engine checks again)
    # A run is a container like an app's replica: the same per-container caps of the plan.
    quota_check_value(team=job.team, limit=Limit.MEMORY_MB_PER_APP, value=job.memory_mb)
    quota_check_value(team=job.team, limit=Limit.CPUS_PER_APP, value=job.cpus)


@transaction.atomic
def cron_job_create(*, ctx: TeamContext, project: Project, name: str, app: App | None = None, **fields: Any) -> CronJob:
    team = Team.objects.select_for_update().get(pk=ctx.team.pk)  # serialises concurrent quota checks
    quota_check(team=ctx.team, limit=Limit.CRON_JOBS, current=CronJob.objects.filter(team=team).count())
    if CronJob.objects.filter(team=ctx.team, name=name).exists():
        raise ValidationFailed("A cron job with this name already exists.", fields={"name": ["Already taken."]})
    job = CronJob(team=ctx.team, project=project, app=app, name=name, **fields)
    _validate(job)
    job.next_run_at = next_run(job.schedule, job.timezone, timezone.now())
    job.save()
    audit_record(actor=ctx.actor, action="cron.create", target=job, team=ctx.team, data={"schedule": job.schedule})
    return job


@transaction.atomic
def cron_job_update(*, ctx: TeamContext, job: CronJob, **changes: Any) -> CronJob:
    if not changes:
        return job
    for field, value in changes.items():
        setattr(job, field, value)
    _validate(job)
    if any(field in changes for field in SCHEDULING_FIELDS):
        job.next_run_at = next_run(job.schedule, job.timezone, timezone.now())
    job.save()
    # JSON for the audit row: CPUs arrive as a Decimal.
    data = {k: str(v) if isinstance(v, Decimal) else v for k, v in changes.items() if k != "app"} | (
        {"app": changes["app"].name} if changes.get("app") else {}
    )
    audit_record(actor=ctx.actor, action="cron.update", target=job, team=ctx.team, data=data)
    return job


@transaction.atomic
def cron_job_set_suspended(*, ctx: TeamContext, job: CronJob, suspended: bool) -> CronJob:
    """Suspend (no new runs) or resume (the next slot from now on; missed slots are not replayed)."""
    if job.suspended != suspended:
        job.suspended = suspended
        if not suspended:
            job.next_run_at = next_run(job.schedule, job.timezone, timezone.now())
        job.save(update_fields=["suspended", "next_run_at", "updated_at"])
        audit_record(actor=ctx.actor, action="cron.suspend" if suspended else "cron.resume", target=job, team=ctx.team)
    return job


@transaction.atomic
def cron_job_run_now(*, ctx: TeamContext, job: CronJob) -> CronRun:
    """Queue a manual run; the scheduler starts it within a second (the job's concurrency policy and
    the team's cap on concurrent runs apply). Raises RateLimited (429) beyond RUN_NOW_PER_JOB runs of
    this job, or the plan's cron_run_now_per_minute runs of the team, in the current minute."""
    if job.app_id is not None and job.app.live_deployment_id is None:
        raise Conflict(f"App {job.app.name} has no live release to run the job with.", code="no_live_release")
    _run_now_rate_limit(f"job:{job.pk}", limit=RUN_NOW_PER_JOB, what=f"runs of {job.name}")
    team_limit = ctx.team.plan.cron_run_now_per_minute
    _run_now_rate_limit(f"team:{ctx.team.pk}", limit=team_limit, what="manual cron runs in this team")
    run = CronRun.objects.create(team=ctx.team, job=job, trigger=Trigger.MANUAL)
    audit_record(actor=ctx.actor, action="cron.run", target=job, team=ctx.team, data={"run": run.pk})
    return run


@transaction.atomic
def cron_job_delete(*, ctx: TeamContext, job: CronJob, confirm: str) -> None:
    """Delete the job and its history; a run still going is stopped."""
    require_confirmation(confirm, expected=job.name, what="the cron job's name")
    running = list(
        CronRun.objects.filter(job=job, status=RunStatus.RUNNING)
        .exclude(container_name="")
        .values_list("container_name", flat=True)
    )
    audit_record(actor=ctx.actor, action="cron.delete", target=job, team=ctx.team)
    job.delete()
    if running:
        from apps.cron.tasks import remove_containers

        enqueue(remove_containers, running)


def _run_now_rate_limit(key: str, *, limit: int, what: str) -> None:
    now = time.time()
    window = int(now // RUN_NOW_WINDOW_SECONDS)
    cache_key = f"cron:run-now:{key}:{window}"
    # add() then incr(): atomic in Redis, so concurrent requests each get their own count.
    cache.add(cache_key, 0, timeout=RUN_NOW_WINDOW_SECONDS * 2)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add() and incr()
        cache.add(cache_key, 1, timeout=RUN_NOW_WINDOW_SECONDS * 2)
        count = 1
    if count > limit:
        retry_after = max(1, int((window + 1) * RUN_NOW_WINDOW_SECONDS - now) + 1)
        raise RateLimited(
            f"Too many manual runs: at most {limit} {what} per minute; try again in {retry_after}s.",
            retry_after=retry_after,
            limit=limit,
        )
