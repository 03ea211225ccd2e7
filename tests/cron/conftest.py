"""Fixtures for the cron tests: jobs made directly in the database, a team context for services,
and — for the tests that start real runs — a team of its own on the real Docker Engine.

A Docker test gets a team with a fresh slug (its network ``ps-team-<slug>`` and its containers'
names never collide with another test session's) and a fresh test-run label, which the scheduler
puts on every run container through ``PANDASTACK_EXTRA_LABELS``; teardown removes exactly what
carries that label (containers, then the team's network)."""

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.core.access import TeamContext, resolve_team
from apps.core.actors import Actor
from apps.cron.models import FINISHED, CronJob, CronRun
from apps.cron.scheduler import tick
from apps.runtime.engine import ContainerInfo, DockerEngine
from tests.conftest import TeamWorld, make_team
from tests.support import TEST_RUN_LABEL, remove_test_run

RUN_LABEL = "io.pandastack.cron-run"


def ctx_of(world: TeamWorld, role: str = "owner") -> TeamContext:
    return resolve_team(Actor.system("test", user=world.user(role)), world.team.slug)


def make_job(world: TeamWorld, name: str = "job", **fields: Any) -> CronJob:
    """A job written straight to the database (the API tests cover validation); it runs only when
    a test gives it a `next_run_at` or queues a run."""
    defaults: dict[str, Any] = {"image": "busybox:latest", "command": ["true"], "schedule": "* * * * *"}
    return CronJob.objects.create(team=world.team, project=world.project, name=name, **(defaults | fields))


def minute(at: datetime) -> datetime:
    """`at` truncated to its minute: a slot of a `* * * * *` job."""
    return at.replace(second=0, microsecond=0)


@dataclass
class CronWorld:
    """A team on the real engine; `image` is a busybox image that runs shell commands."""

    world: TeamWorld
    run_id: str
    image: str
    engine: DockerEngine

    def job(self, name: str = "job", **fields: Any) -> CronJob:
        return make_job(self.world, name, **({"image": self.image} | fields))

    def containers(self) -> list[ContainerInfo]:
        """Every run container this test started that still exists."""
        return self.engine.list({TEST_RUN_LABEL: self.run_id, RUN_LABEL: None})

    def container_of(self, run: CronRun) -> ContainerInfo | None:
        found = self.engine.list({TEST_RUN_LABEL: self.run_id, RUN_LABEL: str(run.pk)})
        return found[0] if found else None


@pytest.fixture
def cron_world(db: Any, settings: Any, docker_engine: DockerEngine, web_image: str) -> Iterator[CronWorld]:
    world = make_team(f"cr-{uuid.uuid4().hex[:10]}")
    run_id = uuid.uuid4().hex[:12]
    settings.PANDASTACK_EXTRA_LABELS = {TEST_RUN_LABEL: run_id}
    yield CronWorld(world=world, run_id=run_id, image=web_image, engine=docker_engine)
    leftovers = remove_test_run(docker_engine.client, run_id)
    assert not leftovers, f"could not clean up after the test: {leftovers}"


def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """Poll `predicate()` (without ticking) until it is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not there within {timeout:.0f}s")
        time.sleep(0.05)
    return value


def tick_until(
    predicate: Callable[[], Any], *, timeout: float = 20.0, clock: Callable[[], datetime] | None = None
) -> Any:
    """Tick the scheduler (at `clock()`, default the real time) until `predicate()` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        tick(clock() if clock else None)
        if value := predicate():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the scheduler did not get there within {timeout:.0f}s")
        time.sleep(0.05)  # the container needs a moment to run; this is polling, not a fixed wait


def finished(run: CronRun, *, timeout: float = 20.0) -> CronRun:
    """Tick until `run` is finished; returns it re-read."""

    def done() -> CronRun | None:
        run.refresh_from_db()
        return run if run.status in FINISHED else None

    return tick_until(done, timeout=timeout)


def started(run: CronRun) -> CronRun:
    """Tick until `run` has started (it may have finished as well)."""

    def going() -> CronRun | None:
        run.refresh_from_db()
        return run if run.started_at else None

    return tick_until(going, timeout=10)


def later(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)
