"""The reconciler converges what the engine and the router run to the database, after things
went wrong behind the platform's back. (Work a killed or stopped worker left half-done — deploys,
provisioning, backups — is the takeover sweep's: tests/e2e/test_worker_drills.py.)"""

import os
import signal

import docker
import pytest

from apps.deployments import orchestrator
from apps.deployments.models import Container, Deployment
from apps.events.models import PlatformEvent
from tests.conftest import make_team
from tests.e2e.test_deploy import create_app, deploy, host, owner_client
from tests.support import TEST_RUN_LABEL
from tests.support.platform_fixtures import wait_deployment, wait_for


@pytest.fixture
def world(platform):
    return make_team("alpha")


def test_a_container_killed_behind_the_platforms_back_comes_back(platform, world, web_image):
    client = owner_client(world)
    create_app(client, replicas=2)
    deploy(client, web_image, platform=platform)
    victim = Container.objects.order_by("replica").first()
    docker.from_env().containers.get(victim.name).kill()
    orchestrator.reconcile()
    containers = Container.objects.filter(app__name="web")
    assert containers.count() == 2 and all(c.in_router for c in containers)
    for container in containers:
        assert orchestrator.engine().inspect(container.name).status == "running"
    assert platform.get(host()).status_code == 200
    crash = PlatformEvent.objects.get(kind="container.crashed")
    assert crash.data["replica"] == victim.replica and crash.data["exit_code"] == 137
    assert crash.project_id == world.project.pk


def test_orphan_containers_are_removed(platform, world, web_image):
    labels = {"io.pandastack.managed": "true", "io.pandastack.app": "999999", TEST_RUN_LABEL: platform.run_id}
    orphan = docker.from_env().containers.run(web_image, detach=True, labels=labels, name="ps-orphan-test")
    summary = orchestrator.reconcile()
    assert summary["orphans"] >= 1
    with pytest.raises(docker.errors.NotFound):
        docker.from_env().containers.get(orphan.id)


def test_a_router_restart_gets_its_routes_and_servers_back(platform, world, web_image):
    client = owner_client(world)
    create_app(client)
    deploy(client, web_image, platform=platform)
    pid = int((platform.router_dir / "haproxy.pid").read_text().split()[0])
    os.killpg(os.getpgid(pid), signal.SIGKILL)
    wait_for(lambda: not orchestrator.router().is_running(), timeout=10, what="HAProxy to die")
    orchestrator.reconcile()
    assert orchestrator.router().is_running()
    assert platform.get(host()).text.startswith("v1")


def test_team_networks_are_isolated(platform, web_image):
    alpha, bravo = make_team("alpha"), make_team("bravo")
    for world, slug in ((alpha, "alpha"), (bravo, "bravo")):
        client = owner_client(world)
        body = {"name": "web", "project": "web", "port": 8080, "health_check_path": "/healthz"}
        assert client.post(f"/api/v1/teams/{slug}/apps/", body, format="json").status_code == 201
        response = client.post(f"/api/v1/teams/{slug}/apps/web/deployments/", {"image": web_image}, format="json")
        wait_deployment(
            Deployment.objects.get(team=world.team, number=response.json()["id"]).pk, worker=platform.worker
        )
    a = Container.objects.get(team=alpha.team)
    b = Container.objects.get(team=bravo.team)
    engine = docker.from_env()
    probe = 'printf "GET /healthz HTTP/1.0\\r\\n\\r\\n" | nc -w 2 {ip} 8080'
    across = engine.containers.get(a.name).exec_run(["sh", "-c", probe.format(ip=b.ip)])
    assert across.exit_code != 0 and b"200 OK" not in across.output
    same = engine.containers.get(a.name).exec_run(["sh", "-c", probe.format(ip=a.ip)])
    assert same.exit_code == 0 and b"200 OK" in same.output
