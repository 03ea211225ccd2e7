"""Celery entry points for teams: the worker's part of deleting a team or a project."""

from celery import Task, shared_task

from apps.teams import services


@shared_task(
    name="teams.deletion_finish",
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=300,  # about two days at the longest backoff
)
def deletion_finish(self: Task, team_id: int, project_id: int | None = None) -> None:
    """Purge what a deleted team or project still holds, then delete its row; retried (with backoff)
    while a database server is unreachable or a purge is still under way."""
    if not services.deletion_finish(team_id=team_id, project_id=project_id):
        raise self.retry(countdown=30)
