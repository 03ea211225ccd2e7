"""Variables and secrets end to end: a real worker deploys on the real Docker Engine, and the
container's environment (read inside it with `env`) is the merged team/project/app variables as the
deployment recorded them; a change redeploys, a rollback runs with the old values, and no value
reaches the worker's log or the deployment's events, even when the deploy fails."""

import docker
import pytest

from apps.deployments.models import App, Container, Deployment
from apps.secrets import crypto
from apps.secrets.models import Level, Variable, VariableVersion
from tests.conftest import make_team
from tests.e2e.test_deploy import create_app, deploy, host, owner_client
from tests.support.platform_fixtures import wait_deployment

BASE = "/api/v1/teams/alpha"
TEAM_SECRET = "e2e-team-secret-1f2e3d"
PROJECT_SECRET_V1 = "e2e-project-secret-v1-8a8a"
PROJECT_SECRET_V2 = "e2e-project-secret-v2-9b9b"
APP_SECRET_V1 = "e2e-app-secret-v1-c4c4"
APP_SECRET_V2 = "e2e-app-secret-v2-d5d5"
SENTINELS = [TEAM_SECRET, PROJECT_SECRET_V1, PROJECT_SECRET_V2, APP_SECRET_V1, APP_SECRET_V2]


@pytest.fixture
def world(platform):
    return make_team("alpha")


def set_variables(client, path, variables, *, secret=False, restart=True):
    body = {"variables": variables, "secret": secret, "restart": restart}
    response = client.post(f"{BASE}/{path}variables/", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def container_env(deployment: Deployment) -> dict[str, str]:
    """The environment inside the (single) container of `deployment`, as the process sees it."""
    container = Container.objects.get(deployment=deployment)
    result = docker.from_env().containers.get(container.name).exec_run(["env"])
    assert result.exit_code == 0, result.output
    return dict(line.split("=", 1) for line in result.output.decode().splitlines() if "=" in line)


def latest_deployment() -> Deployment:
    return Deployment.objects.order_by("-number").first()


def assert_nothing_leaked(platform, deployments: list[Deployment]) -> None:
    """Neither the worker's whole log nor any deployment's events or reason hold a value."""
    texts = {"worker log": platform.worker.log_path.read_text(errors="replace")}
    for deployment in deployments:
        deployment.refresh_from_db()
        texts[f"#{deployment.number} reason"] = deployment.reason
        texts[f"#{deployment.number} events"] = "\n".join(deployment.events.values_list("message", flat=True))
    leaks = [(where, value) for where, text in texts.items() for value in SENTINELS if value in text]
    assert leaks == []


def test_containers_see_the_merged_environment_and_a_rollback_the_old_values(platform, world, web_image):
    client = owner_client(world)
    create_app(client)
    set_variables(client, "", {"SHARED": "from-team", "TEAM_ONLY": "t"})
    set_variables(client, "", {"TEAM_SECRET": TEAM_SECRET}, secret=True)
    set_variables(client, "projects/web/", {"SHARED": "from-project", "PROJECT_SECRET": PROJECT_SECRET_V1}, secret=True)
    # Nothing is live yet: nothing to redeploy.
    assert set_variables(client, "apps/web/", {"SHARED": APP_SECRET_V1}, secret=True)["restarted"] == []
    # A row the API would refuse (as an older one might be): the platform's own names still win.
    app_variable = Variable.objects.create(
        team=world.team, level=Level.APP, app=App.objects.get(name="web"), project=world.project, name="PORT"
    )
    app_variable.current = VariableVersion.objects.create(
        variable=app_variable, number=1, value_encrypted=crypto.encrypt("9999")
    )
    app_variable.save()

    first = deploy(client, web_image, platform=platform)
    env = container_env(first)
    expected_v1 = {
        "SHARED": APP_SECRET_V1,
        "TEAM_ONLY": "t",
        "TEAM_SECRET": TEAM_SECRET,
        "PROJECT_SECRET": PROJECT_SECRET_V1,
        "PORT": "8080",
        "PANDASTACK_APP": "web",
        "PANDASTACK_TEAM": "alpha",
        "PANDASTACK_RELEASE": "1",
    }
    assert {k: env.get(k) for k in expected_v1} == expected_v1
    assert platform.get(host()).status_code == 200

    # A change redeploys by default: the new container sees the new value.
    changed = set_variables(client, "apps/web/", {"SHARED": APP_SECRET_V2}, secret=True)
    assert changed["restarted"] == ["web"] and changed["skipped"] == []
    second = wait_deployment(latest_deployment().pk, worker=platform.worker)
    assert (second.number, second.status, second.image) == (2, "live", web_image)
    env = container_env(second)
    assert (env["SHARED"], env["PROJECT_SECRET"], env["PORT"]) == (APP_SECRET_V2, PROJECT_SECRET_V1, "8080")
    assert platform.get(host()).status_code == 200

    # With restart false nothing redeploys; the running container keeps what it had.
    kept = set_variables(client, "projects/web/", {"PROJECT_SECRET": PROJECT_SECRET_V2}, secret=True, restart=False)
    assert (kept["restarted"], kept["skipped"]) == ([], [])
    assert latest_deployment().number == 2
    assert container_env(second)["PROJECT_SECRET"] == PROJECT_SECRET_V1

    # A rollback to the first release runs with the variables it ran with.
    response = client.post(f"{BASE}/apps/web/rollback/", {"to": 1}, format="json")
    assert response.status_code == 202, response.json()
    third = wait_deployment(latest_deployment().pk, worker=platform.worker)
    assert (third.number, third.status, third.rollback_of_id) == (3, "live", first.pk)
    env = container_env(third)
    assert {k: env.get(k) for k in expected_v1 if k != "PANDASTACK_RELEASE"} == {
        k: v for k, v in expected_v1.items() if k != "PANDASTACK_RELEASE"
    }
    assert platform.get(host()).status_code == 200

    # The deployments' records and the API hold version ids, never values.
    for deployment in (first, second, third):
        assert set(deployment.config["variables"]) == {"SHARED", "TEAM_ONLY", "TEAM_SECRET", "PROJECT_SECRET", "PORT"}
        detail = client.get(f"{BASE}/apps/web/deployments/{deployment.number}/").content.decode()
        events = client.get(f"{BASE}/apps/web/deployments/{deployment.number}/events/").content.decode()
        assert not [v for v in SENTINELS if v in detail + events]
    assert_nothing_leaked(platform, [first, second, third])


def test_a_failing_deploy_leaks_no_value_into_logs_or_events(platform, world, web_image, broken_image):
    client = owner_client(world)
    create_app(client)
    set_variables(client, "", {"TEAM_SECRET": TEAM_SECRET}, secret=True)
    set_variables(client, "apps/web/", {"APP_SECRET": APP_SECRET_V1, "DATABASE_URL": APP_SECRET_V2}, secret=True)
    good = deploy(client, web_image, platform=platform)
    failed = deploy(client, broken_image, platform=platform, expect="failed")
    assert "fatal: missing DATABASE_URL" in failed.reason  # the container's own log tail is kept
    assert set(failed.config["variables"]) == {"TEAM_SECRET", "APP_SECRET", "DATABASE_URL"}
    # A restart after a variable change that fails again: still nothing in the log.
    changed = set_variables(client, "", {"TEAM_SECRET": PROJECT_SECRET_V1}, secret=True)
    assert changed["restarted"] == ["web"]
    restarted = wait_deployment(latest_deployment().pk, worker=platform.worker)
    assert restarted.status == "live" and container_env(restarted)["TEAM_SECRET"] == PROJECT_SECRET_V1
    assert_nothing_leaked(platform, [good, failed, restarted])
