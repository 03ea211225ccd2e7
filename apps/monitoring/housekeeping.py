"""Bounded history: platform events and notification deliveries older than the retention go (the
monitor runs this with the metrics rollup)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone


def prune_history(*, now: datetime | None = None) -> dict[str, int]:
    from apps.alerts.models import Delivery, DeliveryStatus
    from apps.events.models import PlatformEvent

    before = (now or timezone.now()) - timedelta(days=settings.PANDASTACK_HISTORY_RETENTION_DAYS)
    events, _ = PlatformEvent.objects.filter(created_at__lt=before).delete()
    # A delivery still being retried is kept whatever its age.
    deliveries, _ = Delivery.objects.filter(created_at__lt=before).exclude(status=DeliveryStatus.PENDING).delete()
    return {"events": events, "deliveries": deliveries}
