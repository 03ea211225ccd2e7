"""The `panda` CLI, as a CI runner uses it: a subprocess talking to a live PandaStack server, which
deploys through the real worker, engine and router."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import make_team, make_token
from tests.support.platform_fixtures import wait_for


@pytest.fixture
def world(platform):
    return make_team("alpha")


def panda(*args, env, timeout=90):
    return subprocess.run(
        [sys.executable, "-m", "panda_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def cli_env(live_server, tmp_path):
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "NO_COLOR": "1",
    }


def test_login_deploy_releases_logs_scale_and_rollback(platform, world, live_server, cli_env, web_image, web_image_v2):
    _, raw = make_token(world.team, world.user("developer"), scopes=["deploy", "logs"])
    login = panda("login", "--token", raw, "--api-url", live_server.url, env=cli_env)
    assert login.returncode == 0, login.stderr
    config = os.path.join(cli_env["XDG_CONFIG_HOME"], "panda", "config.json")
    assert oct(os.stat(config).st_mode & 0o777) == "0o600"

    created = panda(
        "apps", "create", "web", "--project", "web", "--health-check-path", "/healthz", "--json", env=cli_env
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["url"].startswith("http://web.alpha.localhost:")

    first = panda("deploy", "--app", "web", "--image", web_image, env=cli_env)
    assert first.returncode == 0, first.stderr
    assert "live" in first.stderr.lower()
    assert platform.get("web.alpha.localhost").text.startswith("v1")

    second = panda("deploy", "--app", "web", "--image", web_image_v2, env=cli_env)
    assert second.returncode == 0, second.stderr
    assert platform.get("web.alpha.localhost").text.startswith("v2")

    releases = json.loads(panda("releases", "--app", "web", "--json", env=cli_env).stdout)
    assert [(r["id"], r["status"]) for r in releases] == [(2, "live"), (1, "superseded")]

    logs = panda("logs", "--app", "web", "-n", "20", env=cli_env)
    assert logs.returncode == 0 and "starting v2 on port 8080" in logs.stdout

    back = panda("rollback", "--app", "web", env=cli_env)
    assert back.returncode == 0, back.stderr
    assert platform.get("web.alpha.localhost").text.startswith("v1")

    assert panda("scale", "--app", "web", "2", env=cli_env).returncode == 0
    wait_for(
        lambda: len({platform.get("web.alpha.localhost").text.split()[1] for _ in range(6)}) == 2,
        timeout=30,
        what="two replicas",
    )


def test_a_failed_deploy_exits_3_with_the_reason(platform, world, live_server, cli_env, broken_image):
    _, raw = make_token(world.team, world.user("owner"))
    env = {**cli_env, "PANDA_TOKEN": raw, "PANDA_API_URL": live_server.url}
    assert panda("apps", "create", "web", "--project", "web", env=env).returncode == 0
    result = panda("deploy", "--app", "web", "--image", broken_image, env=env)
    assert result.returncode == 3
    assert "fatal: missing DATABASE_URL" in result.stderr


def test_without_credentials_the_cli_exits_4_and_a_viewer_gets_an_api_error(platform, world, live_server, cli_env):
    assert panda("apps", "list", env={**cli_env, "PANDA_API_URL": live_server.url}).returncode == 4
    _, raw = make_token(world.team, world.user("viewer"))
    env = {**cli_env, "PANDA_TOKEN": raw, "PANDA_API_URL": live_server.url}
    result = panda("apps", "create", "web", "--project", "web", env=env)
    assert result.returncode == 1
    assert "permission_denied" in result.stderr
