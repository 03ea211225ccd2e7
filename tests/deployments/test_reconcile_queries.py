"""A reconciler pass costs the same queries however many apps it looks at, and hands to
`converge_app` (its lock, its own reads, the engine) exactly the apps that are not as they should be.

STUBBED, for the query count only: the Docker Engine and the running HAProxy are in-memory stand-ins
(tests/support/fakes.py; the router is the real HAProxyRouter writing its files, only its process and
runtime API are in memory), because what is counted is the database's work for 3 and 30 apps. The
pass against the real engine and HAProxy: tests/e2e/test_reconciler.py and tests/e2e/test_deploy.py."""

from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.deployments import orchestrator
from apps.deployments.models import App, Container, Deployment, DeploymentStatus
from tests.conftest import TeamWorld
from tests.core.bulk import running_apps
from tests.support.fakes import InMemoryEngine, InMemoryRuntimeRouter


@pytest.fixture
def fakes(
    monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path
) -> tuple[InMemoryEngine, InMemoryRuntimeRouter]:
    settings.PANDASTACK_EXTRA_LABELS = {}
    engine = InMemoryEngine()
    router = InMemoryRuntimeRouter(state_dir=tmp_path / "router", http_port=18080)
    monkeypatch.setattr(orchestrator, "engine", lambda: engine)
    monkeypatch.setattr(orchestrator, "router", lambda: router)
    return engine, router


def converged(engine: InMemoryEngine, world: TeamWorld, start: int, count: int) -> list[App]:
    """`count` more apps, each with its container running in the engine and routed."""
    made = running_apps(world, start, count)
    for container in Container.objects.filter(app__in=made).select_related("app__team", "deployment"):
        engine.add(container.name, orchestrator.labels_for(container.app, container.deployment, container.replica))
    orchestrator.sync_router()  # the router has every app and server, as after their deploys
    return made


def test_a_pass_over_converged_apps_costs_the_same_queries_for_3_apps_and_30(
    team_a: TeamWorld, fakes: tuple[InMemoryEngine, InMemoryRuntimeRouter], django_assert_num_queries: Any
) -> None:
    engine, router = fakes
    converged(engine, team_a, 0, 3)
    engine.calls.clear()
    with CaptureQueriesContext(connection) as few:
        assert orchestrator.reconcile() == {"resumed": 0, "orphans": 0, "apps": 3, "converged": 0}

    converged(engine, team_a, 3, 27)
    engine.calls.clear()
    router.commands.clear()
    with django_assert_num_queries(len(few.captured_queries)):
        assert orchestrator.reconcile() == {"resumed": 0, "orphans": 0, "apps": 30, "converged": 0}
    assert engine.calls == {"list": 1}  # one listing, no inspect per container
    assert router.commands == {"show servers": 1}  # one runtime command reads every backend's servers
    print(f"\nreconciler pass: {len(few.captured_queries)} queries for 3 apps and for 30")


def test_a_pass_converges_exactly_the_apps_that_are_not_as_they_should_be(
    team_a: TeamWorld, fakes: tuple[InMemoryEngine, InMemoryRuntimeRouter], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass's own judgement mirrors converge_app's conditions, one case per app."""
    engine, _router = fakes
    apps = {app.name: app for app in converged(engine, team_a, 0, 8)}
    crashed, vanished, scaled, stopped, idle_stopped, deploying, unrouted, fine = apps.values()
    engine.exit(Container.objects.get(app=crashed).name, 137)
    engine.remove(Container.objects.get(app=vanished).name)
    App.objects.filter(pk=scaled.pk).update(replicas=2)  # one replica short
    App.objects.filter(pk__in=[stopped.pk, idle_stopped.pk]).update(desired_running=False)
    gone = Container.objects.get(app=idle_stopped)  # a stopped app without containers is fine
    engine.remove(gone.name)
    gone.delete()
    engine.exit(Container.objects.get(app=deploying).name, 1)  # the deploy in progress handles it
    Deployment.objects.create(team=team_a.team, app=deploying, number=2, image="x", status=DeploymentStatus.STARTING)
    Container.objects.filter(app=unrouted).update(in_router=False)
    engine.add("ps-orphan", {"io.pandastack.managed": "true"})
    handed: list[int] = []
    monkeypatch.setattr(orchestrator, "converge_app", lambda app_id, *, sync=True: handed.append(app_id))

    summary = orchestrator.reconcile()

    assert sorted(handed) == sorted(a.pk for a in (crashed, vanished, scaled, stopped, unrouted))
    assert summary == {"resumed": 0, "orphans": 1, "apps": 8, "converged": 5}
    assert "ps-orphan" not in engine.containers and fine.pk not in handed
