"""Two workers (and two beats) at once: one router programmer at a time across processes — a
configuration reload rendered from the database never undoes a server another worker added or removed
while the reload was being rendered — and a stale deployment is taken over once however many reconcile
passes run. Against a real HAProxy run by the platform's driver in a temporary state directory and the
test database; no container is needed (HAProxy does not health-check the servers, which point at
127.0.0.1). The end-to-end version, with every process doubled: tests/e2e/test_scale_out.py."""

import threading
from collections.abc import Iterator
from unittest import mock

import pytest
from django.utils import timezone

from apps.core import leases
from apps.deployments import orchestrator
from apps.deployments.models import App, Container, Deployment, DeploymentStatus
from tests.conftest import TeamWorld, make_team
from tests.support.platform_fixtures import free_port


@pytest.fixture
def router_here(settings, tmp_path) -> Iterator[None]:
    """The platform's router (orchestrator.router()) on a free port in a temporary state directory."""
    settings.PANDASTACK_ROUTER_DIR = tmp_path / "router"
    settings.PANDASTACK_ROUTER_HTTP_PORT = free_port()
    settings.PANDASTACK_ROUTER_ACCESS_LOG_PORT = 0
    orchestrator.router.cache_clear()
    try:
        yield
    finally:
        try:
            orchestrator.router().stop()
        finally:
            orchestrator.router.cache_clear()


def live_app(world: TeamWorld, name: str, replicas: int) -> tuple[App, list[Container]]:
    app = App.objects.create(team=world.team, project=world.project, name=name)
    live = Deployment.objects.create(
        team=world.team, app=app, number=1, image="web:1", config={"port": 8080}, status=DeploymentStatus.LIVE
    )
    App.objects.filter(pk=app.pk).update(live_deployment=live)
    app.live_deployment = live
    containers = [
        Container.objects.create(
            team=world.team, app=app, deployment=live, replica=r, name=f"{name}-r{r}", ip="127.0.0.1", in_router=True
        )
        for r in range(1, replicas + 1)
    ]
    return app, containers


def routed(app: App) -> set[str]:
    return {server.name for server in orchestrator.router().servers(app.router_backend)}


def test_a_reload_rendered_meanwhile_keeps_a_server_another_worker_just_added(transactional_db, router_here):
    """Worker B reloads the configuration (a new app) while worker A switches a deployment: A marks
    its container routed and adds it at run time between B's rendering from the database and B's
    reload. The reload must not drop it (it did: the reload rendered before A's change replaced
    HAProxy's worker with one that never had A's server)."""
    world = make_team("alpha")
    app, [old] = live_app(world, "web", replicas=1)
    orchestrator.sync_router()
    assert routed(app) == {old.router_server}
    new = Container.objects.create(
        team=world.team, app=app, deployment=app.live_deployment, replica=2, name="web-r2", ip="127.0.0.1"
    )
    App.objects.create(team=world.team, project=world.project, name="other")  # B's reason to reload

    rendered, go = threading.Event(), threading.Event()
    render = orchestrator.router_backends

    def slow_render():
        backends = render()
        rendered.set()
        go.wait(10)
        return backends

    failures: list[BaseException] = []

    def in_thread(target) -> threading.Thread:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                failures.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def switch() -> None:  # what _deploy does once its containers are healthy
        Container.objects.filter(pk=new.pk).update(in_router=True)
        orchestrator.router().add_server(app.router_backend, orchestrator._server(Container.objects.get(pk=new.pk)))

    with mock.patch.object(orchestrator, "router_backends", slow_render):
        reload = in_thread(orchestrator.sync_router)
        assert rendered.wait(10)
        adder = in_thread(switch)
        adder.join(1.0)  # without a lock across render + reload, the add is done by now
        go.set()
        reload.join(30)
        adder.join(30)
    assert failures == []
    assert routed(app) == {old.router_server, new.router_server}
    assert routed(App.objects.get(name="other")) == set()


def test_a_reload_during_a_retire_does_not_bring_the_retired_server_back(transactional_db, router_here):
    """A deploy retires the old release's container (drain, delete from the router) while another
    worker reloads the configuration from the database. The old server must stay out: it was routed in
    the database until after the router removal, and a reload rendered in between put it back,
    pointing at a container about to stop."""
    world = make_team("alpha")
    app, [old] = live_app(world, "web", replicas=1)
    newer = Deployment.objects.create(
        team=world.team, app=app, number=2, image="web:2", config={"port": 8080}, status=DeploymentStatus.LIVE
    )
    new = Container.objects.create(
        team=world.team, app=app, deployment=newer, replica=1, name="web-2-r1", ip="127.0.0.1", in_router=True
    )
    orchestrator.sync_router()
    assert routed(app) == {old.router_server, new.router_server}
    App.objects.create(team=world.team, project=world.project, name="other")  # the other worker's reason to reload

    r = orchestrator.router()
    remove = r.remove_server

    def remove_then_another_worker_reloads(*args, **kwargs) -> None:
        remove(*args, **kwargs)
        reload = threading.Thread(target=orchestrator.sync_router)
        reload.start()
        reload.join(30)

    with mock.patch.object(r, "remove_server", remove_then_another_worker_reloads):
        orchestrator._retire_containers(app, keep_deployment=newer)
    assert routed(App.objects.get(name="other")) == set()  # the reload did happen
    assert routed(app) == {new.router_server}
    assert list(Container.objects.filter(app=app).values_list("pk", flat=True)) == [new.pk]


def test_the_reconciler_restores_a_lost_server_only_while_it_is_still_routed(transactional_db, router_here):
    """The reconciler reads the routed containers, then puts back those the router lacks; a container
    a retire unrouted since that read stays out."""
    world = make_team("alpha")
    app, [kept, retired] = live_app(world, "web", replicas=2)
    orchestrator.sync_router()
    r = orchestrator.router()
    stale = list(Container.objects.filter(app=app, in_router=True).select_related("app", "deployment"))
    for container in stale:  # the router lost both (a restart from an older configuration, say)
        r.remove_server(app.router_backend, container.router_server, drain_timeout=0)
    Container.objects.filter(pk=retired.pk).update(in_router=False)  # unrouted by a retire meanwhile
    for container in stale:
        orchestrator._restore_server(container)
    assert routed(app) == {kept.router_server}


def test_two_takeover_passes_at_once_take_a_stale_deployment_over_once(transactional_db):
    """Two sweeps (the takeover beat and a reconcile pass, or two beats) run at once: both read the
    same deployment as stale; one takes it over (one event, one task), the other leaves it. The second
    pass here runs while the first is queueing its task, after both read the deployment as stale."""
    world = make_team("alpha")
    app = App.objects.create(team=world.team, project=world.project, name="web")
    stale = Deployment.objects.create(
        team=world.team, app=app, number=1, image="web:1", config={"port": 8080}, status=DeploymentStatus.STARTING
    )
    Deployment.objects.filter(pk=stale.pk).update(started_at=timezone.now(), updated_at=leases.long_ago())
    queued: list[int] = []
    nested: list[int] = []
    stale_reads = Deployment.objects.filter(pk=stale.pk).only("pk", "started_at")
    real_filter = Deployment.objects.filter

    def enqueue(task, deployment_id, **_):  # stands in for apps.core.broker.enqueue
        queued.append(deployment_id)
        if not nested:  # the other pass, which read the same stale row before this one claimed it
            nested.append(_second_pass(stale_reads, real_filter))

    with mock.patch.object(orchestrator, "enqueue", side_effect=enqueue):
        first = orchestrator.take_over_stale_deployments()
    assert (first, nested, queued) == (1, [0], [stale.pk])
    assert stale.events.filter(message__startswith="Taken over").count() == 1


def _second_pass(stale_reads, real_filter) -> int:
    """A takeover pass whose read of the stale deployments happened before the first pass's claim."""
    calls = iter([stale_reads])

    def filter_(*args, **kwargs):
        return next(calls, None) or real_filter(*args, **kwargs)

    with mock.patch.object(Deployment.objects, "filter", side_effect=filter_):
        return orchestrator.take_over_stale_deployments()
