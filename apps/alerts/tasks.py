from celery import shared_task

from apps.alerts import services


@shared_task(name="alerts.delivery_attempt", bind=True, max_retries=None)
def delivery_attempt(self, delivery_id: int) -> None:  # noqa: ANN001 - Celery's bound task
    """Send a delivery; on failure, come back after the backoff the service says (bounded attempts)."""
    wait = services.attempt(delivery_id)
    if wait is not None:
        raise self.retry(countdown=wait)


@shared_task(name="alerts.channel_verification_send", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def channel_verification_send(channel_id: int) -> None:
    """E-mail an e-mail channel its verification code."""
    services.channel_verification_send(channel_id)
