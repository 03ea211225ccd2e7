"""The newest intent wins: a deploy, a rollback, a restart, a stop or a variable change supersedes a
deployment still in progress — it is stopped within seconds, its new containers are removed without
ever getting traffic, and the newer action goes ahead at once (no 409 "wait for it to finish").
Against the real Docker Engine, a real Celery worker and HAProxy run by the platform.

A release that health-checks for as long as the test needs is the web image with a health check
path it answers 404 on: it runs, and never passes (until the health timeout, 20 s in tests)."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from django.conf import settings

from apps.audit.models import AuditEvent
from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.core.errors import Conflict, ValidationFailed
from apps.deployments import orchestrator, services
from apps.deployments.models import App, Container, Deployment, DeploymentStatus
from tests.conftest import assert_error, make_team, make_token, token_client
from tests.support.platform_fixtures import wait_deployment, wait_for

BASE = "/api/v1/teams/alpha/apps/web"
NEVER_HEALTHY = "/never-healthy"  # the web image answers 404 there
STOP_WITHIN = 2.0  # seconds from the newer action to the stopped release's containers being gone
ENDED = {"live", "failed", "superseded", "rolled_back", "cancelled"}


@pytest.fixture
def world(platform):
    return make_team("alpha")


def owner_client(world):
    _, raw = make_token(world.team, world.user("owner"))
    return token_client(raw)


def host() -> str:
    return "web.alpha.localhost"


def create_app(client, **fields):
    body = {"name": "web", "project": "web", "port": 8080, "health_check_path": "/healthz", **fields}
    response = client.post("/api/v1/teams/alpha/apps/", body, format="json")
    assert response.status_code == 201, response.json()


def post_deploy(client, image) -> Deployment:
    response = client.post(f"{BASE}/deployments/", {"image": image}, format="json")
    assert response.status_code == 202, response.json()
    return Deployment.objects.get(app__name="web", number=response.json()["id"])


def wait_ended(deployment: Deployment, platform, timeout: float = 60.0) -> Deployment:
    """Like wait_deployment, and a cancelled deployment counts as ended too."""

    def ended() -> Deployment | None:
        current = Deployment.objects.get(pk=deployment.pk)
        return current if current.status in ENDED else None

    try:
        return wait_for(ended, timeout=timeout, what=f"deployment #{deployment.number} to end")
    except AssertionError:
        raise AssertionError(f"#{deployment.number} did not end.\nWorker:\n{platform.worker.log_tail()}") from None


def deploy_live(client, image, platform) -> Deployment:
    done = wait_deployment(post_deploy(client, image).pk, worker=platform.worker)
    assert done.status == "live", (done.status, done.reason)
    return done


def start_never_healthy_release(client, image, platform) -> Deployment:
    """A release of `image` that runs but never passes its health check; returned once its
    container is up and being health-checked."""
    assert client.patch(f"{BASE}/", {"health_check_path": NEVER_HEALTHY}, format="json").status_code == 200
    deployment = post_deploy(client, image)
    wait_for(
        lambda: Deployment.objects.get(pk=deployment.pk).status == "health_checking" and engine_containers(deployment),
        timeout=30,
        what="the never-healthy release to be health-checking",
    )
    # The next release is a healthy one again (a rollback carries its own recorded path anyway).
    assert client.patch(f"{BASE}/", {"health_check_path": "/healthz"}, format="json").status_code == 200
    return deployment


def ours(labels: dict[str, str]) -> dict[str, str]:
    """`labels` and this test run's own label: other runs may share the engine (and the ids)."""
    return {**labels, **settings.PANDASTACK_EXTRA_LABELS}


def engine_containers(deployment: Deployment) -> list:
    return orchestrator.engine().list(ours({"io.pandastack.deployment": str(deployment.pk)}))


def deployments_on_engine(app: App) -> set[str]:
    """The deployment ids of the app's containers the engine runs."""
    found = orchestrator.engine().list(ours({"io.pandastack.app": str(app.pk)}))
    return {c.labels.get("io.pandastack.deployment") for c in found}


def wait_gone(deployment: Deployment, since: float) -> float:
    """Wait until the deployment has no container left (engine and database); the seconds it took."""
    wait_for(
        lambda: not engine_containers(deployment) and not Container.objects.filter(deployment=deployment).exists(),
        timeout=15,
        what=f"the containers of #{deployment.number} to be removed",
    )
    return time.monotonic() - since


@contextmanager
def load(platform) -> Iterator[tuple[list[str], list[str]]]:
    """Requests through the router in a loop while the block runs: (bodies of 200s, failures)."""
    ok: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{platform.router_port}", headers={"Host": host()}) as http:
            while not stop.is_set():
                try:
                    response = http.get("/", timeout=5)
                    (ok if response.status_code == 200 else failures).append(
                        response.text[:40] if response.status_code == 200 else f"{response.status_code}"
                    )
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        yield ok, failures
    finally:
        stop.set()
        thread.join(10)


def test_rollback_while_a_release_health_checks_supersedes_it_at_once(platform, world, web_image, web_image_v2):
    client = owner_client(world)
    create_app(client)
    live = deploy_live(client, web_image, platform)
    with load(platform) as (ok, failures):
        broken = start_never_healthy_release(client, web_image_v2, platform)
        asked = time.monotonic()
        response = client.post(f"{BASE}/rollback/", {}, format="json")
        # Accepted at once: no 409 "wait for it to finish" while the broken release health-checks.
        assert response.status_code == 202, response.json()
        assert response.json()["rollback_of"] == live.number  # back to what serves
        rollback = Deployment.objects.get(app__name="web", number=response.json()["id"])
        # Superseded by the time the API answered, naming the newer deployment and who asked.
        broken.refresh_from_db()
        assert broken.status == "superseded"
        assert broken.superseded_by_id == rollback.pk
        assert broken.cancelled_by == world.user("owner").email
        assert f"Superseded by deployment #{rollback.number} (a rollback)" in broken.reason
        took = wait_gone(broken, asked)
        print(f"\nsuperseded release's containers removed {took:.2f}s after the rollback was asked")
        assert took < STOP_WITHIN
        done = wait_deployment(rollback.pk, worker=platform.worker)
        assert done.status == "live", (done.status, done.reason)
        time.sleep(0.3)  # a few more requests after the switch
    assert failures == []
    assert len(ok) > 20
    assert all(body.startswith("v1") for body in ok)  # the old release served throughout, never v2
    assert Deployment.objects.get(pk=broken.pk).status == "superseded"  # the worker did not overwrite it
    app = App.objects.get(name="web")
    assert app.live_deployment_id == rollback.pk
    assert set(Container.objects.filter(app=app).values_list("deployment_id", flat=True)) == {rollback.pk}
    detail = client.get(f"{BASE}/deployments/{broken.number}/").json()
    assert detail["status"] == "superseded" and detail["superseded_by"] == rollback.number
    assert detail["cancelled_by"] == world.user("owner").email


def test_two_deploys_racing_end_with_exactly_one_live_and_no_leftover_container(
    platform, world, web_image, web_image_v2
):
    client = owner_client(world)
    create_app(client, replicas=2)
    deploy_live(client, web_image, platform)
    for _ in range(2):
        first = post_deploy(client, web_image_v2)
        second = post_deploy(client, web_image)  # back to back: no 409, the newest wins
        ended = [wait_ended(first, platform), wait_ended(second, platform)]
        assert [d.status for d in ended] == ["superseded", "live"], [(d.status, d.reason) for d in ended]
        assert ended[0].superseded_by_id == second.pk
        wait_gone(first, time.monotonic())
        # Exactly the winner's replicas run, in the router and on the engine.
        app = App.objects.get(name="web")
        assert app.live_deployment_id == second.pk
        wait_for(
            lambda app=app, winner=second: deployments_on_engine(app) == {str(winner.pk)},
            timeout=15,
            what="only the winner's containers on the engine",
        )
        assert Container.objects.filter(app=app, in_router=True, deployment=second).count() == 2
        assert platform.get(host()).text.startswith("v1")


def test_cancel_stops_an_inflight_deploy_and_the_live_release_keeps_serving(platform, world, web_image, web_image_v2):
    client = owner_client(world)
    create_app(client)
    live = deploy_live(client, web_image, platform)
    with load(platform) as (ok, failures):
        inflight = start_never_healthy_release(client, web_image_v2, platform)
        asked = time.monotonic()
        response = client.post(f"{BASE}/deployments/{inflight.number}/cancel/")
        assert response.status_code == 202, response.json()
        assert response.json()["status"] == "cancelled"
        assert response.json()["cancelled_by"] == world.user("owner").email
        took = wait_gone(inflight, asked)
        print(f"\ncancelled release's containers removed {took:.2f}s after the cancel")
        assert took < STOP_WITHIN
        time.sleep(0.5)
    assert failures == [] and len(ok) > 10
    assert all(body.startswith("v1") for body in ok)
    assert App.objects.get(name="web").live_deployment_id == live.pk
    assert Deployment.objects.get(pk=inflight.pk).status == "cancelled"
    assert Deployment.objects.get(pk=live.pk).status == "live"
    # Once it ended there is nothing to cancel: 409, saying so.
    error = assert_error(client.post(f"{BASE}/deployments/{inflight.number}/cancel/"), 409, "deployment_finished")
    assert "already finished (cancelled)" in error["message"]
    assert_error(client.post(f"{BASE}/deployments/{live.number}/cancel/"), 409, "deployment_finished")
    # The app is still the live release, serving.
    assert client.get(f"{BASE}/").json()["status"] == "running"


def test_no_request_fails_while_a_deploy_supersedes_one_in_flight(platform, world, web_image, web_image_v2):
    client = owner_client(world)
    create_app(client, replicas=2)
    deploy_live(client, web_image, platform)
    with load(platform) as (ok, failures):
        inflight = start_never_healthy_release(client, web_image, platform)
        newer = post_deploy(client, web_image_v2)
        assert Deployment.objects.get(pk=inflight.pk).status == "superseded"
        done = wait_deployment(newer.pk, worker=platform.worker)
        assert done.status == "live", (done.status, done.reason)
        wait_for(lambda: ok and ok[-1].startswith("v2"), timeout=10, what="v2 to serve")
        time.sleep(0.3)
    assert failures == []
    assert len(ok) > 20
    assert ok[0].startswith("v1") and ok[-1].startswith("v2")
    assert not engine_containers(inflight)


def test_a_variable_change_and_a_stop_supersede_the_deployment_in_flight(platform, world, web_image, web_image_v2):
    client = owner_client(world)
    create_app(client)
    deploy_live(client, web_image, platform)
    inflight = start_never_healthy_release(client, web_image_v2, platform)
    # Setting a variable redeploys the app: the restart supersedes the release in flight and
    # carries its image on, with the new value.
    response = client.post(f"{BASE}/variables/", {"variables": {"GREETING": "hi"}}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["restarted"] == ["web"]
    restart = Deployment.objects.filter(app__name="web").order_by("-number").first()
    inflight.refresh_from_db()
    assert inflight.status == "superseded" and inflight.superseded_by_id == restart.pk
    assert "(a restart)" in inflight.reason
    assert restart.image == web_image_v2
    wait_gone(inflight, time.monotonic())
    # The restart runs the release's recorded (never-passing) health check; stopping the app
    # cancels it, and the app leaves the router.
    wait_for(lambda: engine_containers(restart), timeout=30, what="the restart's container")
    asked = time.monotonic()
    assert client.post(f"{BASE}/stop/").status_code == 202
    restart.refresh_from_db()
    assert restart.status == "cancelled" and "the app was stopped" in restart.reason
    took = wait_gone(restart, asked)
    assert took < STOP_WITHIN
    wait_for(lambda: platform.get(host()).status_code == 503, timeout=15, what="the stopped app to leave the router")
    wait_for(lambda: not orchestrator.engine().list(ours({"io.pandastack.app-name": "web"})), timeout=20, what="none")


# --- without the data plane: the service and API rules --------------------------------------------
@pytest.fixture
def alpha(db):
    world = make_team("alpha")
    ctx = resolve_team(Actor(user=world.user("owner"), via="test"), "alpha")
    app = services.app_create(ctx=ctx, project=world.project, name="web")
    live = services.deployment_create(ctx=ctx, app=app, image="registry.local/web:1")
    Deployment.objects.filter(pk=live.pk).update(status=DeploymentStatus.LIVE)
    App.objects.filter(pk=app.pk).update(live_deployment=live)
    app.refresh_from_db()
    return world, ctx, app


def test_every_new_action_supersedes_the_one_in_flight_and_is_audited(alpha):
    _, ctx, app = alpha
    first = services.deployment_create(ctx=ctx, app=app, image="registry.local/web:2")
    second = services.deployment_create(ctx=ctx, app=app, image="registry.local/web:3")
    restart = services.app_restart(ctx=ctx, app=app)
    rollback = services.deployment_rollback(ctx=ctx, app=app)
    statuses = dict(Deployment.objects.filter(app=app).values_list("number", "status"))
    assert statuses == {1: "live", 2: "superseded", 3: "superseded", 4: "superseded", 5: "pending"}
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.superseded_by == second and second.superseded_by == restart
    assert restart.image == "registry.local/web:3"  # a restart carries the release in flight on
    assert rollback.rollback_of.number == 1  # a rollback while one is in flight: back to the live one
    # Releases stopped before going live are nothing to roll back to.
    with pytest.raises(ValidationFailed, match="Only a deployment that ran"):
        services.deployment_rollback(ctx=ctx, app=app, to=2)
    audit = AuditEvent.objects.filter(action="deployment.rollback").get()
    assert audit.data["supersedes"] == [4]


def test_cancel_needs_the_deploy_capability_and_answers_404_across_teams(alpha, client_for):
    world, ctx, app = alpha
    inflight = services.deployment_create(ctx=ctx, app=app, image="registry.local/web:2")
    url = f"{BASE}/deployments/{inflight.number}/cancel/"
    assert_error(client_for(world, "viewer").post(url), 403, "permission_denied")
    stranger = make_team("bravo")
    assert_error(client_for(stranger, "owner").post(url), 404, "not_found")
    assert Deployment.objects.get(pk=inflight.pk).status == "pending"
    response = client_for(world, "developer").post(url)
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert_error(client_for(world, "developer").post(url), 409, "deployment_finished")


def test_a_deployment_already_switching_traffic_is_not_stopped(alpha):
    """Past the point of no return (its containers are being routed) a deployment finishes; a newer
    action queues behind it instead of stopping it halfway."""
    world, ctx, app = alpha
    switching = services.deployment_create(ctx=ctx, app=app, image="registry.local/web:2")
    Deployment.objects.filter(pk=switching.pk).update(status=DeploymentStatus.HEALTH_CHECKING)
    Container.objects.create(
        team=world.team, app=app, deployment=switching, replica=1, name="ps-alpha-web-x-2-r1", in_router=True
    )
    with pytest.raises(Conflict, match="already switching traffic"):
        services.deployment_cancel(ctx=ctx, deployment=switching)
    newer = services.deployment_create(ctx=ctx, app=app, image="registry.local/web:3")
    assert Deployment.objects.get(pk=switching.pk).status == "health_checking"
    assert newer.status == "pending"
