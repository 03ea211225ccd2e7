"""Plan limits. Features call `quota_check` before they create something countable (projects,
apps, databases, cron jobs), `quota_check_value` for per-item limits (replicas, memory, CPUs), and
`plan_cap` when they start a container (a release or job saved under a more generous plan must not
run beyond the team's current one)."""

from decimal import Decimal
from enum import StrEnum

from apps.core.errors import QuotaExceeded
from apps.teams.models import Team

Amount = int | float | Decimal


class Limit(StrEnum):
    PROJECTS = "max_projects"
    APPS = "max_apps"
    REPLICAS_PER_APP = "max_replicas_per_app"
    # Per container, for an app's replicas and a cron job's runs alike.
    MEMORY_MB_PER_APP = "max_memory_mb_per_app"
    CPUS_PER_APP = "max_cpus_per_app"
    DATABASES = "max_databases"
    CRON_JOBS = "max_cron_jobs"


def _plain(value: Amount) -> int | float:
    # Decimal plan fields (CPUs) must reach the JSON error body as numbers.
    return float(value) if isinstance(value, Decimal) else value


def quota_check(*, team: Team, limit: Limit, current: Amount, requested: Amount = 1) -> None:
    """Raise QuotaExceeded (a 403 naming the limit) unless `current + requested` fits the plan."""
    maximum = getattr(team.plan, limit.value)
    if Decimal(str(current)) + Decimal(str(requested)) > Decimal(str(maximum)):
        raise QuotaExceeded(
            limit=limit.value,
            maximum=_plain(maximum),  # type: ignore[arg-type]
            current=_plain(current),  # type: ignore[arg-type]
            requested=_plain(requested),  # type: ignore[arg-type]
            plan=team.plan.slug,
        )


def quota_check_value(*, team: Team, limit: Limit, value: Amount) -> None:
    """Raise QuotaExceeded unless a per-item value (replicas of one app, its memory, its CPUs) fits the plan."""
    quota_check(team=team, limit=limit, current=0, requested=value)


def plan_cap(*, team: Team, limit: Limit, value: Amount | None) -> float:
    """`value` lowered to the plan's limit (the limit itself when `value` is None), for a container start."""
    maximum = float(getattr(team.plan, limit.value))
    return maximum if value is None else min(float(value), maximum)
