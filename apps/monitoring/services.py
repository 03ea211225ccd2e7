"""Writing metrics: adding to an app's raw bucket, rolling raw buckets up into coarser ones, pruning."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Case, DateTimeField, F, Max, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from apps.monitoring.models import MetricBucket, Resolution
from apps.monitoring.selectors import (
    ADDITIVE_FIELDS,
    aggregates,
    bucket_start,
    group_sums,
    grouped_aggregates,
    retention,
)

_FIELDS = frozenset(ADDITIVE_FIELDS) | {"memory_bytes_max"}


def record(*, app_id: int, team_id: int, at: datetime | None = None, **values: float) -> None:
    """Add `values` (counts and sums by field name; `memory_bytes_max` is a maximum) to the app's
    raw bucket holding `at` (default: now). Safe from any number of processes at once: increments
    happen in the database, and the first writer of a bucket creates it."""
    unknown = set(values) - _FIELDS
    if unknown:
        raise ValueError(f"unknown metric fields: {sorted(unknown)}")
    values = {k: v for k, v in values.items() if v}
    if not values:
        return
    start = bucket_start(at or timezone.now(), Resolution.RAW)
    changes = {
        name: Greatest(F(name), value) if name == "memory_bytes_max" else F(name) + value
        for name, value in values.items()
    }
    slot = MetricBucket.objects.filter(app_id=app_id, resolution=Resolution.RAW, start=start)
    for _ in range(2):
        if slot.update(**changes):
            return
        try:
            with transaction.atomic():
                MetricBucket.objects.create(
                    app_id=app_id, team_id=team_id, resolution=Resolution.RAW, start=start, **values
                )
            return
        except IntegrityError:
            continue  # another writer created it first: add to theirs


def rollup(*, now: datetime | None = None) -> dict[int, int]:
    """Fill the coarser buckets from the finer ones for every completed period still in the finer
    retention, then prune every resolution past its retention. Recomputing a coarse bucket from its
    source (not adding to it) makes this idempotent: run it as often as you like, from anywhere.
    Returns how many coarse buckets were written per resolution."""
    now = now or timezone.now()
    written: dict[int, int] = {}
    tiers = sorted(Resolution.values)
    for finer, coarser in itertools.pairwise(tiers):
        # Periods that ended (plus one raw bucket of grace for late writers) and whose source is kept.
        until = bucket_start(now - timedelta(seconds=Resolution.RAW), coarser)
        since = bucket_start(now - retention(finer), coarser) + timedelta(seconds=coarser)
        with transaction.atomic():  # a pass that fails half-way writes nothing (the next one redoes it)
            written[coarser] = _rollup_range(finer, coarser, since, until)
    for resolution in tiers:
        MetricBucket.objects.filter(resolution=resolution, start__lt=now - retention(resolution)).delete()
    return written


def _rollup_range(finer: int, coarser: int, since: datetime, until: datetime) -> int:
    """(Re)write the `coarser` buckets in [since, until) as the sums of their `finer` buckets. Only
    periods from the newest coarse bucket on are looked at: earlier ones were written once their
    period had ended (every app in the same pass), so their source cannot have changed since.

    Three queries whatever the number of apps and periods: the newest coarse bucket, the sums of
    the finer buckets grouped by app and period (the period computed in the database), and one
    upsert of every coarse bucket."""
    newest = MetricBucket.objects.filter(resolution=coarser, start__gte=since, start__lt=until).aggregate(
        newest=Max("start")
    )["newest"]
    if newest is not None:
        since = newest
    if since >= until:
        return 0
    # Both ends are on period boundaries, so each finer bucket falls in exactly one of these.
    periods = [since + timedelta(seconds=coarser * i) for i in range(int((until - since).total_seconds()) // coarser)]
    period = Case(
        *(When(start__lt=start + timedelta(seconds=coarser), then=Value(start)) for start in periods),
        output_field=DateTimeField(),
    )
    rows = (
        MetricBucket.objects.filter(resolution=finer, start__gte=since, start__lt=until)
        .annotate(period=period)
        .values("app_id", "team_id", "period")
        .annotate(**grouped_aggregates())
        .order_by()
    )
    buckets = [
        MetricBucket(
            app_id=row["app_id"],
            team_id=row["team_id"],
            resolution=coarser,
            start=row["period"],
            **{name: value or 0 for name, value in group_sums(row).items()},
        )
        for row in rows
    ]
    MetricBucket.objects.bulk_create(
        buckets,
        update_conflicts=True,
        unique_fields=["app", "resolution", "start"],
        update_fields=["team", *aggregates()],
    )
    return len(buckets)
