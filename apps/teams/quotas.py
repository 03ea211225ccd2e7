"""Plan limits. Features call `quota_check` before they create something countable (projects,
apps, databases, cron jobs) and `quota_check_value` for per-item limits (replicas, memory)."""

from enum import StrEnum

from apps.core.errors import QuotaExceeded
from apps.teams.models import Team


class Limit(StrEnum):
    PROJECTS = "max_projects"
    APPS = "max_apps"
    REPLICAS_PER_APP = "max_replicas_per_app"
    MEMORY_MB_PER_APP = "max_memory_mb_per_app"
    DATABASES = "max_databases"
    CRON_JOBS = "max_cron_jobs"


def quota_check(*, team: Team, limit: Limit, current: int, requested: int = 1) -> None:
    """Raise QuotaExceeded (a 403 naming the limit) unless `current + requested` fits the plan."""
    maximum = getattr(team.plan, limit.value)
    if current + requested > maximum:
        raise QuotaExceeded(
            limit=limit.value, maximum=maximum, current=current, requested=requested, plan=team.plan.slug
        )


def quota_check_value(*, team: Team, limit: Limit, value: int) -> None:
    """Raise QuotaExceeded unless a per-item value (replicas of one app, its memory) fits the plan."""
    quota_check(team=team, limit=limit, current=0, requested=value)
