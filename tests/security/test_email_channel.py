"""An e-mail channel sends only to its own address, and only once that address has confirmed it
wants the mail: otherwise any team member could make the platform mail anyone (spam, phishing in the
platform's name) through the channel's test action or its alerts.

No mail provider can run here, so messages go through Django's locmem mail backend (the test
settings' outbox): what is asserted is whom the platform hands each message to. Before the fix a
channel could name any addresses (comma-separated), `…/test/` mailed them at once, and alerts did too."""

import pytest
from django.core import mail

from apps.alerts import services
from apps.alerts.models import Delivery, NotificationChannel
from tests.conftest import assert_error

BASE = "/api/v1/teams/alpha/notification-channels/"
VICTIM = "victim@example.org"


@pytest.fixture
def owner(team_a, client_for):
    return client_for(team_a, "owner")


def create_mail_channel(owner, django_capture_on_commit_callbacks, target: str = VICTIM) -> NotificationChannel:
    with django_capture_on_commit_callbacks() as callbacks:
        response = owner.post(BASE, {"name": "mail", "kind": "email", "target": target}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["verified"] is False
    assert len(callbacks) == 1  # the verification e-mail, queued for a worker
    return NotificationChannel.objects.get(name="mail")


def test_unverified_address_gets_no_test_and_no_alert_mail(owner, django_capture_on_commit_callbacks):
    channel = create_mail_channel(owner, django_capture_on_commit_callbacks)
    assert_error(owner.post(f"{BASE}mail/test/"), 409, "channel_unverified")
    # There is no other recipient to name: a `to` in the body is not a thing.
    assert_error(owner.post(f"{BASE}mail/test/", {"to": "someone@example.net"}, format="json"), 409)
    # An alert's notification queued anyway is refused where mail leaves, for good.
    delivery = services.notify(channel=channel, trigger="alert", subject="firing", payload={})
    assert services.attempt(delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("failed", "the e-mail address is not verified")
    assert mail.outbox == []


def test_the_address_confirms_with_the_code_sent_to_it_and_only_it_gets_mail(
    owner, django_capture_on_commit_callbacks
):
    channel = create_mail_channel(owner, django_capture_on_commit_callbacks)
    assert services.channel_verification_send(channel.pk) is True  # what the worker runs
    (code_mail,) = mail.outbox
    assert code_mail.to == [VICTIM]
    token = services.channel_verification_token(channel)
    assert token in code_mail.body
    # A forged or foreign code is refused.
    for bad in ("x", token[:-2] + "zz", token.replace(":", ";")):
        assert_error(owner.post(f"{BASE}mail/verify/", {"token": bad}, format="json"), 400, "invalid")
    assert owner.post(f"{BASE}mail/verify/", {"token": token}, format="json").json()["verified"] is True
    mail.outbox.clear()
    delivery_id = owner.post(f"{BASE}mail/test/").json()["id"]
    assert services.attempt(delivery_id) is None
    assert Delivery.objects.get(pk=delivery_id).status == "delivered"
    (test_mail,) = mail.outbox
    assert test_mail.to == [VICTIM]


def test_changing_the_address_needs_a_new_confirmation(owner, django_capture_on_commit_callbacks):
    channel = create_mail_channel(owner, django_capture_on_commit_callbacks)
    old_token = services.channel_verification_token(channel)
    owner.post(f"{BASE}mail/verify/", {"token": old_token}, format="json")
    with django_capture_on_commit_callbacks() as callbacks:
        response = owner.patch(f"{BASE}mail/", {"target": "other@example.net"}, format="json")
    assert response.json()["verified"] is False and len(callbacks) == 1
    # The old address's code does not verify the new address.
    assert_error(owner.post(f"{BASE}mail/verify/", {"token": old_token}, format="json"), 400, "invalid")
    assert_error(owner.post(f"{BASE}mail/test/"), 409, "channel_unverified")


def test_one_address_per_channel_and_resends_are_rate_limited(owner, django_capture_on_commit_callbacks):
    response = owner.post(BASE, {"name": "mail", "kind": "email", "target": f"me@example.com, {VICTIM}"}, format="json")
    assert "target" in assert_error(response, 400, "invalid")["fields"]
    create_mail_channel(owner, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks() as callbacks:
        assert owner.post(f"{BASE}mail/resend-verification/").status_code == 202
    assert len(callbacks) == 1
    body = assert_error(owner.post(f"{BASE}mail/resend-verification/"), 429, "throttled")
    assert body["retry_after"] == 600
