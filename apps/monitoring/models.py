"""Per-app metrics, stored as additive buckets at three resolutions, and each app's health state.

Every field of a bucket is a count, a sum or a maximum, so a coarser bucket is exactly the sum (or
maximum) of the finer ones it covers: downsampling keeps totals, and any number of writers (the
access-log collector, the engine sampler, the health checker, the reconciler) add to the same row.
"""

from django.db import models

# Upper bounds (milliseconds) of the latency histogram's buckets; the last column counts the rest.
LATENCY_BOUNDS_MS: tuple[int, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
LATENCY_FIELDS: tuple[str, ...] = (*(f"latency_le_{b}ms" for b in LATENCY_BOUNDS_MS), "latency_over_10000ms")


class Resolution(models.IntegerChoices):
    """Bucket widths in seconds. Retention per resolution is in settings (PANDASTACK_METRICS_RETENTION)."""

    RAW = 10, "10 seconds"
    FIVE_MINUTES = 300, "5 minutes"
    HOUR = 3600, "1 hour"


def _count(help_text: str) -> models.BigIntegerField:
    return models.BigIntegerField(default=0, help_text=help_text)


class MetricBucket(models.Model):
    """What one app did during [start, start + resolution seconds)."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="metric_buckets")
    resolution = models.PositiveIntegerField(choices=Resolution.choices)
    start = models.DateTimeField()

    # From the router's access log.
    requests = _count("HTTP requests answered (any status)")
    responses_4xx = _count("responses with a 4xx status")
    responses_5xx = _count("responses with a 5xx status (including the router's own 502/503/504)")
    latency_ms_sum = _count("sum of the requests' active times in milliseconds")
    latency_le_5ms = _count("requests that took at most 5 ms")
    latency_le_10ms = _count("requests that took more than 5 ms and at most 10 ms")
    latency_le_25ms = _count("... more than 10 ms and at most 25 ms")
    latency_le_50ms = _count("... at most 50 ms")
    latency_le_100ms = _count("... at most 100 ms")
    latency_le_250ms = _count("... at most 250 ms")
    latency_le_500ms = _count("... at most 500 ms")
    latency_le_1000ms = _count("... at most 1 s")
    latency_le_2500ms = _count("... at most 2.5 s")
    latency_le_5000ms = _count("... at most 5 s")
    latency_le_10000ms = _count("... at most 10 s")
    latency_over_10000ms = _count("requests that took more than 10 s")

    # From the Docker Engine (one sample per container per sampling round).
    cpu_percent_sum = models.FloatField(default=0.0, help_text="sum over samples of the app's CPU (100 = one core)")
    cpu_samples = models.PositiveIntegerField(
        default=0, help_text="sampling rounds that measured CPU (a container's first reading only sets a baseline)"
    )
    memory_bytes_sum = models.FloatField(default=0.0, help_text="sum over samples of the app's memory in use")
    memory_bytes_max = models.BigIntegerField(default=0, help_text="the largest memory sample")
    resource_samples = models.PositiveIntegerField(default=0, help_text="sampling rounds that measured the app")
    restarts = models.PositiveIntegerField(default=0, help_text="crashed containers replaced")

    # From the periodic health checks.
    health_checks = models.PositiveIntegerField(default=0)
    health_failures = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("app", "resolution", "start")
        constraints = [
            models.UniqueConstraint(fields=["app", "resolution", "start"], name="one_metric_bucket_per_slot"),
        ]
        indexes = [models.Index(fields=["resolution", "start"])]

    def __str__(self) -> str:
        return f"app {self.app_id} @ {self.start:%Y-%m-%d %H:%M:%S} / {self.resolution}s"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


class AppHealth(models.Model):
    """The outcome of an app's periodic health checks through the router."""

    app = models.OneToOneField("deployments.App", on_delete=models.CASCADE, primary_key=True, related_name="health")
    status = models.CharField(max_length=10, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN)
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True, help_text="when the status last changed")

    def __str__(self) -> str:
        return f"app {self.app_id}: {self.status}"
