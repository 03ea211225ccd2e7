"""The app metrics endpoint: validation of range and step, who may read, and a query count that
does not grow with the data."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.deployments.models import App
from apps.monitoring.models import AppHealth
from apps.monitoring.services import record
from tests.conftest import assert_error

URL = "/api/v1/teams/alpha/apps/web/metrics/"


@pytest.fixture
def app(team_a) -> App:
    return App.objects.create(team=team_a.team, project=team_a.project, name="web")


def test_a_viewer_reads_an_apps_metrics(team_a, client_for, app):
    now = timezone.now()
    record(app_id=app.pk, team_id=app.team_id, at=now - timedelta(minutes=2), requests=10, responses_5xx=1,
           latency_ms_sum=40, latency_le_5ms=10, health_checks=3, health_failures=1)  # fmt: skip
    AppHealth.objects.create(app=app, status="up")
    response = client_for(team_a, "viewer").get(URL, {"range": "15m"})
    assert response.status_code == 200, response.json()
    data = response.json()
    assert (data["app"], data["step"], data["resolution"], data["health"]) == ("web", 10, 10, "up")
    assert len(data["timestamps"]) == len(data["series"]["requests"]) in (90, 91)
    assert data["summary"]["requests"] == 10
    assert data["summary"]["error_rate"] == 10.0
    assert data["summary"]["uptime_percent"] == pytest.approx(66.667)
    assert sum(data["series"]["requests"]) == 10


def test_defaults_and_coarse_steps(team_a, client_for, app):
    client = client_for(team_a, "viewer")
    data = client.get(URL).json()
    assert data["step"] == 10 and data["health"] == "unknown"  # 1 hour in 360 points
    data = client.get(URL, {"range": "7d"}).json()
    assert data["step"] == 3600 and data["resolution"] == 300  # the raw buckets are not kept a week
    data = client.get(URL, {"range": "60d", "step": "1d"}).json()
    assert data["resolution"] == 3600 and len(data["timestamps"]) in (60, 61)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"range": "soon"}, "range"),
        ({"range": "0"}, "range"),
        ({"range": "1y"}, "range"),
        ({"range": "400d"}, "range"),
        ({"step": "15"}, "step"),
        ({"step": "-10"}, "step"),
        ({"range": "6h", "step": "10"}, "step"),  # 2,160 points
    ],
)
def test_bad_range_or_step_is_a_clear_400(team_a, client_for, app, params, field):
    body = assert_error(client_for(team_a, "viewer").get(URL, params), 400, "invalid")
    assert field in body["fields"]


def test_another_teams_app_is_not_found(team_a, team_b, client_for):
    App.objects.create(team=team_b.team, project=team_b.project, name="web")
    assert_error(client_for(team_a, "owner").get(URL.replace("alpha", "bravo")), 404)
    assert_error(client_for(team_a, "owner").get(URL), 404)


def test_query_count_does_not_grow_with_the_data(team_a, client_for, app, django_assert_max_num_queries):
    client = client_for(team_a, "viewer")
    now = timezone.now()
    for count in (5, 300):
        for i in range(count):
            record(app_id=app.pk, team_id=app.team_id, at=now - timedelta(seconds=10 * i), requests=1)
        with django_assert_max_num_queries(9):
            assert client.get(URL, {"range": "1h"}).status_code == 200
