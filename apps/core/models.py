"""Base models shared by every app: timestamps and the team-owned base with its scoping helper."""

from typing import Any, ClassVar, Self

from django.db import models


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TeamOwnedQuerySet(models.QuerySet):
    def for_team(self, team: Any) -> Self:
        return self.filter(team=team)


class TeamOwnedModel(TimeStampedModel):
    """A row that belongs to exactly one team. Every tenant-owned row carries its team, even when
    it is nested (an app inside a project), so that scoping a request is one filter.

    Guarded models (those on which object grants can be given) set `project_lookup` to the path
    from the model to its project ("pk" for the project itself) and `grant_paths` to the
    relations whose grants cover the object (itself first, then its parents)."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")

    objects = TeamOwnedQuerySet.as_manager()

    project_lookup: ClassVar[str | None] = None
    grant_paths: ClassVar[tuple[str, ...]] = ()

    class Meta:
        abstract = True


class PendingTask(models.Model):
    """A task whose publish to the broker failed after its transaction had committed (the broker went
    away between the check and the commit, or a background caller that must not fail enqueued it
    during an outage). The intent is in the database already, so the task must still run: a worker
    publishes it again as soon as it is connected (apps.core.broker.relay_pending_tasks), under the
    task id it was given at first, so a task runs once whichever way it arrives."""

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    task_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.task}{tuple(self.args)} [{self.task_id}]"
