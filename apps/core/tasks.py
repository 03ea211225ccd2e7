from celery import shared_task


@shared_task(name="core.ping")
def ping() -> str:
    """A no-op round trip used by health checks to prove a worker is consuming the queue."""
    return "pong"
