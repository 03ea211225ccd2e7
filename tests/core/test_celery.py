"""The Celery app against the real Redis broker: reliable delivery settings and a round trip
through an in-process worker."""

import logging

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


def test_the_workers_lines_for_the_sweep_every_2s_are_dropped_and_its_failures_kept(caplog):
    from apps.core.tasks import take_over_stale_work

    assert take_over_stale_work.name in app.conf.beat_schedule["takeover"]["task"]
    trace = logging.getLogger("celery.app.trace")
    with caplog.at_level(logging.INFO, logger="celery.app.trace"):
        trace.info("Task %s[%s] succeeded in %ss: %r", take_over_stale_work.name, "id-1", 0.01, {})
        trace.info("Task %s[%s] succeeded in %ss: %r", "deployments.run", "id-2", 1.0, None)
        trace.error("Task %s[%s] raised unexpected: %r", take_over_stale_work.name, "id-3", "boom")
    assert [r.getMessage()[:40] for r in caplog.records] == [
        "Task deployments.run[id-2] succeeded in ",
        "Task core.take_over_stale_work[id-3] rai",
    ]
