"""The access-log listener on a real UNIX datagram socket (what HAProxy sends to), its takeover of a
stale socket, and the monitor's single collector per host."""

import socket
import threading
import time
from pathlib import Path

import pytest

from apps.monitoring.collectors import AccessLogListener, TrafficCounts
from apps.monitoring.monitor import Monitor


def send(port: int, *lines: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for line in lines:
            s.sendto(line, ("127.0.0.1", port))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_listener_counts_datagrams_and_ignores_other_backends() -> None:
    counts = TrafficCounts()
    listener = AccessLogListener(0, counts)
    listener.start()
    try:
        send(listener.port, b"app_1 200 3\n", b"app_1 503 40\n", b"ps.no_app 503 0\n", b"app_2 404 1\n")
        wait_until(lambda: listener.received == 3)
    finally:
        listener.stop()
    by_app: dict[int, dict[str, int]] = {}
    for (app_id, _start), values in counts.take().items():
        for key, value in values.items():
            by_app.setdefault(app_id, {}).setdefault(key, 0)
            by_app[app_id][key] += value
    assert by_app[1]["requests"] == 2 and by_app[1]["responses_5xx"] == 1 and by_app[1]["latency_ms_sum"] == 43
    assert by_app[2] == {"requests": 1, "latency_ms_sum": 1, "latency_le_5ms": 1, "responses_4xx": 1}


def test_a_burst_is_not_lost_and_a_second_listener_is_refused() -> None:
    counts = TrafficCounts()
    first = AccessLogListener(0, counts)
    first.start()
    try:
        with pytest.raises(RuntimeError, match="another monitor"):
            AccessLogListener(first.port, TrafficCounts()).start()
        send(first.port, *[b"app_9 200 1"] * 2000)  # faster than any router sends
        wait_until(lambda: first.received == 2000)
    finally:
        first.stop()
    assert sum(v["requests"] for v in counts.take().values()) == 2000


@pytest.mark.django_db(transaction=True)
def test_one_monitor_collects_and_a_second_stands_by_until_it_stops(tmp_path: Path, settings) -> None:
    settings.PANDASTACK_STATS_INTERVAL = 3600  # no engine work needed here
    settings.PANDASTACK_HEALTH_CHECK_INTERVAL = 3600
    settings.PANDASTACK_ALERT_EVALUATION_INTERVAL = 3600
    messages: list[str] = []
    port = free_udp_port()
    first = Monitor(router_dir=tmp_path, access_log_port=port, on_change=messages.append)
    second = Monitor(router_dir=tmp_path, access_log_port=port, on_change=messages.append)
    threads = [threading.Thread(target=m.run, daemon=True) for m in (first, second)]
    threads[0].start()
    wait_until(lambda: first.listener is not None)
    threads[1].start()
    wait_until(lambda: any("standing by" in m for m in messages))
    assert second.listener is None
    first.stop()
    threads[0].join(10)
    wait_until(lambda: second.listener is not None, timeout=10)  # took over
    second.stop()
    threads[1].join(10)
    assert not any(t.is_alive() for t in threads)


@pytest.mark.django_db
def test_prometheus_endpoint_query_count_stays_flat_as_apps_grow(
    team_a, client, settings, django_assert_max_num_queries
):
    """The router is not running here: the endpoint says so (pandastack_router_up 0) and still answers."""
    from apps.deployments.models import App
    from apps.monitoring.services import record

    settings.PANDASTACK_PROMETHEUS_TOKEN = "t0ken"
    settings.PANDASTACK_ROUTER_DIR = "/nonexistent/pandastack-router"
    from apps.deployments import orchestrator

    orchestrator.router.cache_clear()
    try:
        for n in (2, 40):
            for i in range(App.objects.count(), n):
                app = App.objects.create(team=team_a.team, project=team_a.project, name=f"app{i}")
                record(app_id=app.pk, team_id=app.team_id, requests=3, latency_le_5ms=3, resource_samples=1,
                       cpu_percent_sum=5, cpu_samples=1, memory_bytes_max=2**20)  # fmt: skip
            with django_assert_max_num_queries(14):
                response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken")
            assert response.status_code == 200
            text = response.content.decode()
            assert "pandastack_router_up 0.0" in text
            assert text.count("pandastack_app_cpu_percent{") == n
    finally:
        orchestrator.router.cache_clear()
