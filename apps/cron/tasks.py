from celery import shared_task

from apps.deployments import orchestrator


@shared_task(name="cron.remove_containers")
def remove_containers(names: list[str]) -> None:
    """Stop and remove the containers of a deleted job's runs (idempotent)."""
    engine = orchestrator.engine()
    for name in names:
        engine.remove(name)
