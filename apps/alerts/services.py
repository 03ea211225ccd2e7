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
from django.db import transaction
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


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
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


def _check_resolved(url: str) -> None:
    """Refuse to send when the host resolves to any non-public address (checked just before each
    attempt, so a name re-pointed at an internal address after the channel was created is caught)."""
    if settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES:
        return
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetRefused(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = str(info[4][0])
        if not _is_public(address):
            raise TargetRefused(f"{parts.hostname} resolves to {address}, a non-public address: refused")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over "<timestamp>.<body>" (receivers check both, against replays)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@transaction.atomic
def channel_create(*, ctx: TeamContext, name: str, kind: str, target: str) -> tuple[NotificationChannel, str | None]:
    """Create a channel; for a webhook, also return its signing secret (shown this once)."""
    if NotificationChannel.objects.filter(team=ctx.team, name=name).exists():
        raise ValidationFailed("A channel with this name already exists.", fields={"name": ["Already taken."]})
    channel = NotificationChannel(team=ctx.team, name=name, kind=kind, target=_validate_target(kind, target))
    raw = None
    if kind == ChannelKind.WEBHOOK:
        raw = "whsec_" + secrets.token_urlsafe(32)
        channel.signing_secret_encrypted = crypto.encrypt(raw)
    channel.full_clean()
    channel.save()
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
    _check_resolved(channel.target)
    response = httpx.post(channel.target, content=body, headers=headers, timeout=5.0, follow_redirects=False)
    return response.status_code
