"""Notification channels and deliveries: e-mail through Django's mail backend, signed webhooks and
Slack-compatible webhooks, each delivery logged and retried with backoff."""

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.alerts.models import ChannelKind, Delivery, DeliveryStatus, NotificationChannel
from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.errors import Conflict, ValidationFailed, require_confirmation
from apps.secrets import crypto

SIGNATURE_HEADER = "X-PandaStack-Signature"
MAX_ATTEMPTS = 5


def _validate_target(kind: str, target: str) -> str:
    target = target.strip()
    if kind == ChannelKind.EMAIL:
        addresses = [a.strip() for a in target.split(",") if a.strip()]
        try:
            for address in addresses:
                validate_email(address)
        except Exception:
            addresses = []
        if not addresses:
            raise ValidationFailed(
                "Invalid e-mail addresses.", fields={"target": ["E-mail addresses, comma-separated."]}
            )
        return ", ".join(addresses)
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
    """The webhook's host resolves to an address the platform must not call."""


# IPv6 addresses that carry an IPv4 address in their last 32 bits and reach it (through a NAT64
# gateway, or a host that still speaks these forms): the IPv4 address is what gets called.
_EMBEDDING_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix (RFC 6052)
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (RFC 2765)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated, RFC 4291)
)
# NAT64 for a local network (RFC 8215): which IPv4 addresses it reaches is the network's own business.
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        embedded = ip.ipv4_mapped or ip.sixtofour  # ::ffff:a.b.c.d; 6to4 2002:AABB:CCDD::/48
        if embedded is None and any(ip in network for network in _EMBEDDING_IPV4):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


def _names_private_host(host: str) -> bool:
    """Whether the URL's host is written as a non-public IP address or as localhost (a name that
    resolves elsewhere is checked when sending)."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not _is_public(host)
    except ValueError:
        return False


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
        raise TargetRefused(f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses:
        raise TargetRefused(f"cannot resolve {host}: no address")
    for address in addresses:
        if not _is_public(address):
            raise TargetRefused(f"{host} resolves to {address}, a non-public address: refused")
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
    return channel, raw


@transaction.atomic
def channel_update(*, ctx: TeamContext, channel: NotificationChannel, **changes: Any) -> NotificationChannel:
    if not changes:
        return channel
    if "target" in changes:
        changes["target"] = _validate_target(channel.kind, changes["target"])
    for field, value in changes.items():
        setattr(channel, field, value)
    channel.full_clean()
    channel.save()
    audit_record(actor=ctx.actor, action="channel.update", target=channel, team=ctx.team, data=list(changes))
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
    transaction.on_commit(lambda: delivery_attempt.delay(delivery.pk))
    return delivery


def channel_test(*, ctx: TeamContext, channel: NotificationChannel) -> Delivery:
    if not channel.enabled:
        raise Conflict(f"Channel {channel.name} is disabled; enable it to send.", code="channel_disabled")
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
        ok, error, final = False, str(exc)[:500], True
    except Exception as exc:  # whatever fails is recorded and retried; a delivery is never left hanging
        ok, error = False, f"{type(exc).__name__}: {exc}"[:500]
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


def _send(channel: NotificationChannel, delivery: Delivery) -> int | None:
    text = delivery.subject
    if channel.kind == ChannelKind.EMAIL:
        body = json.dumps(delivery.payload, indent=2, sort_keys=True)
        recipients = [a.strip() for a in channel.target.split(",")]
        send_mail(text, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
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
