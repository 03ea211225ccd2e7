from django.db import models

from apps.core.models import TeamOwnedModel
from apps.teams.models import SLUG_MAX_LENGTH, slug_validator


class ChannelKind(models.TextChoices):
    EMAIL = "email"
    WEBHOOK = "webhook"  # JSON POST signed with HMAC-SHA256
    SLACK = "slack"  # a Slack-compatible incoming webhook ({"text": ...})


class NotificationChannel(TeamOwnedModel):
    """Where a team's notifications go. A webhook's signing secret is stored encrypted (it must be
    read back to sign) and shown once, at creation."""

    name = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    target = models.CharField(max_length=2000, help_text="An https URL, or e-mail addresses separated by commas.")
    signing_secret_encrypted = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="channel_name_unique_in_team")]

    def __str__(self) -> str:
        return self.name


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(TeamOwnedModel):
    """One notification sent (or being retried) through one channel: the delivery log."""

    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    trigger = models.CharField(max_length=20, default="test", help_text="test, or what caused it")
    subject = models.CharField(max_length=200)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"{self.channel_id}#{self.pk} {self.status}"
