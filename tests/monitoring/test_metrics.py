"""Metric storage and queries: additive buckets, aggregates against known traffic, downsampling
that keeps totals, bounded retention."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.deployments.models import App
from apps.monitoring.collectors import TrafficCounts, parse_access_line
from apps.monitoring.models import LATENCY_FIELDS, MetricBucket, Resolution
from apps.monitoring.selectors import bucket_start, percentile, series, totals, window_totals
from apps.monitoring.services import record, rollup

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def app(team_a) -> App:
    return App.objects.create(team=team_a.team, project=team_a.project, name="web")


def traffic(app: App, at: datetime, lines: list[tuple[int, int]]) -> None:
    """Count (status, milliseconds) requests as the access-log collector does, and flush them."""
    counts = TrafficCounts()
    for status, ms in lines:
        counts.add(app.pk, status, ms, at=at)
    counts.flush()


def test_parse_access_line_reads_app_lines_and_ignores_the_rest() -> None:
    assert parse_access_line(b"app_17 500 12") == (17, 500, 12)
    assert parse_access_line(b"app_3 -1 -1") == (3, -1, 0)
    assert parse_access_line(b"ps.no_app 503 0") is None
    assert parse_access_line(b"app_x 200 1") is None
    assert parse_access_line(b"garbage") is None


@pytest.mark.django_db
def test_aggregates_match_known_traffic(app: App) -> None:
    # 100 requests: 90 fast 200s, 5 404s, 5 slow 500s.
    lines = [(200, 3)] * 90 + [(404, 8)] * 5 + [(500, 700)] * 5
    traffic(app, T0 + timedelta(seconds=1), lines[:50])
    traffic(app, T0 + timedelta(seconds=12), lines[50:])  # the next 10 s bucket
    result = window_totals(app.pk, since=T0, until=T0 + timedelta(seconds=60))
    assert result.sums["requests"] == 100
    assert result.sums["responses_4xx"] == 5
    assert result.sums["responses_5xx"] == 5
    assert result.error_rate == 5.0
    assert result.latency_avg_ms == (90 * 3 + 5 * 8 + 5 * 700) / 100
    # p50 lies among the 3 ms requests (the <=5 ms bucket), p99 among the 700 ms ones (500-1000 ms).
    assert 0 < result.latency(0.5) <= 5
    assert 500 < result.latency(0.99) <= 1000
    assert MetricBucket.objects.filter(app=app, resolution=Resolution.RAW).count() == 2


def test_percentile_interpolates_inside_the_bucket() -> None:
    histogram = [0] * len(LATENCY_FIELDS)
    histogram[4] = 10  # 10 requests between 50 and 100 ms
    assert percentile(histogram, 0.5) == 75.0
    assert percentile(histogram, 1.0) == 100.0
    assert percentile([0] * len(LATENCY_FIELDS), 0.5) is None
    histogram = [0] * len(LATENCY_FIELDS)
    histogram[-1] = 3  # all slower than the last bound
    assert percentile(histogram, 0.99) == 10000.0


@pytest.mark.django_db
def test_record_adds_and_keeps_the_largest_memory(app: App) -> None:
    record(app_id=app.pk, team_id=app.team_id, at=T0, cpu_percent_sum=20, cpu_samples=1, memory_bytes_sum=100,
           memory_bytes_max=100, resource_samples=1)  # fmt: skip
    record(app_id=app.pk, team_id=app.team_id, at=T0 + timedelta(seconds=5), cpu_percent_sum=40, cpu_samples=1,
           memory_bytes_sum=300, memory_bytes_max=300, resource_samples=1)  # fmt: skip
    # A round that only set CPU baselines: memory measured, no CPU figure (does not drag the average down).
    record(app_id=app.pk, team_id=app.team_id, at=T0 + timedelta(seconds=6), memory_bytes_sum=200,
           memory_bytes_max=200, resource_samples=1)  # fmt: skip
    bucket = MetricBucket.objects.get(app=app)
    assert (bucket.cpu_percent_sum, bucket.resource_samples, bucket.memory_bytes_max) == (60, 3, 300)
    assert totals([bucket]).cpu_percent == 30
    with pytest.raises(ValueError, match="unknown metric fields"):
        record(app_id=app.pk, team_id=app.team_id, requests=1, bogus=2)


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_lose_nothing(app: App) -> None:
    """Eight threads (each its own database connection) add to the same bucket at once."""
    barrier = threading.Barrier(8)

    def write() -> None:
        try:
            barrier.wait()
            for _ in range(25):
                record(app_id=app.pk, team_id=app.team_id, at=T0, requests=1, responses_5xx=1)
        finally:
            connection.close()

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bucket = MetricBucket.objects.get(app=app)
    assert (bucket.requests, bucket.responses_5xx) == (200, 200)


@pytest.mark.django_db
def test_downsampling_keeps_totals_and_retention_bounds_storage(app: App, settings) -> None:
    settings.PANDASTACK_METRICS_RETENTION = {10: 3 * 3600, 300: 2 * 86400, 3600: 10 * 86400}
    start = T0 - timedelta(hours=2)
    # Two hours of traffic: one bucket every 10 s with a changing mix.
    expected = {"requests": 0, "responses_5xx": 0, "latency_ms_sum": 0}
    for i in range(720):
        at = start + timedelta(seconds=10 * i)
        n, errors = 1 + i % 7, i % 3
        record(app_id=app.pk, team_id=app.team_id, at=at, requests=n, responses_5xx=errors, latency_ms_sum=n * 4,
               latency_le_5ms=n, health_checks=1, health_failures=i % 2, memory_bytes_max=1000 + i)  # fmt: skip
        expected["requests"] += n
        expected["responses_5xx"] += errors
        expected["latency_ms_sum"] += n * 4
    written = rollup(now=T0 + timedelta(seconds=30))
    assert written == {300: 24, 3600: 2}
    for resolution in (Resolution.RAW, Resolution.FIVE_MINUTES, Resolution.HOUR):
        buckets = list(MetricBucket.objects.filter(app=app, resolution=resolution))
        total = totals(buckets)
        assert {k: total.sums[k] for k in expected} == expected, resolution
        assert total.sums["health_checks"] == 720 and total.sums["health_failures"] == 360
        assert total.memory_bytes_max == 1719
    # Idempotent: a second pass rewrites nothing new and changes no total.
    rollup(now=T0 + timedelta(seconds=40))
    assert (
        totals(MetricBucket.objects.filter(app=app, resolution=Resolution.HOUR)).sums["requests"]
        == expected["requests"]
    )
    # Past its retention, the raw data goes; the coarse buckets keep the totals.
    rollup(now=T0 + timedelta(hours=3, minutes=30))
    assert not MetricBucket.objects.filter(app=app, resolution=Resolution.RAW).exists()
    assert (
        totals(MetricBucket.objects.filter(app=app, resolution=Resolution.FIVE_MINUTES)).sums["requests"]
        == (expected["requests"])
    )
    rollup(now=T0 + timedelta(days=12))
    assert not MetricBucket.objects.filter(app=app).exists()


@pytest.mark.django_db
def test_a_rollup_pass_costs_the_same_queries_for_3_apps_and_30(team_a, django_assert_num_queries) -> None:
    """Set-based: the sums of every app's period in one query per tier, written in one more."""
    from tests.core.bulk import apps as make_apps

    def period_of_traffic(apps: list[App], period: datetime) -> None:
        for app in apps:
            for second in range(0, 300, 10):
                record(app_id=app.pk, team_id=app.team_id, at=period + timedelta(seconds=second), requests=app.pk)

    first, second = T0, T0 + timedelta(minutes=5)
    make_apps(team_a, 0, 30)
    many = list(App.objects.filter(team=team_a.team, name__regex=r"^a\d+$"))
    period_of_traffic(many[:3], first)
    with CaptureQueriesContext(connection) as captured:
        assert rollup(now=second + timedelta(seconds=30))[Resolution.FIVE_MINUTES] == 3
    period_of_traffic(many, second)
    with django_assert_num_queries(len(captured.captured_queries)):
        # The newest period is written again (its source may have grown), then the new one.
        assert rollup(now=second + timedelta(minutes=5, seconds=30))[Resolution.FIVE_MINUTES] == 3 + 30
    sums = dict(
        MetricBucket.objects.filter(resolution=Resolution.FIVE_MINUTES, start=second).values_list("app_id", "requests")
    )
    assert sums == {app.pk: 30 * app.pk for app in many}
    print(f"\nrollup pass: {len(captured.captured_queries)} queries for 3 apps and for 30")


@pytest.mark.django_db
def test_series_points_and_summary(app: App) -> None:
    now = bucket_start(T0, 60) + timedelta(seconds=55)
    traffic(app, now - timedelta(seconds=50), [(200, 3)] * 4)
    traffic(app, now - timedelta(seconds=185), [(500, 30)] * 2)
    data = series(app.pk, start=now - timedelta(minutes=5), end=now, step=60, now=now)
    assert data["resolution"] == 10
    assert len(data["timestamps"]) == 6
    assert data["series"]["requests"] == [0, 0, 2, 0, 0, 4]
    assert data["series"]["error_rate"] == [None, None, 100.0, None, None, 0.0]
    assert data["summary"]["requests"] == 6
    assert data["summary"]["responses_5xx"] == 2


@pytest.mark.django_db
def test_old_events_and_deliveries_are_pruned(team_a, app: App, settings) -> None:
    from apps.alerts.models import Delivery, NotificationChannel
    from apps.events.models import PlatformEvent
    from apps.events.services import event_emit
    from apps.monitoring.housekeeping import prune_history

    settings.PANDASTACK_HISTORY_RETENTION_DAYS = 30
    old, recent = (event_emit(team=team_a.team, kind="health.down", subject=app, message=m) for m in ("old", "new"))
    PlatformEvent.objects.filter(pk=old.pk).update(created_at=T0 - timedelta(days=31))
    channel = NotificationChannel.objects.create(team=team_a.team, name="ops", kind="email", target="a@example.com")
    _done, retrying = (Delivery.objects.create(team=team_a.team, channel=channel, subject=s, status=st)
                      for s, st in (("done", "delivered"), ("retrying", "pending")))  # fmt: skip
    Delivery.objects.update(created_at=T0 - timedelta(days=40))
    assert prune_history(now=T0) == {"events": 1, "deliveries": 1}
    assert list(PlatformEvent.objects.values_list("pk", flat=True)) == [recent.pk]
    assert list(Delivery.objects.values_list("pk", flat=True)) == [retrying.pk]


@pytest.mark.django_db
def test_series_at_a_coarse_resolution_takes_the_latest_periods_from_finer_buckets(app: App, settings) -> None:
    """Hourly points for a 2-day range: hours already rolled up come from the 5-minute tier; the
    current hour, not rolled up yet, from the raw buckets — nothing missing at the end."""
    now = T0 + timedelta(minutes=30)
    for minutes in range(0, 150, 5):  # 12:00 -> 14:25 the day before... and up to now
        at = T0 - timedelta(hours=2) + timedelta(minutes=minutes)
        record(app_id=app.pk, team_id=app.team_id, at=at, requests=2)
    rollup(now=T0 + timedelta(seconds=20))  # rolls up the hours before T0 (not the current one)
    data = series(app.pk, start=now - timedelta(days=2), end=now, step=3600, now=now)
    assert data["resolution"] == 300
    assert data["summary"]["requests"] == 60  # every request once: rolled-up hours plus the raw newest ones
    assert data["series"]["requests"][-3:] == [24, 24, 12]


def test_a_step_no_stored_resolution_serves_is_a_clear_400(team_a, client_for, app) -> None:
    from tests.conftest import assert_error

    body = assert_error(
        client_for(team_a, "viewer").get("/api/v1/teams/alpha/apps/web/metrics/", {"range": "12h", "step": "60"}),
        400,
        "invalid",
    )
    assert "multiple of 300" in body["fields"]["step"][0]
