"""The Celery app against the real Redis broker: reliable delivery settings and a round trip
through an in-process worker."""

from celery.contrib.testing.worker import start_worker
from django.conf import settings

from apps.core.tasks import ping
from pandastack.celery import app


def test_reliable_delivery_settings():
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_time_limit and conf.task_soft_time_limit < conf.task_time_limit


def test_a_task_round_trips_through_redis_and_a_worker():
    assert settings.REDIS_URL, "the test suite runs with REDIS_URL set (scripts/test sets it)"
    assert app.conf.broker_url.startswith("redis://")
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert ping.delay().get(timeout=20) == "pong"
