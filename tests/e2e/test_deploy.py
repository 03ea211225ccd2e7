"""Deploying images end to end: the API queues, a real Celery worker deploys on the real Docker
Engine, HAProxy (run by the platform) serves the app by Host name."""

import threading
import time

import httpx
import pytest

from apps.deployments import orchestrator
from apps.deployments.models import App, Container, Deployment
from apps.teams.models import Plan
from tests.conftest import assert_error, make_team, make_token, token_client
from tests.support.platform_fixtures import wait_deployment, wait_for


@pytest.fixture
def world(platform):
    return make_team("alpha")


def owner_client(world, scopes=None):
    _, raw = make_token(world.team, world.user("owner"), scopes=scopes)
    return token_client(raw)


def create_app(client, name="web", **fields):
    body = {"name": name, "project": "web", "port": 8080, "health_check_path": "/healthz", **fields}
    response = client.post("/api/v1/teams/alpha/apps/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def deploy(client, image, app="web", *, platform=None, expect="live"):
    response = client.post(f"/api/v1/teams/alpha/apps/{app}/deployments/", {"image": image}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    deployment = Deployment.objects.get(app__name=app, number=body["id"])
    done = wait_deployment(deployment.pk, worker=platform.worker if platform else None)
    assert done.status == expect, (done.status, done.reason)
    return done


def host(app="web"):
    return f"{app}.alpha.localhost"


def test_deploy_through_the_api_serves_the_app_through_the_router(platform, world, web_image):
    client = owner_client(world)
    app = create_app(client)
    assert app["status"] == "new"
    assert app["url"] == f"http://web.alpha.localhost:{platform.router_port}"
    deployment = deploy(client, web_image, platform=platform)
    response = platform.get(host())
    assert response.status_code == 200
    assert response.text.startswith("v1 ")
    assert platform.get("nobody.alpha.localhost").status_code == 503
    detail = client.get("/api/v1/teams/alpha/apps/web/").json()
    assert detail["status"] == "running"
    assert detail["current_deployment"] == {"id": deployment.number, "image": web_image, "status": "live"}
    events = client.get(f"/api/v1/teams/alpha/apps/web/deployments/{deployment.number}/events/").json()["results"]
    messages = [e["message"] for e in events]
    assert messages[0].startswith("Queued by owner@alpha.example.com")
    assert any(m.startswith("Live at") for m in messages)


def test_a_second_deploy_under_load_drops_no_request(platform, world, web_image, web_image_v2):
    client = owner_client(world)
    create_app(client, replicas=2)
    deploy(client, web_image, platform=platform)
    results: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{platform.router_port}", headers={"Host": host()}) as http:
            while not stop.is_set():
                try:
                    response = http.get("/", timeout=5)
                    (results if response.status_code == 200 else failures).append(response.text[:40])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        deploy(client, web_image_v2, platform=platform)
        wait_for(lambda: results and results[-1].startswith("v2"), timeout=10, what="v2 to serve")
        time.sleep(0.3)  # a few more requests after the switch
    finally:
        stop.set()
        thread.join(10)
    assert failures == []
    assert len(results) > 50
    assert results[0].startswith("v1") and results[-1].startswith("v2")
    assert Deployment.objects.get(number=1).status == "superseded"


def test_a_release_that_fails_its_health_check_never_gets_traffic(platform, world, web_image, broken_image):
    client = owner_client(world)
    create_app(client)
    deploy(client, web_image, platform=platform)
    failed = deploy(client, broken_image, platform=platform, expect="failed")
    assert "exit code 1" in failed.reason
    assert "fatal: missing DATABASE_URL" in failed.reason  # the tail of its log
    assert platform.get(host()).text.startswith("v1")
    assert not Container.objects.filter(deployment=failed).exists()
    assert orchestrator.engine().list({"io.pandastack.deployment": str(failed.pk)}) == []
    body = client.get("/api/v1/teams/alpha/apps/web/").json()
    assert body["status"] == "running" and body["current_deployment"]["id"] == 1
    # ...and the failure is a platform event, for alert rules to watch.
    events = client.get("/api/v1/teams/alpha/events/?kind=deployment.failed").json()["results"]
    assert len(events) == 1 and events[0]["severity"] == "error" and events[0]["data"]["deployment"] == failed.number


def test_rollback_scale_and_logs(platform, world, web_image, web_image_v2):
    client = owner_client(world)
    create_app(client)
    deploy(client, web_image, platform=platform)
    deploy(client, web_image_v2, platform=platform)
    assert platform.get(host()).text.startswith("v2")

    response = client.post("/api/v1/teams/alpha/apps/web/rollback/", {}, format="json")
    assert response.status_code == 202
    rollback = wait_deployment(Deployment.objects.get(number=response.json()["id"]).pk, worker=platform.worker)
    assert rollback.status == "live" and rollback.image == web_image and rollback.rollback_of.number == 1
    assert platform.get(host()).text.startswith("v1")
    assert Deployment.objects.get(number=2).status == "rolled_back"

    # The free plan allows 2 replicas; an operator moves the team to a bigger plan.
    assert_error(
        client.post("/api/v1/teams/alpha/apps/web/scale/", {"replicas": 3}, format="json"), 403, "quota_exceeded"
    )
    world.team.plan = Plan.objects.create(slug="pro", name="Pro", max_replicas_per_app=5)
    world.team.save()
    assert client.post("/api/v1/teams/alpha/apps/web/scale/", {"replicas": 3}, format="json").status_code == 202
    wait_for(lambda: Container.objects.filter(app__name="web", in_router=True).count() == 3, what="3 replicas")
    seen = {platform.get(host()).text.split()[1] for _ in range(12)}
    assert len(seen) == 3  # round robin over three containers
    assert client.post("/api/v1/teams/alpha/apps/web/scale/", {"replicas": 1}, format="json").status_code == 202
    wait_for(lambda: Container.objects.filter(app__name="web").count() == 1, what="1 replica")
    assert len({platform.get(host()).text.split()[1] for _ in range(6)}) == 1
    wait_for(
        lambda: len(orchestrator.engine().list({"io.pandastack.app-name": "web"})) == 1, what="old containers gone"
    )

    lines = client.get("/api/v1/teams/alpha/apps/web/logs/?tail=50")
    assert lines.status_code == 200 and lines["Content-Type"] == "application/x-ndjson"
    assert "starting v1 on port 8080" in b"".join(lines.streaming_content).decode()


def test_viewer_and_scopeless_tokens_cannot_deploy_and_strangers_get_404(platform, world, web_image):
    create_app(owner_client(world))
    _, viewer_raw = make_token(world.team, world.user("viewer"))
    body = {"image": web_image}
    url = "/api/v1/teams/alpha/apps/web/deployments/"
    assert_error(token_client(viewer_raw).post(url, body, format="json"), 403, "permission_denied")
    no_deploy = owner_client(world, scopes=["read", "logs"])
    assert_error(no_deploy.post(url, body, format="json"), 403, "permission_denied")
    stranger = make_team("bravo")
    _, stranger_raw = make_token(stranger.team, stranger.user("owner"))
    assert_error(token_client(stranger_raw).post(url, body, format="json"), 404, "not_found")
    assert not Deployment.objects.exists()
    # A grant widens a viewer to exactly this app.
    owner = owner_client(world)
    grant = {"capability": "deploy", "user": world.user("viewer").pk}
    assert owner.post("/api/v1/teams/alpha/apps/web/grants/", grant, format="json").status_code == 201
    assert token_client(viewer_raw).post(url, body, format="json").status_code == 202


def test_app_quota_and_duplicate_deploy_are_clear_errors(platform, world, web_image):
    client = owner_client(world)
    create_app(client)
    assert_error(
        client.post("/api/v1/teams/alpha/apps/", {"name": "big", "project": "web", "replicas": 9}, format="json"),
        403,
        "quota_exceeded",
    )
    assert not App.objects.filter(name="big").exists()
    url = "/api/v1/teams/alpha/apps/web/deployments/"
    assert client.post(url, {"image": web_image}, format="json").status_code == 202
    second = client.post(url, {"image": web_image}, format="json")
    if second.status_code != 202:  # the first may already be live on a fast machine
        assert_error(second, 409, "deployment_in_progress")
    wait_for(
        lambda: not Deployment.objects.filter(status__in=["pending", "pulling", "starting", "health_checking"]).exists()
    )


def test_restart_stop_start_named_rollback_follow_logs_and_delete(platform, world, web_image, web_image_v2):
    client = owner_client(world)
    create_app(client)
    deploy(client, web_image, platform=platform)
    deploy(client, web_image_v2, platform=platform)
    base = "/api/v1/teams/alpha/apps/web"

    # restart: fresh containers of the live release, no downtime
    before = set(Container.objects.values_list("name", flat=True))
    restart = client.post(f"{base}/restart/")
    assert restart.status_code == 202
    restarted = wait_deployment(Deployment.objects.get(number=restart.json()["id"]).pk, worker=platform.worker)
    assert restarted.status == "live" and restarted.image == web_image_v2
    assert not before & set(Container.objects.values_list("name", flat=True))

    # stop and start
    assert client.post(f"{base}/stop/").json()["status"] == "stopped"
    wait_for(lambda: platform.get(host()).status_code == 503, what="the stopped app to leave the router")
    wait_for(lambda: not orchestrator.engine().list({"io.pandastack.app-name": "web"}), what="containers gone")
    assert client.post(f"{base}/start/").status_code == 202
    wait_for(lambda: platform.get(host()).status_code == 200, what="the app to serve again")

    # a named rollback
    response = client.post(f"{base}/rollback/", {"to": 1}, format="json")
    assert response.status_code == 202
    back = wait_deployment(Deployment.objects.get(number=response.json()["id"]).pk, worker=platform.worker)
    assert back.rollback_of.number == 1 and platform.get(host()).text.startswith("v1")

    # follow: the stream carries new lines (httpd logs each response) while it stays open
    lines: list[str] = []

    def follow() -> None:
        stream = client.get(f"{base}/logs/?tail=0&follow=1")
        for chunk in stream.streaming_content:
            lines.append(chunk.decode())
            if any("response:404" in line for line in lines):
                stream.close()
                return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_for(
        lambda: platform.get(host(), "/follow-me").status_code == 404 and any("response:404" in x for x in lines),
        timeout=20,
        what="the followed log to show a new request",
    )
    reader.join(5)

    # delete: containers and route go
    assert client.delete(f"{base}/", {"confirm": "web"}, format="json").status_code == 204
    wait_for(lambda: platform.get(host()).status_code == 503, what="the route to go")
    wait_for(lambda: not orchestrator.engine().list({"io.pandastack.app-name": "web"}), what="containers removed")
