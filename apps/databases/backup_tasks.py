"""Celery entry points for backups and restores: fetch by id, call apps.databases.backups.

Like every task here they are acknowledged late and re-queued when their worker dies (settings:
CELERY_TASK_ACKS_LATE, CELERY_TASK_REJECT_ON_WORKER_LOST); a re-run converges (see backups.py).
This module is not named tasks.py, so the worker imports it through settings.CELERY_IMPORTS."""

from celery import shared_task

from apps.databases import backups


@shared_task(name="databases.backup_run", acks_late=True)
def backup_run(backup_id: int) -> None:
    backups.backup_execute(backup_id)


@shared_task(name="databases.restore_run", acks_late=True)
def restore_run(backup_id: int, safety_id: int | None = None) -> None:
    """Take the safety backup `safety_id` (recorded by the request), then restore `backup_id`."""
    backups.restore_execute(backup_id, safety_id)


@shared_task(name="databases.scheduled_backups", acks_late=True)
def run_scheduled_backups() -> int:
    return backups.scheduled_backups()
