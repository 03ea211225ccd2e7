"""A scheduler tick's queries do not grow with the cron jobs there are, and grow by a fixed few per
run it starts or ends (the runs' own rows), never per job.

STUBBED, for the query count only: containers are started on an in-memory engine
(tests/support/fakes.py), because what is counted is the database's work for 3 and 30 runs. Runs on
the real Docker Engine: tests/cron/test_runs.py, tests/cron/test_scheduler.py, tests/e2e."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.cron.models import CronJob, CronRun, RunStatus
from apps.cron.scheduler import tick
from apps.deployments import orchestrator
from apps.teams.models import Plan
from tests.conftest import TeamWorld
from tests.core.routes import CRON_IMAGE
from tests.support.fakes import InMemoryEngine

# Per run started: its container's name recorded once its image is here, its start time once it runs. Per
# run ended: its outcome, and the pruning of its job's history.
PER_START, PER_END = 2, 2


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> InMemoryEngine:
    fake = InMemoryEngine()
    monkeypatch.setattr(orchestrator, "engine", lambda: fake)
    return fake


def jobs(world: TeamWorld, start: int, count: int, *, due: bool) -> None:
    """`count` jobs with an image of their own, due now or in an hour."""
    at = timezone.now() + (timedelta(seconds=-1) if due else timedelta(hours=1))
    CronJob.objects.bulk_create(
        CronJob(team=world.team, project=world.project, name=f"j{i}", image=CRON_IMAGE, command=["true"],
                schedule="0 3 * * *", next_run_at=at)
        for i in range(start, start + count)
    )  # fmt: skip


def queries(step: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        step()
    return len(captured.captured_queries)


@pytest.fixture
def roomy(team_a: TeamWorld) -> TeamWorld:
    plan = Plan.objects.create(slug="roomy", name="Roomy", max_cron_jobs=100, max_concurrent_cron_runs=100)
    team_a.team.plan = plan
    team_a.team.save()
    return team_a


def test_an_idle_tick_costs_the_same_queries_for_3_jobs_and_30(roomy: TeamWorld, engine: InMemoryEngine) -> None:
    jobs(roomy, 0, 3, due=False)
    few = queries(tick)
    jobs(roomy, 3, 27, due=False)
    assert queries(tick) == few
    assert engine.calls == {}
    print(f"\nidle tick: {few} queries for 3 jobs and for 30")


def test_a_tick_costs_a_fixed_few_queries_more_per_run_it_starts_or_ends(
    roomy: TeamWorld, engine: InMemoryEngine
) -> None:
    costs = {}
    for count in (3, 30):
        CronJob.objects.all().delete()
        jobs(roomy, 0, count, due=True)
        started = queries(tick)
        assert CronRun.objects.filter(status=RunStatus.RUNNING).count() == count
        for name in CronRun.objects.values_list("container_name", flat=True):
            engine.exit(name, 0)
        ended = queries(tick)
        assert CronRun.objects.filter(status=RunStatus.SUCCEEDED).count() == count
        costs[count] = (started, ended)
    (start_3, end_3), (start_30, end_30) = costs[3], costs[30]
    assert start_30 - start_3 == 27 * PER_START
    assert end_30 - end_3 == 27 * PER_END
    print(f"\ntick starting 3 runs: {start_3} queries, 30: {start_30}; ending 3: {end_3}, 30: {end_30}")
