from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.core.models import TeamOwnedModel
from apps.teams.models import SLUG_MAX_LENGTH, slug_validator


class ConcurrencyPolicy(models.TextChoices):
    FORBID = "forbid"  # a run that would overlap a running one is skipped
    ALLOW = "allow"
    REPLACE = "replace"  # the running one is stopped, the new one starts


class CronJob(TeamOwnedModel):
    """A command run in a container on a schedule: with an app's live image and environment, or
    with an image of its own."""

    project = models.ForeignKey("teams.Project", on_delete=models.PROTECT, related_name="cron_jobs")
    app = models.ForeignKey(
        "deployments.App", null=True, blank=True, on_delete=models.CASCADE, related_name="cron_jobs"
    )
    name = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    image = models.CharField(max_length=500, blank=True, help_text="Used when the job has no app.")
    command = models.JSONField(help_text="The command as a list, e.g. ['python', 'manage.py', 'clearsessions'].")
    schedule = models.CharField(max_length=100, help_text="Five cron fields, or @hourly, @daily, ...")
    timezone = models.CharField(max_length=64, default="UTC")
    concurrency_policy = models.CharField(
        max_length=10, choices=ConcurrencyPolicy.choices, default=ConcurrencyPolicy.FORBID
    )
    timeout_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(1), MaxValueValidator(86400)]
    )
    retries = models.PositiveIntegerField(default=0, validators=[MaxValueValidator(10)])
    retry_backoff_seconds = models.PositiveIntegerField(default=30, validators=[MaxValueValidator(3600)])
    starting_deadline_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1)], help_text="A run not started this long after its time is missed."
    )
    # Capped by the team's plan like an app's container (max_memory_mb_per_app, max_cpus_per_app).
    memory_mb = models.PositiveIntegerField(default=256, validators=[MinValueValidator(16)])
    cpus = models.DecimalField(
        max_digits=4,
        decimal_places=2,
        default=Decimal("0.5"),
        validators=[MinValueValidator(Decimal("0.05")), MaxValueValidator(16)],
    )
    suspended = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)

    project_lookup = "project"
    grant_paths = ("project",)

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="cron_job_name_unique_in_team")]

    def __str__(self) -> str:
        return self.name


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    MISSED = "missed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


FINISHED = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.TIMED_OUT,
    RunStatus.MISSED,
    RunStatus.SKIPPED,
    RunStatus.CANCELLED,
)


class Trigger(models.TextChoices):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"


class CronRun(TeamOwnedModel):
    job = models.ForeignKey(CronJob, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    scheduled_for = models.DateTimeField(null=True, blank=True, help_text="The schedule slot (UTC).")
    attempt = models.PositiveIntegerField(default=1)
    not_before = models.DateTimeField(null=True, blank=True, help_text="A retry waits until then.")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True)
    container_name = models.CharField(max_length=200, blank=True)
    image = models.CharField(max_length=500, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    project_lookup = "job__project"
    grant_paths = ("job__project",)

    class Meta:
        ordering = ("-id",)
        constraints = [
            # One run per schedule slot (and attempt), however many schedulers are up.
            models.UniqueConstraint(
                fields=["job", "scheduled_for", "attempt"],
                condition=Q(scheduled_for__isnull=False),
                name="one_run_per_slot_and_attempt",
            )
        ]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.pk}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
