"""Notification channels against real receivers: a local HTTP server stands in for the webhook and
Slack endpoints (real HTTP, real signatures); e-mail goes through Django's test mail outbox."""

import hashlib
import hmac
import json
import socket
import threading

import pytest
from django.core import mail
from django.db import connection, transaction

from apps.alerts import services
from apps.alerts.models import Delivery, NotificationChannel
from apps.alerts.tasks import delivery_attempt
from apps.core.errors import ValidationFailed
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
    assert delivery.last_error == services.ERROR_CONNECT  # generic: no socket error details
    assert client.get(f"{BASE}down/deliveries/").json()["results"][0]["status"] == "failed"


def test_email_and_slack_channels(team_a, client_for, receiver):
    client = client_for(team_a, "owner")
    create(client, name="mail", kind="email", target="ops@example.com")
    create(client, name="chat", kind="slack", target=receiver.url)
    # The e-mail address confirms first (tests/security/test_email_channel.py covers the refusals).
    channel = NotificationChannel.objects.get(name="mail")
    assert services.channel_verification_send(channel.pk) is True
    assert len(mail.outbox) == 1  # the code
    assert client.post(f"{BASE}mail/verify/", {"token": services.channel_verification_token(channel)}).json()[
        "verified"
    ]
    mail.outbox.clear()
    for name in ("mail", "chat"):
        assert services.attempt(client.post(f"{BASE}{name}/test/").json()["id"]) is None
    (message,) = mail.outbox
    assert message.to == ["ops@example.com"]
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
        # IPv6 forms that carry a private IPv4 address
        "http://[64:ff9b::7f00:1]/hook",  # NAT64 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 of the cloud metadata address
        "http://[2002:a00:1::1]/hook",  # 6to4 of 10.0.0.1
        "http://[::127.0.0.1]/hook",  # IPv4-compatible
        "http://[::ffff:0:192.168.0.10]/hook",  # IPv4-translated
        "http://[64:ff9b:1::808:808]/hook",  # NAT64 of a local network: where it leads is not ours to know
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
    assert row.last_error == services.ERROR_NOT_ALLOWED  # not the name, nor the address it resolved to
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("2002:c0a8:1::1", False),  # 6to4 of 192.168.0.1
        ("::8.8.8.8", True),
        ("::10.1.2.3", False),
        ("::ffff:0:8.8.8.8", True),
        ("::ffff:0:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("2606:4700::1111", True),
        ("fd00::1", False),
    ],
)
def test_ipv6_addresses_carrying_an_ipv4_address_are_judged_by_it(address, public):
    assert services._is_public(address) is public


# --- what a delivery connects to --------------------------------------------------------------------
HOOK_HOST = "hooks.example.test"


@pytest.fixture
def public_stand_in(monkeypatch, settings):
    """Private addresses refused, and the local receivers (127.0.0.1) standing in for a public
    address that HOOK_HOST resolves to, once: any later lookup of the name answers 10.0.0.1, as a
    name re-pointed at an internal address between the check and the connection would."""
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host == HOOK_HOST:
            lookups.append(host)
            host = "127.0.0.1" if len(lookups) == 1 else "10.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    real_is_public = services._is_public
    monkeypatch.setattr(services, "_is_public", lambda address: address == "127.0.0.1" or real_is_public(address))
    return lookups


def hook_channel(client, receiver: Receiver, name: str = "ops") -> None:
    port = receiver.server.server_address[1]
    create(client, name=name, kind="webhook", target=f"http://{HOOK_HOST}:{port}/hook")


def test_a_delivery_connects_to_the_address_it_checked_not_to_a_second_lookup(
    team_a, client_for, receiver, public_stand_in
):
    client = client_for(team_a, "developer")
    hook_channel(client, receiver)
    delivery_id = client.post(f"{BASE}ops/test/").json()["id"]
    assert services.attempt(delivery_id) is None
    assert Delivery.objects.get(pk=delivery_id).status == "delivered"
    assert public_stand_in == [HOOK_HOST]  # resolved once: the connection went to the checked address
    (request,) = receiver.requests
    port = receiver.server.server_address[1]
    assert request["headers"]["Host"] == f"{HOOK_HOST}:{port}"  # the site is still named


def test_a_delivery_ignores_proxies_from_the_environment(team_a, client_for, receiver, public_stand_in, monkeypatch):
    proxy = Receiver()  # would see the request if it went through a proxy
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = client_for(team_a, "developer")
        hook_channel(client, receiver)
        assert services.attempt(client.post(f"{BASE}ops/test/").json()["id"]) is None
        assert len(receiver.requests) == 1 and proxy.requests == []
    finally:
        proxy.close()


def test_with_private_addresses_allowed_a_delivery_goes_as_before(team_a, client_for, receiver, monkeypatch):
    """The operator allowed private addresses (the test settings do): no check, the name is looked
    up by the HTTP client, and a proxy from the environment is used."""
    proxy = Receiver()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server.server_address[1]}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        client = client_for(team_a, "developer")
        create(client, name="ops", kind="webhook", target=receiver.url)
        assert services.attempt(client.post(f"{BASE}ops/test/").json()["id"]) is None
        assert len(proxy.requests) == 1 and receiver.requests == []
    finally:
        proxy.close()


# --- who sees a webhook's URL -------------------------------------------------------------------------
def test_a_webhook_url_is_shown_in_full_only_to_who_may_manage_alerts(team_a, client_for):
    owner = client_for(team_a, "owner")
    slack = "https://hooks.slack.com/services/T000/B000/XXXXXXXX?x=1"
    create(owner, name="chat", kind="slack", target=slack)
    create(owner, name="hook", kind="webhook", target="https://user:pw@example.com:8443/p/secret")
    create(owner, name="mail", kind="email", target="ops@example.com")
    full = {"chat": slack, "hook": "https://user:pw@example.com:8443/p/secret", "mail": "ops@example.com"}
    for manager in (owner, client_for(team_a, "developer")):
        assert {c["name"]: c["target"] for c in manager.get(BASE).json()["results"]} == full
        assert manager.get(f"{BASE}chat/").json()["target"] == slack
    masked = {"chat": "https://hooks.slack.com/…", "hook": "https://example.com:8443/…", "mail": "ops@example.com"}
    for reader in (client_for(team_a, "viewer"), client_for(team_a, "owner", scopes=["read"])):
        assert {c["name"]: c["target"] for c in reader.get(BASE).json()["results"]} == masked
        assert reader.get(f"{BASE}chat/").json()["target"] == masked["chat"]


def test_a_channel_name_taken_by_a_concurrent_create_is_refused_like_any_taken_name(transactional_db, team_a):
    from apps.alerts.services import channel_create
    from tests.alerts.conftest import ctx_of

    ctx = ctx_of(team_a)
    inserted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                channel_create(ctx=ctx_of(team_a), name="ops", kind="email", target="a@example.com")
                inserted.set()
                release.wait(timeout=10)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert inserted.wait(timeout=10)
    threading.Timer(0.5, release.set).start()  # the insert below waits for the first to commit
    with pytest.raises(ValidationFailed) as caught:
        channel_create(ctx=ctx, name="ops", kind="email", target="b@example.com")
    thread.join(timeout=10)
    assert not errors, errors
    assert caught.value.fields == {"name": ["Already taken."]}
    assert NotificationChannel.objects.get(name="ops").target == "a@example.com"
