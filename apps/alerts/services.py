"""Notification channels and deliveries: e-mail through Django's mail backend, signed webhooks and
Slack-compatible webhooks, each delivery logged and retried with backoff."""

import hashlib
import hmac
import json
import logging
import secrets
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.alerts.models import ChannelKind, Delivery, DeliveryStatus, NotificationChannel
from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.addresses import address_is_public, host_names_private_address
from apps.core.broker import enqueue, require_broker
from apps.core.capabilities import Capability
from apps.core.errors import Conflict, PandaError, ValidationFailed, require_confirmation
from apps.secrets import crypto

SIGNATURE_HEADER = "X-PandaStack-Signature"
MAX_ATTEMPTS = 5
logger = logging.getLogger(__name__)

# What a team reads in its delivery log when an attempt fails. Deliberately vague: the resolver's
# message, the addresses a name resolved to and the exact socket error would let a team map the
# platform's own network through webhook targets (the details go to the platform's log instead).
ERROR_UNRESOLVED = "could not resolve host"
ERROR_NOT_ALLOWED = "address not allowed"
ERROR_CONNECT = "could not connect to the receiver"
ERROR_TIMEOUT = "the receiver did not answer in time"
ERROR_EMAIL = "could not send the e-mail"
ERROR_OTHER = "delivery failed"


def _validate_target(kind: str, target: str) -> str:
    target = target.strip()
    if kind == ChannelKind.EMAIL:
        # One address per channel: each address confirms on its own that it wants the mail, so a
        # verified address cannot vouch for a second one written beside it.
        try:
            validate_email(target)
        except Exception:
            raise ValidationFailed(
                "Invalid e-mail address.", fields={"target": ["One e-mail address (one channel per address)."]}
            ) from None
        return target
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        # Whitespace and control characters would only fail later, in the worker (httpx.InvalidURL).
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and target.isprintable()
        valid = valid and " " not in target
    except ValueError:  # e.g. an unclosed IPv6 bracket or a bad port: urlsplit refuses to parse it
        valid = False
    if not valid:
        raise ValidationFailed("Invalid webhook URL.", fields={"target": ["An http(s) URL."]})
    if not settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES and _names_private_host(parts.hostname or ""):
        raise ValidationFailed(
            "Webhook targets on private, loopback or link-local addresses are refused.",
            fields={"target": ["A public address (the operator may allow private ones)."]},
        )
    return target


class TargetRefused(Exception):
    """The webhook's host resolves to an address the platform must not call, or to none. Its
    message is the generic one a team sees; ``detail`` is for the platform's log only."""

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


# Which addresses are public: one shared check (apps.core.addresses), also used for image registries.
_is_public = address_is_public
_names_private_host = host_names_private_address


def _public_address(url: httpx.URL) -> str:
    """The address to send to: the URL's host resolved once, just before the attempt (so a name
    re-pointed at an internal address after the channel was created is caught), refused if it
    resolves to any non-public address. The request then goes to this very address, not to the
    name again: a name cannot pass this check and then resolve elsewhere (DNS rebinding)."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetRefused(ERROR_UNRESOLVED, detail=f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise TargetRefused(ERROR_UNRESOLVED, detail=f"cannot resolve {host}: no address")
    for address in addresses:
        if not _is_public(address):
            raise TargetRefused(ERROR_NOT_ALLOWED, detail=f"{host} resolves to {address}, a non-public address")
    return addresses[0]


def _post(target: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to a webhook. Unless the operator allows private addresses, the connection goes to the
    address `_public_address` checked (the URL's host still names the site in the Host header and in
    TLS, whose certificate is checked against that name), and never through a proxy from the
    environment (HTTP(S)_PROXY), which would resolve and reach the host itself."""
    url = httpx.URL(target)
    allow_private = settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES
    extensions: dict[str, Any] = {}
    if not allow_private:
        address = _public_address(url)
        headers = {**headers, "Host": url.netloc.decode("ascii")}
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
        url = url.copy_with(host=address)
    with httpx.Client(trust_env=allow_private, timeout=5.0, follow_redirects=False) as client:
        return client.post(url, content=body, headers=headers, extensions=extensions)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over "<timestamp>.<body>" (receivers check both, against replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _channel_name_taken() -> ValidationFailed:
    return ValidationFailed("A channel with this name already exists.", fields={"name": ["Already taken."]})


@transaction.atomic
def channel_create(*, ctx: TeamContext, name: str, kind: str, target: str) -> tuple[NotificationChannel, str | None]:
    """Create a channel; for a webhook, also return its signing secret (shown this once)."""
    if NotificationChannel.objects.filter(team=ctx.team, name=name).exists():
        raise _channel_name_taken()
    channel = NotificationChannel(team=ctx.team, name=name, kind=kind, target=_validate_target(kind, target))
    if kind != ChannelKind.EMAIL:
        channel.verified_at = timezone.now()  # nothing to verify: the receiver signed up by giving its URL
    raw = None
    if kind == ChannelKind.WEBHOOK:
        raw = "whsec_" + secrets.token_urlsafe(32)
        channel.signing_secret_encrypted = crypto.encrypt(raw)
    channel.full_clean()
    try:
        with transaction.atomic():  # a savepoint: the transaction stays usable after a refused insert
            channel.save()
    except IntegrityError as exc:
        # Another request created the name between the check above and this insert.
        if "channel_name_unique_in_team" not in str(exc):
            raise
        raise _channel_name_taken() from None
    audit_record(actor=ctx.actor, action="channel.create", target=channel, team=ctx.team, data={"kind": kind})
    if kind == ChannelKind.EMAIL:
        _enqueue_verification(channel)
    return channel, raw


@transaction.atomic
def channel_update(*, ctx: TeamContext, channel: NotificationChannel, **changes: Any) -> NotificationChannel:
    if not changes:
        return channel
    readdressed = False
    if "target" in changes:
        changes["target"] = _validate_target(channel.kind, changes["target"])
        readdressed = channel.kind == ChannelKind.EMAIL and changes["target"] != channel.target
    for field, value in changes.items():
        setattr(channel, field, value)
    if readdressed:
        channel.verified_at = None  # the new address has not said yes yet
    channel.full_clean()
    channel.save()
    audit_record(actor=ctx.actor, action="channel.update", target=channel, team=ctx.team, data=list(changes))
    if readdressed:
        _enqueue_verification(channel)
    return channel


@transaction.atomic
def channel_delete(*, ctx: TeamContext, channel: NotificationChannel, confirm: str) -> None:
    require_confirmation(confirm, expected=channel.name, what="the channel's name")
    audit_record(actor=ctx.actor, action="channel.delete", target=channel, team=ctx.team)
    channel.delete()


@transaction.atomic
def notify(*, channel: NotificationChannel, trigger: str, subject: str, payload: dict[str, Any]) -> Delivery:
    """Queue one notification through `channel` (sent by a worker after the transaction commits)."""
    from apps.alerts.tasks import delivery_attempt

    delivery = Delivery.objects.create(
        team=channel.team, channel=channel, trigger=trigger, subject=subject[:200], payload=payload
    )
    # Deferred, never refused: the incident or event behind it is recorded now, broker or not, and its
    # notifications go out once the broker is back (apps.core.broker).
    enqueue(delivery_attempt, delivery.pk, defer=True)
    return delivery


def channel_test(*, ctx: TeamContext, channel: NotificationChannel) -> Delivery:
    """Queue a test notification to the channel's own target (there is no other recipient to name);
    an e-mail channel must have been verified first."""
    ctx.require(Capability.MANAGE_ALERTS, channel)
    if not channel.enabled:
        raise Conflict(f"Channel {channel.name} is disabled; enable it to send.", code="channel_disabled")
    if not channel.verified:
        raise Conflict(
            f"Channel {channel.name}'s address is not verified yet: enter the code e-mailed to it"
            " (POST …/verify/ with {\"token\": …}).",
            code="channel_unverified",
        )
    require_broker()  # the test message is the whole point: refused (503) rather than sent who knows when
    return notify(
        channel=channel,
        trigger="test",
        subject=f"Test notification from PandaStack ({ctx.team.slug})",
        payload={"kind": "test", "team": ctx.team.slug, "channel": channel.name, "sent_by": ctx.actor.label},
    )


def attempt(delivery_id: int) -> float | None:
    """Try to send one delivery. Returns None when done (delivered, failed for good, or already
    done), else the seconds to wait before the next attempt (exponential backoff)."""
    delivery = Delivery.objects.select_related("channel").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    channel = delivery.channel
    status_code: int | None = None
    final = False
    try:
        status_code = _send(channel, delivery)
        ok = status_code is None or 200 <= status_code < 300
        error = "" if ok else f"the receiver answered {status_code}"
    except TargetRefused as exc:  # the policy will not change by retrying
        logger.info("delivery %s refused: %s", delivery.pk, exc.detail)
        ok, error, final = False, str(exc), True
    except Exception as exc:  # whatever fails is recorded and retried; a delivery is never left hanging
        logger.info("delivery %s failed: %s: %s", delivery.pk, type(exc).__name__, exc)
        ok, error = False, _generic_error(channel, exc)
    attempts = delivery.attempts + 1
    if ok:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=DeliveryStatus.DELIVERED, attempts=attempts, response_status=status_code, last_error="",
            delivered_at=timezone.now(),
        )  # fmt: skip
        return None
    final = final or attempts >= MAX_ATTEMPTS
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED if final else DeliveryStatus.PENDING,
        attempts=attempts,
        response_status=status_code,
        last_error=error,
    )
    return None if final else settings.PANDASTACK_DELIVERY_BACKOFF_SECONDS * 2 ** (attempts - 1)


# --- e-mail address verification ---------------------------------------------------------------------
VERIFICATION_SALT = "apps.alerts.channel-verification"
ERROR_UNVERIFIED = "the e-mail address is not verified"


class VerificationThrottled(PandaError):
    status_code = 429
    code = "throttled"


def _verification_max_age() -> int:
    return int(getattr(settings, "PANDASTACK_CHANNEL_VERIFICATION_MAX_AGE_SECONDS", 3 * 86400))


def channel_verification_token(channel: NotificationChannel) -> str:
    """A signed code naming this channel and this very address: it verifies nothing else, and stops
    working when the address changes or after PANDASTACK_CHANNEL_VERIFICATION_MAX_AGE_SECONDS."""
    return signing.dumps({"channel": channel.pk, "target": channel.target}, salt=VERIFICATION_SALT)


def _enqueue_verification(channel: NotificationChannel, *, defer: bool = True) -> None:
    """Deferred while the broker is down when the channel is the point (created, readdressed: the mail
    follows when the broker is back); refused (503) when the mail itself is (a resend)."""
    from apps.alerts.tasks import channel_verification_send

    enqueue(channel_verification_send, channel.pk, defer=defer)


def channel_verification_send(channel_id: int) -> bool:
    """E-mail the verification code to the channel's address (a worker's job). Returns whether a
    message went out (nothing to do for a verified, deleted or non-e-mail channel)."""
    channel = NotificationChannel.objects.select_related("team").filter(pk=channel_id).first()
    if channel is None or channel.kind != ChannelKind.EMAIL or channel.verified_at is not None:
        return False
    token = channel_verification_token(channel)
    path = f"/api/v1/teams/{channel.team.slug}/notification-channels/{channel.name}/verify/"
    body = (
        f"The team {channel.team.slug} on PandaStack wants to send its alert notifications to this address"
        f" (channel {channel.name}).\n\nIf you want them, give the team this code:\n\n    {token}\n\n"
        f"They confirm with `panda alerts channels verify {channel.name} CODE`, or POST {path}"
        ' with {"token": "CODE"}. If you do not want them, ignore this message: nothing will be sent.'
    )
    send_mail(
        "Confirm PandaStack alert notifications", body, settings.DEFAULT_FROM_EMAIL, [channel.target],
        fail_silently=False,
    )  # fmt: skip
    return True


@transaction.atomic
def channel_verify(*, ctx: TeamContext, channel: NotificationChannel, token: str) -> NotificationChannel:
    """Mark the e-mail channel verified when `token` is the code sent to its current address."""
    ctx.require(Capability.MANAGE_ALERTS, channel)
    invalid = ValidationFailed("Invalid or expired verification code.", fields={"token": ["Invalid or expired."]})
    try:
        data = signing.loads(token, salt=VERIFICATION_SALT, max_age=_verification_max_age())
    except signing.BadSignature:
        raise invalid from None
    if not isinstance(data, dict) or data.get("channel") != channel.pk or data.get("target") != channel.target:
        raise invalid
    if channel.verified_at is None:
        channel.verified_at = timezone.now()
        channel.save(update_fields=["verified_at"])
        audit_record(actor=ctx.actor, action="channel.verify", target=channel, team=ctx.team)
    return channel


def channel_verification_resend(*, ctx: TeamContext, channel: NotificationChannel) -> None:
    """Send the code again, at most once per 10 minutes per channel (no mail bombing through us)."""
    ctx.require(Capability.MANAGE_ALERTS, channel)
    if channel.verified:
        raise Conflict(f"Channel {channel.name} needs no verification.", code="channel_verified")
    if not cache.add(f"alerts:verification-sent:{channel.pk}", 1, timeout=600):
        raise VerificationThrottled(
            "A verification code was sent less than 10 minutes ago.", retry_after=600
        )
    _enqueue_verification(channel, defer=False)


def _generic_error(channel: NotificationChannel, exc: BaseException) -> str:
    """The team-facing summary of a failed attempt: what kind of failure, never its details."""
    if channel.kind == ChannelKind.EMAIL:
        return ERROR_EMAIL
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
        "Name or service not known" in str(e) or "nodename nor servname" in str(e) for e in chain
    ):
        return ERROR_UNRESOLVED
    if isinstance(exc, httpx.TimeoutException):
        return ERROR_TIMEOUT
    if isinstance(exc, httpx.TransportError):
        return ERROR_CONNECT
    return ERROR_OTHER


def _send(channel: NotificationChannel, delivery: Delivery) -> int | None:
    text = delivery.subject
    if channel.kind == ChannelKind.EMAIL:
        # Checked here, at the one place mail leaves: tests, alerts and retries alike.
        if channel.verified_at is None:
            raise TargetRefused(ERROR_UNVERIFIED, detail=f"channel {channel.pk} is unverified")
        body = json.dumps(delivery.payload, indent=2, sort_keys=True)
        send_mail(text, body, settings.DEFAULT_FROM_EMAIL, [channel.target], fail_silently=False)
        return None
    if channel.kind == ChannelKind.SLACK:
        body = json.dumps({"text": text}).encode()
        headers = {"Content-Type": "application/json"}
    else:
        body = json.dumps(
            {"delivery": delivery.pk, "trigger": delivery.trigger, "subject": text, "data": delivery.payload},
            sort_keys=True,
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-PandaStack-Delivery": str(delivery.pk),
            "X-PandaStack-Timestamp": timestamp,
            SIGNATURE_HEADER: signature(crypto.decrypt(channel.signing_secret_encrypted), timestamp, body),
        }
    return _post(channel.target, body, headers).status_code
