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

@shared_task(name="core.take_over_stale_work")
def take_over_stale_work() -> dict[str, int]:
    """Beat, every PANDASTACK_TAKEOVER_INTERVAL: work whose heartbeat stopped (its worker or scheduler
    died) is resumed or finished with the reason (apps.core.leases). Each part is one indexed query
    when there is nothing to do. (Cron runs are the scheduler's own: every tick reaps runs whose starter
    died, apps.cron.scheduler.)"""
    from apps.databases.backups import give_up_stale
    from apps.databases.tasks import take_over_stale_provisioning
    from apps.deployments.orchestrator import take_over_stale_deployments

    return {
        "deployments": take_over_stale_deployments(),
        "provisioning": take_over_stale_provisioning(),
        "backups": give_up_stale(),
    }
