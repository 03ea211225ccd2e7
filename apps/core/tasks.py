from celery import shared_task

from apps.core import broker


@shared_task(name="core.ping")
def ping() -> str:
    """A no-op round trip used by health checks to prove a worker is consuming the queue."""
    return "pong"


@shared_task(name="core.relay_pending_tasks")
def relay_pending_tasks() -> int:
    """Publish the tasks kept in the database while the broker was unreachable (apps.core.broker)."""
    return broker.relay_pending_tasks()
