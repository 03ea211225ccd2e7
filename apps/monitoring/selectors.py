"""Reading metrics: the aggregate of a window (alert rules, summaries) and time series (the API)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max, Sum
from django.utils import timezone

from apps.monitoring.models import LATENCY_BOUNDS_MS, LATENCY_FIELDS, AppHealth, HealthStatus, MetricBucket, Resolution

ADDITIVE_FIELDS: tuple[str, ...] = (
    "requests", "responses_4xx", "responses_5xx", "latency_ms_sum", *LATENCY_FIELDS, "cpu_percent_sum", "cpu_samples",
    "memory_bytes_sum", "resource_samples", "restarts", "health_checks", "health_failures",
)  # fmt: skip
MAX_FIELDS: tuple[str, ...] = ("memory_bytes_max",)


def aggregates() -> dict[str, Sum | Max]:
    """Database aggregates adding up buckets: sums, and the maximum of the maxima."""
    return {f: Sum(f) for f in ADDITIVE_FIELDS} | {f: Max(f) for f in MAX_FIELDS}


def grouped_aggregates() -> dict[str, Sum | Max]:
    """aggregates() under names an annotation may take (not a model field's), for
    `.values(...).annotate(**grouped_aggregates())`; `group_sums(row)` reads a row back."""
    return {f"total_{name}": aggregate for name, aggregate in aggregates().items()}


def group_sums(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of grouped_aggregates() under the fields' own names."""
    return {name.removeprefix("total_"): value for name, value in row.items() if name.startswith("total_")}


def totals_of(row: dict[str, float | int | None]) -> Totals:
    """Totals from a row of aggregates()."""
    return Totals(
        sums={f: row.get(f) or 0 for f in ADDITIVE_FIELDS}, memory_bytes_max=int(row.get("memory_bytes_max") or 0)
    )


def retention(resolution: int) -> timedelta:
    """How long buckets of a resolution are kept (settings.PANDASTACK_METRICS_RETENTION, in seconds)."""
    return timedelta(seconds=settings.PANDASTACK_METRICS_RETENTION[int(resolution)])


def bucket_start(at: datetime, resolution: int) -> datetime:
    """The start of the bucket of width `resolution` seconds holding `at` (aligned on the epoch)."""
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % resolution, tz=at.tzinfo or timezone.get_current_timezone())


def percentile(histogram: Sequence[int], q: float) -> float | None:
    """Estimate the q-quantile (0 < q < 1) in milliseconds from the latency histogram's counts (one
    per LATENCY_FIELDS column): linear interpolation inside the bucket holding it, as Prometheus's
    histogram_quantile does. Requests over the last bound count as the last bound. None when empty."""
    total = sum(histogram)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    lower = 0.0
    for count, upper in zip(histogram, (*LATENCY_BOUNDS_MS, LATENCY_BOUNDS_MS[-1]), strict=True):
        if count and seen + count >= rank:
            return round(lower + (upper - lower) * (rank - seen) / count, 3)
        seen += count
        lower = float(upper)
    return float(LATENCY_BOUNDS_MS[-1])


@dataclass
class Totals:
    """The sums (and maximum) of a set of buckets, with the figures people and rules ask for."""

    sums: dict[str, float] = field(default_factory=dict)
    memory_bytes_max: int = 0

    def __getattr__(self, name: str) -> float:
        try:
            return self.__dict__["sums"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def histogram(self) -> list[int]:
        return [int(self.sums.get(f, 0)) for f in LATENCY_FIELDS]

    @property
    def error_rate(self) -> float | None:
        """5xx responses as a percentage of requests; None without requests."""
        requests = self.sums.get("requests", 0)
        return round(100.0 * self.sums.get("responses_5xx", 0) / requests, 3) if requests else None

    def latency(self, q: float) -> float | None:
        return percentile(self.histogram, q)

    @property
    def latency_avg_ms(self) -> float | None:
        requests = self.sums.get("requests", 0)
        return round(self.sums.get("latency_ms_sum", 0) / requests, 3) if requests else None

    @property
    def cpu_percent(self) -> float | None:
        samples = self.sums.get("cpu_samples", 0)
        return round(self.sums.get("cpu_percent_sum", 0.0) / samples, 3) if samples else None

    @property
    def memory_mb(self) -> float | None:
        return round(self.memory_bytes_max / 2**20, 3) if self.sums.get("resource_samples", 0) else None

    @property
    def uptime_percent(self) -> float | None:
        checks = self.sums.get("health_checks", 0)
        return round(100.0 * (checks - self.sums.get("health_failures", 0)) / checks, 3) if checks else None

    def summary(self) -> dict[str, float | int | None]:
        """The figures shown for a window (API `summary`, CLI)."""
        return {
            "requests": int(self.sums.get("requests", 0)),
            "responses_4xx": int(self.sums.get("responses_4xx", 0)),
            "responses_5xx": int(self.sums.get("responses_5xx", 0)),
            "error_rate": self.error_rate,
            "latency_avg_ms": self.latency_avg_ms,
            "latency_p50_ms": self.latency(0.5),
            "latency_p95_ms": self.latency(0.95),
            "latency_p99_ms": self.latency(0.99),
            "cpu_percent": self.cpu_percent,
            "memory_mb": self.memory_mb,
            "restarts": int(self.sums.get("restarts", 0)),
            "health_checks": int(self.sums.get("health_checks", 0)),
            "uptime_percent": self.uptime_percent,
        }


def totals(buckets: Iterable[MetricBucket]) -> Totals:
    """Add up buckets already fetched."""
    result = Totals(sums=dict.fromkeys(ADDITIVE_FIELDS, 0))
    for bucket in buckets:
        for name in ADDITIVE_FIELDS:
            result.sums[name] += getattr(bucket, name)
        result.memory_bytes_max = max(result.memory_bytes_max, bucket.memory_bytes_max)
    return result


def window_totals(app_id: int, *, since: datetime, until: datetime | None = None) -> Totals:
    """One app's totals over the raw buckets that start in [since, until) — what alert rules
    evaluate. One query."""
    return window_totals_of([app_id], since=since, until=until)[app_id]


def window_totals_of(app_ids: Iterable[int], *, since: datetime, until: datetime | None = None) -> dict[int, Totals]:
    """window_totals for several apps at once (an app without buckets has zero totals). One query."""
    wanted = set(app_ids)
    query = MetricBucket.objects.filter(app_id__in=wanted, resolution=Resolution.RAW, start__gte=since)
    if until is not None:
        query = query.filter(start__lt=until)
    found = {
        row["app_id"]: totals_of(group_sums(row))
        for row in query.values("app_id").annotate(**grouped_aggregates()).order_by()
    }
    return {app_id: found.get(app_id) or totals_of({}) for app_id in wanted}


def health_of(app_ids: Iterable[int]) -> dict[int, float | None]:
    """Per app: 1.0 when its last health checks passed, 0.0 when it is down, None when unknown.
    One query."""
    wanted = set(app_ids)
    status = dict(AppHealth.objects.filter(app_id__in=wanted).values_list("app_id", "status"))
    return {app_id: {HealthStatus.UP: 1.0, HealthStatus.DOWN: 0.0}.get(status.get(app_id)) for app_id in wanted}


# --- time series ------------------------------------------------------------------------------------
SERIES = (
    "requests", "responses_4xx", "responses_5xx", "error_rate", "latency_p50_ms", "latency_p95_ms",
    "latency_p99_ms", "cpu_percent", "memory_mb", "restarts", "uptime_percent",
)  # fmt: skip
MAX_POINTS = 1000


def resolution_for(start: datetime, step: int, now: datetime | None = None) -> int | None:
    """The finest stored resolution that divides the step and still holds data as old as `start`;
    None when none does (the caller asks for a larger step)."""
    now = now or timezone.now()
    for resolution in sorted(Resolution.values):
        if step % resolution == 0 and now - retention(resolution) <= start:
            return resolution
    return None


def smallest_step(start: datetime, now: datetime | None = None) -> int | None:
    """The smallest step a range starting at `start` can be asked for (None: older than any retention)."""
    now = now or timezone.now()
    kept = [r for r in sorted(Resolution.values) if now - retention(r) <= start]
    return kept[0] if kept else None


def series(app_id: int, *, start: datetime, end: datetime, step: int, now: datetime | None = None) -> dict[str, object]:
    """Time series of every figure in SERIES for one app, one point per `step` seconds from the
    bucket holding `start` to the one holding `end`; a point without data is None (counts are 0).

    Points come from the coarsest-enough resolution; the latest periods, which a coarser resolution
    holds only once they have ended and been rolled up, come from the finer ones. The caller checks
    that resolution_for() found a resolution and that there are at most MAX_POINTS points."""
    now = now or end
    resolution = resolution_for(start, step, now)
    if resolution is None:
        raise ValueError(f"no stored resolution serves step {step} from {start}")
    first = bucket_start(start, step)
    buckets = list(MetricBucket.objects.filter(app_id=app_id, resolution=resolution, start__gte=first, start__lte=end))
    covered_until = max((b.start for b in buckets), default=first - timedelta(seconds=resolution))
    covered_until += timedelta(seconds=resolution)
    for finer in sorted((r for r in Resolution.values if r < resolution), reverse=True):
        newer = list(
            MetricBucket.objects.filter(
                app_id=app_id, resolution=finer, start__gte=max(first, covered_until), start__lte=end
            )
        )
        if newer:
            buckets += newer
            covered_until = max(b.start for b in newer) + timedelta(seconds=finer)
    grouped: dict[datetime, list[MetricBucket]] = {}
    for bucket in buckets:
        grouped.setdefault(bucket_start(bucket.start, step), []).append(bucket)
    points = math.floor((end - first).total_seconds() / step) + 1
    timestamps = [first + timedelta(seconds=i * step) for i in range(points)]
    out: dict[str, list[float | int | None]] = {name: [] for name in SERIES}
    for at in timestamps:
        summary = totals(grouped.get(at, ())).summary()
        for name in SERIES:
            out[name].append(summary[name])
    overall = totals(buckets)
    return {
        "resolution": resolution,
        "timestamps": timestamps,
        "series": out,
        "summary": overall.summary(),
    }
