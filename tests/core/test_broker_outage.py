"""Redis (the broker and the cache) down, as the web sees it: a write that needs a worker answers 503
`service_unavailable` at once and writes nothing; reads keep working; work whose intent was committed
while the broker was away is kept in the database and published when it is back, under its own task
id. Against a real redis-server of the test's own, stopped and started again (the suite's Redis is
never stopped). No worker runs here: tests/e2e/test_outages.py drills the whole platform."""

import json
import time

import pytest
import redis
from django.db import transaction

from apps.audit.models import AuditEvent
from apps.core.broker import enqueue, relay_pending_tasks
from apps.core.models import PendingTask
from apps.deployments import tasks
from apps.deployments.models import App, Deployment
from tests.conftest import assert_error
from tests.support.outage import RestartableRedis, redis_as_broker_and_cache

APPS = "/api/v1/teams/alpha/apps"
FAST = 2.0  # seconds: the 503 must come at once, not after a connect timeout or Celery's retries


@pytest.fixture
def broker(settings, monkeypatch):
    server = RestartableRedis()
    server.start()
    try:
        with redis_as_broker_and_cache(settings, monkeypatch, server):
            yield server
    finally:
        server.close()


@pytest.fixture
def app(team_a) -> App:
    return App.objects.create(team=team_a.team, project=team_a.project, name="web")


def queued_ids(broker: RestartableRedis) -> list[str]:
    """The ids of the task messages waiting in the broker's default queue."""
    client = redis.Redis.from_url(broker.url(1))
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange("celery", 0, -1)]


def written() -> tuple[int, int]:
    return Deployment.objects.count(), AuditEvent.objects.count()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", f"{APPS}/web/deployments/", {"image": "nginx:1"}),
        ("post", f"{APPS}/web/scale/", {"replicas": 2}),
        ("post", f"{APPS}/web/stop/", None),
        ("delete", f"{APPS}/web/", {"confirm": "web"}),
    ],
    ids=["deploy", "scale", "stop", "delete"],
)
def test_a_write_that_needs_a_worker_answers_503_at_once_and_changes_nothing(
    broker, app, team_a, client_for, method, path, body
):
    client = client_for(team_a)
    broker.stop()
    before = written()
    started = time.monotonic()
    response = getattr(client, method)(path, body, format="json")
    took = time.monotonic() - started
    error = assert_error(response, 503, "service_unavailable")
    assert "Nothing was changed" in error["message"], error
    assert error["retry_after"] == 10 and response["Retry-After"] == "10"
    assert took < FAST, f"the 503 took {took:.2f}s"
    assert written() == before
    app.refresh_from_db()
    assert (app.replicas, app.desired_running) == (1, True)


def test_reads_keep_working_while_redis_is_down(broker, app, team_a, client_for):
    """The API throttle counts in the cache: with Redis gone it lets requests through (logged), so
    reading the platform's state keeps working in an incident."""
    client = client_for(team_a)
    broker.stop()
    for path in (f"{APPS}/", f"{APPS}/web/", f"{APPS}/web/deployments/"):
        assert client.get(path).status_code == 200, path


def test_a_password_login_answers_503_not_500_while_the_cache_is_down(broker, team_a, client):
    """The guessing throttle of password logins lives in the cache; without it, logins are refused
    (503) rather than let through unchecked or answered with a 500."""
    broker.stop()
    response = client.post("/admin/login/", {"username": team_a.user().email, "password": "wrong"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


def test_a_new_app_is_created_while_the_broker_is_down_and_its_router_sync_runs_later(
    broker, team_a, client_for, django_capture_on_commit_callbacks
):
    """Creating an app needs no worker to be useful, so it is not refused: its router sync (which the
    first deploy and the reconciler also do) is kept and published when the broker is back."""
    client = client_for(team_a)
    broker.stop()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{APPS}/", {"name": "web", "project": "web", "port": 8080}, format="json")
    assert response.status_code == 201, response.json()
    kept = PendingTask.objects.get()
    assert (kept.task, kept.args) == ("deployments.sync_router", [])
    assert relay_pending_tasks() == 0  # still down: kept, one more attempt noted
    kept.refresh_from_db()
    assert kept.attempts == 1 and "Connection" in kept.last_error

    broker.start()
    assert relay_pending_tasks() == 1
    assert not PendingTask.objects.exists()
    assert queued_ids(broker) == [kept.task_id]  # published under the id it was given at first


def test_a_broker_lost_between_the_check_and_the_commit_loses_no_task(broker, app, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        task_id = enqueue(tasks.app_converge, app.pk)  # the broker answers: the change goes ahead
        broker.stop()  # ... and is gone when the transaction commits
    kept = PendingTask.objects.get()
    assert (kept.task, kept.args, kept.task_id) == ("deployments.converge_app", [app.pk], task_id)

    broker.start()
    assert relay_pending_tasks() == 1
    assert queued_ids(broker) == [task_id]


def test_with_the_broker_up_a_task_is_published_once_and_nothing_is_kept(
    broker, app, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        task_id = enqueue(tasks.app_converge, app.pk)
    assert queued_ids(broker) == [task_id]
    assert not PendingTask.objects.exists()
