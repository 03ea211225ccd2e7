"""panda metrics: what it asks for, the summary and sparklines (or --table) it prints, --json, usage
errors (exit 2, and no request) and API errors.

The API is faked with httpx.MockTransport: allowed here because these tests check the CLI's own
request and response handling; end-to-end tests against the real server are separate.
"""

import json
import time

import pytest
from conftest import api_error, reply

from panda_cli.metrics import sparkline

METRICS = "/api/v1/teams/acme/apps/web/metrics/"
SERIES = (
    "requests", "responses_4xx", "responses_5xx", "error_rate", "latency_p50_ms", "latency_p95_ms",
    "latency_p99_ms", "cpu_percent", "memory_mb", "restarts", "uptime_percent",
)  # fmt: skip


def metrics_json(**overrides):
    stamps = ["2025-01-31T12:00:00Z", "2025-01-31T12:01:00Z", "2025-01-31T12:02:00Z", "2025-01-31T12:03:00Z"]
    series = {name: [1, 2, 3, 4] for name in SERIES}
    series.update(
        {
            "requests": [10, 40, None, 80],
            "responses_5xx": [0, 0, None, 4],
            "error_rate": [0.0, 0.0, None, 5.0],
            "latency_p95_ms": [120.0, 80.5, None, 410.25],
        }
    )
    data = {
        "app": "web",
        "start": "2025-01-31T12:00:00Z",
        "end": "2025-01-31T12:04:00Z",
        "step": 60,
        "resolution": 10,
        "timestamps": stamps,
        "series": series,
        "summary": {
            "requests": 130,
            "responses_4xx": 7,
            "responses_5xx": 4,
            "error_rate": 3.0769,
            "latency_p50_ms": 35,
            "latency_p95_ms": 410.25,
            "latency_p99_ms": None,
            "latency_avg_ms": 51.5,
            "cpu_percent": 12.345,
            "memory_mb": 256,
            "restarts": 1,
            "uptime_percent": 99.5,
            "health_checks": 200,
        },
        "health": "up",
    }
    data.update(overrides)
    return data


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC, so times print as the API sent them."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_sparkline_scales_from_zero_to_the_peak_and_marks_gaps():
    assert sparkline([0, 2, None, 8]) == ("▁▃·█", 1)
    assert sparkline([0, 0]) == ("▁▁", 1)
    assert sparkline([None, None]) == ("··", 1)
    assert sparkline([]) == ("", 1)


def test_sparkline_folds_a_long_series_keeping_spikes():
    line, per_mark = sparkline([0] * 50 + [100] + [0] * 69, width=60)
    assert per_mark == 2
    assert len(line) == 60
    assert line.count("█") == 1


def test_metrics_prints_a_summary_and_sparklines(run, api, utc):
    api.on("GET", METRICS, reply(200, metrics_json()))

    result = run("metrics", "--app", "web")

    assert result.exit_code == 0, result.stderr
    (request,) = api.requests
    assert dict(request.url.params) == {"range": "1h"}
    out = result.stdout
    assert "App:        web" in out
    assert "Step:       1m (from 10s buckets)" in out
    assert "Health:     up" in out
    assert "Requests:   130 (7 4xx, 4 5xx)" in out
    assert "Error rate: 3.08%" in out
    assert "Latency:    p50 35 ms, p95 410.25 ms, p99 -, avg 51.5 ms" in out
    assert "CPU:        12.35%" in out
    assert "Memory:     256 MB" in out
    assert "Restarts:   1" in out
    assert "Uptime:     99.5% (200 health checks)" in out
    lines = out.splitlines()
    assert "requests  ▂▅·█  max 80" in lines
    assert "5xx       ▁▁·█  max 4" in lines
    assert "p95       ▃▂·█  max 410.25 ms" in lines
    assert lines[-1].strip() == "2025-01-31 12:00 → 12:03, a mark per 1m"
    assert "Period:     2025-01-31 12:00 → 12:04" in out


def test_metrics_range_and_step(run, api):
    api.on("GET", METRICS, reply(200, metrics_json(step=300)))
    result = run("metrics", "-a", "web", "--range", "6H", "--step", "5m")
    assert result.exit_code == 0, result.stderr
    assert dict(api.requests[0].url.params) == {"range": "6h", "step": "300"}
    assert run("metrics", "-a", "web", "--range", "1h30m", "--step", "90").exit_code == 0
    assert dict(api.requests[1].url.params) == {"range": "5400", "step": "90"}


def test_metrics_table_has_a_row_per_step(run, api):
    api.on("GET", METRICS, reply(200, metrics_json()))
    result = run("metrics", "-a", "web", "--table")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("TIME"))
    assert header.split()[:6] == ["TIME", "REQUESTS", "4XX", "5XX", "ERRORS", "P50"]
    rows = lines[lines.index(header) + 1 :]
    assert len(rows) == 4
    assert rows[1].split()[2:6] == ["40", "2", "0", "0%"]
    assert rows[2].split()[2:5] == ["-", "3", "-"]
    assert "410.25" in rows[3]
    assert "▁" not in result.stdout


def test_metrics_json_prints_the_api_answer(run, api):
    api.on("GET", METRICS, reply(200, metrics_json()))
    result = run("metrics", "-a", "web", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == metrics_json()


def test_metrics_without_data_points(run, api):
    empty = metrics_json(timestamps=[], series={}, summary=dict.fromkeys(SERIES), health="unknown")
    api.on("GET", METRICS, reply(200, empty))
    result = run("metrics", "-a", "web")
    assert result.exit_code == 0, result.stderr
    assert "Health:     unknown" in result.stdout
    assert "Requests:   - (- 4xx, - 5xx)" in result.stdout
    assert "No data points for web in this period." in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--range", "an hour"], "--range: 'an hour' is not a duration"),
        (["--range", "0m"], "--range must be longer than 0 seconds"),
        (["--step", "1.5m"], "--step: '1.5m' is not a duration"),
        (["--step", "0"], "--step must be longer than 0 seconds"),
    ],
)
def test_metrics_bad_durations_exit_2_without_a_request(run, api, args, message):
    result = run("metrics", "-a", "web", *args)
    assert result.exit_code == 2
    assert f"error: {message}" in result.stderr
    assert api.requests == []


def test_metrics_needs_an_app(run, api):
    result = run("metrics")
    assert result.exit_code == 2
    assert "--app" in result.stderr
    assert api.requests == []


def test_metrics_reports_the_api_error(run, api):
    api.on(
        "GET",
        METRICS,
        api_error(400, "invalid", "Invalid input.", fields={"range": ["Choose one of 15m, 1h, 6h, 1d, 7d."]}),
    )
    result = run("metrics", "-a", "web", "--range", "2h")
    assert result.exit_code == 1
    assert "error: Invalid input. (invalid)" in result.stderr
    assert "range: Choose one of 15m, 1h, 6h, 1d, 7d." in result.stderr
    assert result.stdout == ""


def test_metrics_of_an_unknown_app(run, api):
    api.on("GET", "/api/v1/teams/acme/apps/ghost/metrics/", api_error(404, "not_found", "Not found."))
    result = run("metrics", "-a", "ghost")
    assert result.exit_code == 1
    assert "Not found. (not_found)" in result.stderr
