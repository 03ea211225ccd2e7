"""Monitoring on the real data plane: traffic through the real HAProxy is counted from its access
log by the monitor process (`manage.py run_monitor`), which also samples the real Docker Engine and
checks health through the router; alert rules fire to a local webhook receiver (real HTTP, real
signatures) through the real Celery worker."""

import hashlib
import hmac
import json
import time

import httpx
import pytest

from apps.alerts.models import Delivery, Incident
from apps.events.models import PlatformEvent
from apps.monitoring.models import AppHealth
from tests.conftest import make_team
from tests.e2e.test_deploy import create_app, deploy, host, owner_client
from tests.support.platform_fixtures import wait_for
from tests.support.receiver import Receiver

METRICS = "/api/v1/teams/alpha/apps/web/metrics/"


@pytest.fixture
def world(platform):
    return make_team("alpha")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def hit(platform, path: str, n: int) -> list[int]:
    with httpx.Client(base_url=f"http://127.0.0.1:{platform.router_port}", headers={"Host": host()}) as c:
        return [c.get(path, timeout=5).status_code for _ in range(n)]


def summary(client) -> dict:
    response = client.get(METRICS, {"range": "15m"})
    assert response.status_code == 200, response.json()
    return response.json()


def test_router_traffic_engine_stats_and_health_become_metrics(platform, monitor, world, web_image):
    client = owner_client(world)
    create_app(client, health_check_path="/cgi-bin/health")
    deploy(client, web_image, platform=platform)
    assert hit(platform, "/", 30) == [200] * 30
    assert hit(platform, "/cgi-bin/fail", 10) == [500] * 10
    assert hit(platform, "/missing", 5) == [404] * 5
    # Looking like a health check is not enough to go uncounted (the monitor's carry a secret).
    spoof = {"Host": host(), "User-Agent": "PandaStack-Health/1", "X-PandaStack-Health": "guess"}
    assert httpx.get(f"http://127.0.0.1:{platform.router_port}/", headers=spoof).status_code == 200

    # Exactly the traffic sent: the monitor's own health checks are not counted as requests.
    def counted() -> dict | None:
        data = summary(client)
        return data if data["summary"]["requests"] >= 46 else None

    data = wait_for(counted, timeout=15, what="the access log to be counted")["summary"]
    assert data["requests"] == 46
    assert data["responses_5xx"] == 10 and data["responses_4xx"] == 5
    assert data["error_rate"] == pytest.approx(100 * 10 / 46, abs=0.01)
    assert data["latency_p50_ms"] is not None and data["latency_p99_ms"] >= data["latency_p50_ms"]

    def sampled() -> dict | None:
        data = summary(client)
        s = data["summary"]
        return data if s["memory_mb"] and s["cpu_percent"] is not None and s["health_checks"] >= 2 else None

    data = wait_for(sampled, timeout=15, what="engine samples and health checks")
    assert 0 < data["summary"]["memory_mb"] < 256
    assert data["summary"]["uptime_percent"] == 100.0
    assert data["health"] == "up"
    assert sum(data["series"]["requests"]) == 46


def test_a_health_check_that_goes_down_and_up_opens_and_resolves_an_incident(platform, monitor, world, web_image):
    client = owner_client(world)
    create_app(client, health_check_path="/cgi-bin/health")
    deploy(client, web_image, platform=platform)
    response = client.post(
        "/api/v1/teams/alpha/alert-rules/",
        {"name": "web-down", "scope": "app", "app": "web", "metric": "up", "operator": "lt", "threshold": 1,
         "window_seconds": 60, "for_seconds": 0, "severity": "critical"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    wait_for(lambda: AppHealth.objects.filter(app__name="web", status="up").exists(), timeout=15, what="health up")

    assert hit(platform, "/cgi-bin/down", 1) == [200]
    wait_for(lambda: Incident.objects.filter(status="open").first(), timeout=15, what="an incident to open")
    assert PlatformEvent.objects.filter(kind="health.down").count() == 1
    assert hit(platform, "/cgi-bin/up", 1) == [200]
    incident = wait_for(
        lambda: Incident.objects.filter(status="resolved").first(), timeout=15, what="the incident to resolve"
    )
    assert incident.resolved_by == "auto"
    timeline = client.get(f"/api/v1/teams/alpha/incidents/{incident.number}/timeline/").json()["results"]
    kinds = [entry["kind"] for entry in timeline]
    for kind in ("deployment.succeeded", "health.down", "alert.firing", "health.up", "alert.resolved"):
        assert kind in kinds, kinds
    assert kinds.index("health.down") < kinds.index("health.up")


def test_an_error_spike_fires_one_signed_webhook_and_resolves(platform, monitor, world, web_image, receiver):
    client = owner_client(world)
    create_app(client)
    deploy(client, web_image, platform=platform)
    channel = client.post(
        "/api/v1/teams/alpha/notification-channels/",
        {"name": "ops", "kind": "webhook", "target": receiver.url},
        format="json",
    ).json()
    response = client.post(
        "/api/v1/teams/alpha/alert-rules/",
        {"name": "errors", "scope": "app", "app": "web", "metric": "error_rate", "operator": "gt", "threshold": 5,
         "window_seconds": 30, "for_seconds": 0, "severity": "critical", "channels": ["ops"]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    # Traffic with a share of 500s for a few seconds.
    for _ in range(6):
        hit(platform, "/", 8)
        hit(platform, "/cgi-bin/fail", 2)
        time.sleep(0.5)

    def firing_deliveries() -> list:
        return [r for r in receiver.requests if json.loads(r["body"])["trigger"] == "alert"]

    # Counted once their 10-second bucket has ended and been flushed (rules read complete buckets).
    wait_for(firing_deliveries, timeout=30, what="the webhook delivery")
    delivered = firing_deliveries()[0]
    body, headers = delivered["body"], delivered["headers"]
    expected = hmac.new(
        channel["signing_secret"].encode(), headers["X-PandaStack-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert headers["X-PandaStack-Signature"] == "sha256=" + expected
    assert json.loads(body)["data"]["rule"] == "errors"

    # The errors stop (good traffic only): the rule resolves once they leave its 30 s window.
    def resolved() -> list:
        hit(platform, "/", 2)
        return [r for r in receiver.requests if json.loads(r["body"])["trigger"] == "resolved"]

    wait_for(resolved, timeout=60, what="the resolution")
    time.sleep(1.5)  # a few more evaluations: still no second notification
    triggers = [json.loads(r["body"])["trigger"] for r in receiver.requests]
    assert triggers == ["alert", "resolved"]
    assert Delivery.objects.filter(trigger="alert").count() == 1


def test_a_killed_container_fires_a_crash_rule(platform, monitor, world, web_image):
    import docker

    from apps.deployments import orchestrator
    from apps.deployments.models import Container

    client = owner_client(world)
    create_app(client)
    deploy(client, web_image, platform=platform)
    response = client.post(
        "/api/v1/teams/alpha/alert-rules/",
        {"name": "crashes", "scope": "app", "app": "web", "metric": "event", "event_kind": "container.crashed",
         "operator": "gte", "threshold": 1, "window_seconds": 300},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    docker.from_env().containers.get(Container.objects.get().name).kill()
    orchestrator.reconcile()  # what the beat-scheduled reconciler does every few seconds
    rule = wait_for(
        lambda: client.get("/api/v1/teams/alpha/alert-rules/crashes/").json()["state"] == "firing",
        timeout=15,
        what="the crash rule to fire",
    )
    assert rule
    data = summary(client)
    assert data["summary"]["restarts"] == 1


def test_the_prometheus_endpoint_needs_its_token_and_shows_platform_and_app_metrics(
    platform, monitor, world, web_image, settings, client
):
    settings.PANDASTACK_PROMETHEUS_TOKEN = "prom-secret-token"
    api = owner_client(world)
    create_app(api)
    deploy(api, web_image, platform=platform)
    hit(platform, "/", 3)
    hit(platform, "/cgi-bin/fail", 1)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer prom-secret-token")
    assert response.status_code == 200
    text = response.content.decode()
    assert "pandastack_teams 1.0" in text
    assert 'pandastack_deployments{status="live"} 1.0' in text
    assert "pandastack_router_up 1.0" in text
    assert 'pandastack_app_http_requests_total{app="web",team="alpha"}' in text
    assert 'pandastack_app_http_responses_total{app="web",code="5xx",team="alpha"} 1.0' in text
    settings.PANDASTACK_PROMETHEUS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer prom-secret-token").status_code == 404
