"""A failed webhook delivery must not tell a team how the platform's resolver sees the world: no
resolver messages, no private addresses a name resolved to, no socket errors. A team that could read
those from its delivery log (GET …/deliveries/) could map the platform's internal network through
webhook targets. The attacks use the real resolver and real sockets; before the fix the stored
`last_error` carried e.g. "localhost resolves to 127.0.0.1, a non-public address: refused",
"cannot resolve x.invalid: [Errno -2] Name or service not known" and "ConnectError: [Errno 111] …"."""

import socket

import pytest

from apps.alerts import services
from apps.alerts.models import Delivery, NotificationChannel
from apps.secrets import crypto

BASE = "/api/v1/teams/alpha/notification-channels/"
LEAKS = ("127.0.0.1", "::1", "Errno", "resolves to", "Name or service", "not known", "refused", "Error:")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def channel_on(team_a, target: str) -> NotificationChannel:
    # Straight into the table: the attacker's channel as it could exist after the operator changed
    # the policy, or after its name was re-pointed in DNS.
    return NotificationChannel.objects.create(
        team=team_a.team,
        name="probe",
        kind="webhook",
        target=target,
        signing_secret_encrypted=crypto.encrypt("whsec_test"),
    )


def failed_delivery_seen_over_the_api(client, channel: NotificationChannel) -> dict:
    delivery_id = client.post(f"{BASE}{channel.name}/test/").json()["id"]
    services.attempt(delivery_id)
    row = Delivery.objects.get(pk=delivery_id)
    assert row.status in ("pending", "failed") and row.last_error
    (listed,) = [d for d in client.get(f"{BASE}{channel.name}/deliveries/").json()["results"] if d["id"] == delivery_id]
    return listed


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, (leak, text)


@pytest.mark.parametrize("allow_private", [False, True])
def test_unresolvable_name_says_only_could_not_resolve(team_a, client_for, settings, allow_private):
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = allow_private
    channel = channel_on(team_a, "http://no-such-host.pandastack-test.invalid/hook")
    listed = failed_delivery_seen_over_the_api(client_for(team_a, "owner"), channel)
    assert listed["last_error"] == "could not resolve host"
    assert_no_leak(str(listed))


def test_name_resolving_to_a_private_address_is_refused_without_naming_the_address(team_a, client_for, settings):
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    channel = channel_on(team_a, f"http://localhost:{closed_port()}/hook")  # resolves to loopback
    listed = failed_delivery_seen_over_the_api(client_for(team_a, "owner"), channel)
    assert listed["last_error"] == "address not allowed"
    assert listed["status"] == "failed"
    assert_no_leak(str(listed))


def test_connection_error_is_generic(team_a, client_for, settings):
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    channel = channel_on(team_a, f"http://127.0.0.1:{closed_port()}/hook")
    listed = failed_delivery_seen_over_the_api(client_for(team_a, "owner"), channel)
    assert listed["last_error"] == "could not connect to the receiver"
    assert_no_leak(listed["last_error"])
