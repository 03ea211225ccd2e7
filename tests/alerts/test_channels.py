"""Notification channels against real receivers: a local HTTP server stands in for the webhook and
Slack endpoints (real HTTP, real signatures); e-mail goes through Django's test mail outbox."""

import hashlib
import hmac
import json
import socket

import pytest
from django.core import mail
from django.db import connection

from apps.alerts import services
from apps.alerts.models import Delivery, NotificationChannel
from apps.alerts.tasks import delivery_attempt
from tests.conftest import assert_error
from tests.support.receiver import Receiver

BASE = "/api/v1/teams/alpha/notification-channels/"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens there any more


def create(client, **body):
    response = client.post(BASE, body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_signed_test_delivery_reaches_the_webhook_and_the_secret_is_shown_once(team_a, client_for, receiver):
    client = client_for(team_a, "developer")
    channel = create(client, name="ops", kind="webhook", target=receiver.url)
    secret = channel["signing_secret"]
    assert secret.startswith("whsec_") and channel["signed"]
    assert "signing_secret" not in client.get(f"{BASE}ops/").json()
    with connection.cursor() as cursor:
        cursor.execute("SELECT signing_secret_encrypted FROM alerts_notificationchannel")
        assert secret not in cursor.fetchone()[0]

    response = client.post(f"{BASE}ops/test/")
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert services.attempt(response.json()["id"]) is None  # what the worker's task does
    (request,) = receiver.requests
    headers = request["headers"]
    expected = hmac.new(
        secret.encode(), headers["X-PandaStack-Timestamp"].encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    assert headers["X-PandaStack-Signature"] == f"sha256={expected}"
    payload = json.loads(request["body"])
    assert payload["trigger"] == "test" and payload["data"]["team"] == "alpha"
    log = client.get(f"{BASE}ops/deliveries/").json()["results"]
    assert log[0]["status"] == "delivered" and log[0]["attempts"] == 1 and log[0]["response_status"] == 200


def test_a_failing_receiver_is_retried_with_backoff_then_delivered(team_a, client_for, receiver, settings):
    settings.PANDASTACK_DELIVERY_BACKOFF_SECONDS = 2.0
    client = client_for(team_a, "owner")
    create(client, name="ops", kind="webhook", target=receiver.url)
    receiver.statuses = [500, 502]
    delivery_id = client.post(f"{BASE}ops/test/").json()["id"]
    assert services.attempt(delivery_id) == 2.0
    assert services.attempt(delivery_id) == 4.0
    assert services.attempt(delivery_id) is None
    delivery = Delivery.objects.get(pk=delivery_id)
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 3, 200)
    assert len(receiver.requests) == 3


def test_a_receiver_that_is_down_ends_in_a_recorded_failure_and_nothing_is_lost(team_a, client_for, settings):
    settings.PANDASTACK_DELIVERY_BACKOFF_SECONDS = 0.0
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from pandastack.celery import app as celery_app

    celery_app.conf.task_always_eager = True
    try:
        client = client_for(team_a, "owner")
        create(client, name="down", kind="webhook", target=closed_port_url())
        delivery_id = client.post(f"{BASE}down/test/").json()["id"]
        delivery_attempt.apply(args=[delivery_id])  # the task, retrying until it gives up
    finally:
        celery_app.conf.task_always_eager = False
    delivery = Delivery.objects.get(pk=delivery_id)
    assert delivery.status == "failed" and delivery.attempts == services.MAX_ATTEMPTS
    assert "ConnectError" in delivery.last_error
    assert client.get(f"{BASE}down/deliveries/").json()["results"][0]["status"] == "failed"


def test_email_and_slack_channels(team_a, client_for, receiver):
    client = client_for(team_a, "owner")
    create(client, name="mail", kind="email", target="ops@example.com, oncall@example.com")
    create(client, name="chat", kind="slack", target=receiver.url)
    for name in ("mail", "chat"):
        assert services.attempt(client.post(f"{BASE}{name}/test/").json()["id"]) is None
    (message,) = mail.outbox
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert message.subject.startswith("Test notification from PandaStack")
    (request,) = receiver.requests
    assert json.loads(request["body"])["text"].startswith("Test notification from PandaStack")
    assert "X-PandaStack-Signature" not in request["headers"]


def test_permissions_and_validation(team_a, client_for):
    viewer = client_for(team_a, "viewer")
    assert_error(viewer.post(BASE, {"name": "x", "kind": "email", "target": "a@example.com"}, format="json"), 403)
    no_deploy = client_for(team_a, "owner", scopes=["read", "logs"])
    assert_error(no_deploy.post(BASE, {"name": "x", "kind": "email", "target": "a@example.com"}, format="json"), 403)
    owner = client_for(team_a, "owner")
    error = assert_error(owner.post(BASE, {"name": "x", "kind": "webhook", "target": "ftp://x"}, format="json"), 400)
    assert "target" in error["fields"]
    error = assert_error(owner.post(BASE, {"name": "x", "kind": "email", "target": "not-mail"}, format="json"), 400)
    assert "target" in error["fields"]
    assert not NotificationChannel.objects.exists()
    create(owner, name="x", kind="email", target="a@example.com")
    assert_error(owner.delete(f"{BASE}x/", {"confirm": "y"}, format="json"), 400)
    assert owner.delete(f"{BASE}x/", {"confirm": "x"}, format="json").status_code == 204


def test_a_disabled_channel_sends_nothing(team_a, client_for):
    owner = client_for(team_a, "owner")
    create(owner, name="quiet", kind="email", target="a@example.com")
    assert owner.patch(f"{BASE}quiet/", {"enabled": False}, format="json").json()["enabled"] is False
    assert_error(owner.post(f"{BASE}quiet/test/"), 409, "channel_disabled")
    assert not Delivery.objects.exists()


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "https://api.localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_webhooks_to_private_addresses_are_refused_unless_the_operator_allows_them(
    team_a, client_for, settings, target
):
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    client = client_for(team_a, "developer")
    response = client.post(BASE, {"name": "internal", "kind": "webhook", "target": target}, format="json")
    body = assert_error(response, 400, "invalid")
    assert "private" in body["message"] and "target" in body["fields"]
    assert not NotificationChannel.objects.exists()
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    response = client.post(BASE, {"name": "internal", "kind": "webhook", "target": target}, format="json")
    assert response.status_code == 201


def test_a_name_that_resolves_to_a_private_address_is_refused_when_sending(team_a, client_for, settings, receiver):
    """Checked again before each attempt, on the addresses the name resolves to: here a channel made
    while private addresses were allowed, sent after the operator refused them."""
    client = client_for(team_a, "developer")
    create(client, name="ops", kind="webhook", target=receiver.url.replace("127.0.0.1", "localhost"))
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    delivery = client.post(f"{BASE}ops/test/").json()
    delivery_attempt.apply(args=[delivery["id"]])
    row = Delivery.objects.get(pk=delivery["id"])
    assert row.status == "failed" and row.attempts == 1  # final at once: retrying cannot change the policy
    assert "non-public address: refused" in row.last_error
    assert receiver.requests == []
