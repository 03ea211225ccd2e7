from decimal import Decimal
from typing import Any

from rest_framework import serializers

from apps.cron.models import ConcurrencyPolicy, CronJob, CronRun
from apps.teams.api.serializers import StrictCharField, slug_field
from apps.teams.models import SLUG_MAX_LENGTH


class RunBriefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)


class CronJobOutput(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    app = serializers.CharField(source="app.name", allow_null=True, default=None)
    last_run = serializers.SerializerMethodField()
    cpus = serializers.FloatField()

    class Meta:
        model = CronJob
        fields = (
            "name", "project", "app", "image", "command", "schedule", "timezone", "concurrency_policy",
            "timeout_seconds", "retries", "retry_backoff_seconds", "starting_deadline_seconds", "memory_mb",
            "cpus", "suspended", "next_run_at", "last_run", "created_at",
        )  # fmt: skip

    def get_last_run(self, job: CronJob) -> dict[str, Any] | None:
        run_id = getattr(job, "last_run_id", None)
        if run_id is None:
            return None
        return {"id": run_id, "status": job.last_run_status, "started_at": job.last_run_started_at}


class CronRunOutput(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(allow_null=True)

    class Meta:
        model = CronRun
        fields = (
            "id", "trigger", "scheduled_for", "attempt", "status", "exit_code", "reason", "started_at",
            "finished_at", "duration_seconds",
        )  # fmt: skip


class CronRunLogOutput(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    log = serializers.CharField()


class CronJobCreateInput(serializers.Serializer):
    name = slug_field()
    project = StrictCharField(max_length=SLUG_MAX_LENGTH, help_text="The project's slug.")
    app = StrictCharField(max_length=SLUG_MAX_LENGTH, required=False, help_text="Run this app's live image.")
    image = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$", max_length=500, required=False)
    command = serializers.ListField(child=StrictCharField(max_length=1000), min_length=1, max_length=100)
    schedule = StrictCharField(max_length=100, help_text="Five cron fields, or @hourly, @daily, ...")
    timezone = StrictCharField(max_length=64, required=False)
    concurrency_policy = serializers.ChoiceField(choices=ConcurrencyPolicy.choices, required=False)
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=86400, required=False)
    retries = serializers.IntegerField(min_value=0, max_value=10, required=False)
    retry_backoff_seconds = serializers.IntegerField(min_value=0, max_value=3600, required=False)
    starting_deadline_seconds = serializers.IntegerField(min_value=1, max_value=86400, required=False)
    memory_mb = serializers.IntegerField(
        min_value=16, max_value=65536, required=False, help_text="MB; at most the plan's max_memory_mb_per_app."
    )
    cpus = serializers.DecimalField(
        max_digits=4,
        decimal_places=2,
        min_value=Decimal("0.05"),
        max_value=Decimal(16),
        required=False,
        help_text="At most the plan's max_cpus_per_app.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("app" in attrs) == ("image" in attrs):
            raise serializers.ValidationError({"image": ["Give exactly one of app or image."]})
        return attrs


class CronJobUpdateInput(CronJobCreateInput):
    name = None
    project = None
    app = None
    image = None
    command = serializers.ListField(
        child=StrictCharField(max_length=1000), min_length=1, max_length=100, required=False
    )
    schedule = StrictCharField(max_length=100, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return attrs


class CronConfirmInput(serializers.Serializer):
    confirm = serializers.CharField(max_length=100, help_text="Repeat the cron job's name to confirm deletion.")
