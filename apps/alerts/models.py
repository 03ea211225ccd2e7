from django.db import models
from django.db.models import Q

from apps.core.models import TeamOwnedModel
from apps.secrets.crypto import EncryptedTextField
from apps.teams.models import SLUG_MAX_LENGTH, slug_validator


class ChannelKind(models.TextChoices):
    EMAIL = "email"
    WEBHOOK = "webhook"  # JSON POST signed with HMAC-SHA256
    SLACK = "slack"  # a Slack-compatible incoming webhook ({"text": ...})


class NotificationChannel(TeamOwnedModel):
    """Where a team's notifications go. A webhook's signing secret is stored encrypted (it must be
    read back to sign) and shown once, at creation."""

    name = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    target = models.CharField(max_length=2000, help_text="An https URL, or e-mail addresses separated by commas.")
    signing_secret_encrypted = EncryptedTextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    # An e-mail channel sends nothing until its address proved it wants the mail (a signed code sent
    # to it, entered back through the API): otherwise any team could mail anyone in the platform's
    # name. Cleared whenever the address changes. Webhook and Slack channels need no verification.
    verified_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="channel_name_unique_in_team")]

    @property
    def verified(self) -> bool:
        return self.kind != ChannelKind.EMAIL or self.verified_at is not None

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(TeamOwnedModel):
    """One notification sent (or being retried) through one channel: the delivery log."""

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    trigger = models.CharField(max_length=20, default="test", help_text="test, or what caused it")
    subject = models.CharField(max_length=200)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.channel_id}#{self.pk} {self.status}"


class RuleScope(models.TextChoices):
    APP = "app"
    CRON_JOB = "cron_job"
    DATABASE = "database"
    PROJECT = "project"


class RuleMetric(models.TextChoices):
    """What a rule measures over its window. Every metric but `event` needs an app scope."""

    EVENT = "event", "platform events of a kind (count)"
    REQUESTS = "requests", "HTTP requests (count)"
    RESPONSES_4XX = "responses_4xx", "4xx responses (count)"
    RESPONSES_5XX = "responses_5xx", "5xx responses (count)"
    ERROR_RATE = "error_rate", "5xx responses as a percentage of requests"
    LATENCY_P50 = "latency_p50_ms", "median latency (ms)"
    LATENCY_P95 = "latency_p95_ms", "95th percentile latency (ms)"
    LATENCY_P99 = "latency_p99_ms", "99th percentile latency (ms)"
    CPU = "cpu_percent", "average CPU (100 = one core)"
    MEMORY = "memory_mb", "largest memory in use (MiB)"
    RESTARTS = "restarts", "crashed containers replaced (count)"
    UPTIME = "uptime_percent", "health checks that passed (%)"
    UP = "up", "current health: 1 up, 0 down"


class Operator(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", ">="
    LT = "lt", "<"
    LTE = "lte", "<="


class AlertSeverity(models.TextChoices):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(models.TextChoices):
    OK = "ok"
    PENDING = "pending"  # the condition holds, not yet for `for_seconds`
    FIRING = "firing"
    RESOLVED = "resolved"  # was firing, the condition no longer holds (behaves as ok)


class AlertRule(TeamOwnedModel):
    """A condition on an app's metrics or on the platform events of an app, a cron job, a database or
    a project, evaluated continuously by the monitor (`manage.py run_monitor`). Firing notifies the
    rule's channels once and opens (or joins) an incident; resolving notifies once more."""

    name = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    project = models.ForeignKey("teams.Project", on_delete=models.CASCADE, related_name="alert_rules")
    scope = models.CharField(max_length=10, choices=RuleScope.choices)
    app = models.ForeignKey("deployments.App", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    cron_job = models.ForeignKey("cron.CronJob", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    database = models.ForeignKey(
        "databases.Database", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    metric = models.CharField(max_length=20, choices=RuleMetric.choices)
    event_kind = models.CharField(max_length=64, blank=True, help_text="for metric=event, e.g. cron.run_failed")
    operator = models.CharField(max_length=3, choices=Operator.choices, default=Operator.GT)
    threshold = models.FloatField()
    window_seconds = models.PositiveIntegerField(default=300)
    for_seconds = models.PositiveIntegerField(default=0, help_text="how long the condition must hold to fire")
    severity = models.CharField(max_length=10, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    enabled = models.BooleanField(default=True)

    state = models.CharField(max_length=10, choices=AlertState.choices, default=AlertState.OK, editable=False)
    state_since = models.DateTimeField(null=True, blank=True, editable=False)
    pending_since = models.DateTimeField(null=True, blank=True, editable=False)
    last_value = models.FloatField(null=True, blank=True, editable=False)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)

    project_lookup = "project"
    grant_paths = ("project",)

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="alert_rule_name_unique_in_team")]

    def __str__(self) -> str:
        return self.name

    @property
    def target(self) -> models.Model:
        """What the rule watches: its app, its cron job, its database, or its project."""
        return self.app or self.cron_job or self.database or self.project

    def condition_text(self) -> str:
        """The condition for people, e.g. "error_rate of api over 300s > 5" or "cron.run_failed
        events of nightly in 3600s > 0"."""
        target = f"project {self.project.slug}" if self.scope == RuleScope.PROJECT else str(self.target)
        if self.metric == RuleMetric.EVENT:
            what = f"{self.event_kind} events of {target} in {self.window_seconds}s"
        elif self.metric == RuleMetric.UP:
            what = f"up of {target}"
        else:
            what = f"{self.metric} of {target} over {self.window_seconds}s"
        return f"{what} {Operator(self.operator).label} {self.threshold:g}"


class IncidentStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Incident(TeamOwnedModel):
    """Opened by a firing alert (later alerts in the same project join it while it is not resolved).
    Its timeline is the project's platform events from a little before it opened until it resolved:
    the alerts, deployments, crashes and health changes around it."""

    project = models.ForeignKey("teams.Project", on_delete=models.CASCADE, related_name="incidents")
    number = models.PositiveIntegerField(help_text="1, 2, 3… per team; the id people use.")
    title = models.CharField(max_length=200)
    severity = models.CharField(max_length=10, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    status = models.CharField(max_length=15, choices=IncidentStatus.choices, default=IncidentStatus.OPEN)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=200, blank=True, help_text="a person, or 'auto' when its alerts resolved")
    postmortem = models.TextField(blank=True, help_text="The blameless post-mortem (Markdown).")

    project_lookup = "project"
    grant_paths = ("project",)

    class Meta:
        ordering = ("-id",)
        constraints = [models.UniqueConstraint(fields=["team", "number"], name="incident_number_unique_in_team")]

    def __str__(self) -> str:
        return f"#{self.number} {self.title}"


class IncidentAlert(models.Model):
    """One firing of one rule inside an incident."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="alerts")
    rule = models.ForeignKey(AlertRule, null=True, on_delete=models.SET_NULL, related_name="firings")
    rule_name = models.CharField(max_length=SLUG_MAX_LENGTH)
    value = models.FloatField(null=True)
    fired_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("id",)
        constraints = [
            # A rule fires once until it resolves, however many evaluators run: the database says so too.
            models.UniqueConstraint(
                fields=["rule"], condition=Q(resolved_at__isnull=True), name="one_open_firing_per_rule"
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_name} in incident {self.incident_id}"
