"""apps list|create|info, pagination and API error reporting. The API is faked with
httpx.MockTransport: allowed here because these tests check the CLI's own request and response
handling; end-to-end tests against the real server are separate."""

import json

import pytest
from conftest import api_error, page, reply

APPS = "/api/v1/teams/acme/apps/"


def app_json(name="web", **overrides):
    data = {
        "name": name,
        "project": "shop",
        "port": 8000,
        "health_check_path": "/healthz",
        "replicas": 2,
        "memory_mb": 256,
        "cpus": 0.5,
        "command": None,
        "status": "running",
        "url": f"http://{name}.acme.localhost:8080",
        "current_deployment": {"id": 3, "image": f"registry.test/{name}:v3", "status": "live"},
        "created_at": "2025-01-31T12:00:00Z",
    }
    data.update(overrides)
    return data


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


def test_apps_list_follows_every_page(run, api):
    second = "https://public-name.example/api/v1/teams/acme/apps/?cursor=abc"
    api.on("GET", APPS, page([app_json("web")], next_url=second), page([app_json("worker", current_deployment=None)]))

    result = run("apps", "list")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "PROJECT", "STATUS", "REPLICAS", "IMAGE", "URL"]
    assert lines[1].split() == ["web", "shop", "running", "2", "registry.test/web:v3", "http://web.acme.localhost:8080"]
    assert lines[2].split()[:5] == ["worker", "shop", "running", "2", "-"]
    # The next page is asked of our API URL (never another host), with the server's cursor.
    first, following = api.requests
    assert following.url.host == "panda.test"
    assert following.url.params["cursor"] == "abc"
    assert following.headers["Authorization"] == first.headers["Authorization"]


def test_apps_list_json_is_every_app_as_one_array(run, api):
    api.on("GET", APPS, page([app_json("web")], next_url="/api/v1/teams/acme/apps/?cursor=x"), page([app_json("db")]))

    result = run("apps", "list", "--json")

    assert result.exit_code == 0
    assert [a["name"] for a in json.loads(result.stdout)] == ["web", "db"]


def test_apps_list_empty_says_so_on_stderr(run, api):
    api.on("GET", APPS, page([]))
    result = run("apps", "list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "No apps in team acme" in result.stderr


def test_apps_create_sends_only_the_given_options(run, api):
    api.on("POST", APPS, reply(201, app_json("api", status="new", current_deployment=None)))

    result = run(
        "apps", "create", "api", "--project", "shop", "--port", "8080", "--replicas", "3",
        "--command", "gunicorn app:app --bind '0.0.0.0:8080'",
    )  # fmt: skip

    assert result.exit_code == 0, result.stderr
    (request,) = api.requests
    assert api.body(request) == {
        "name": "api",
        "project": "shop",
        "port": 8080,
        "replicas": 3,
        "command": ["gunicorn", "app:app", "--bind", "0.0.0.0:8080"],
    }
    assert "Created app api in team acme." in result.stderr
    assert "Name:" in result.stdout


def test_apps_create_json(run, api):
    created = app_json("api", status="new", current_deployment=None)
    api.on("POST", APPS, reply(201, created))
    result = run("apps", "create", "api", "--project", "shop", "--memory-mb", "512", "--cpus", "1.5", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == created
    assert api.body(api.requests[0])["cpus"] == 1.5


def test_apps_create_validation_error_prints_message_code_and_fields(run, api):
    api.on(
        "POST",
        APPS,
        api_error(400, "invalid", "Invalid input.", fields={"name": ["An app with this name already exists."]}),
    )

    result = run("apps", "create", "web", "--project", "shop")

    assert result.exit_code == 1
    assert "error: Invalid input. (invalid)" in result.stderr
    assert "name: An app with this name already exists." in result.stderr
    assert "request id: req-1" in result.stderr
    assert result.stdout == ""


def test_quota_error_shows_its_details(run, api):
    api.on("POST", APPS, api_error(403, "quota_exceeded", "Your plan allows 3 apps.", limit="apps", maximum=3))
    result = run("apps", "create", "web", "--project", "shop")
    assert result.exit_code == 1
    assert "Your plan allows 3 apps. (quota_exceeded)" in result.stderr
    assert "maximum: 3" in result.stderr


@pytest.mark.parametrize(
    "args", [["apps", "create", "web"], ["apps", "create", "web", "--project", "p", "--port", "0"]]
)
def test_apps_create_usage_errors_exit_2(run, api, args):
    assert run(*args).exit_code == 2
    assert api.requests == []


def test_apps_create_with_unbalanced_quotes_in_command_is_a_usage_error(run, api):
    result = run("apps", "create", "web", "--project", "p", "--command", "echo 'oops")
    assert result.exit_code == 2
    assert api.requests == []


def test_apps_info(run, api):
    api.on("GET", APPS + "web/", reply(200, app_json(command=["./serve", "--fast"])))

    result = run("apps", "info", "web")

    assert result.exit_code == 0
    assert "http://web.acme.localhost:8080" in result.stdout
    assert "#3 live registry.test/web:v3" in result.stdout
    assert "./serve --fast" in result.stdout
    assert "256 MB" in result.stdout


def test_apps_info_json(run, api):
    api.on("GET", APPS + "web/", reply(200, app_json()))
    result = run("apps", "info", "web", "--json")
    assert json.loads(result.stdout) == app_json()


def test_apps_info_not_found_exits_1(run, api):
    api.on("GET", APPS + "ghost/", api_error(404, "not_found", "Not found."))
    result = run("apps", "info", "ghost")
    assert result.exit_code == 1
    assert "Not found. (not_found)" in result.stderr


def test_names_are_encoded_as_one_path_segment(run, api):
    api.on("GET", "/api/v1/teams/acme/apps/a%2F..%2Fb/", reply(200, app_json()))
    run("apps", "info", "a/../b")
    assert api.requests[0].url.raw_path == b"/api/v1/teams/acme/apps/a%2F..%2Fb/"


def test_a_non_json_error_page_still_gives_a_clear_error(run, api):
    api.on("GET", APPS, reply(502, content=b"<html>Bad Gateway</html>"))
    result = run("apps", "list")
    assert result.exit_code == 1
    assert "HTTP 502 Bad Gateway from http://panda.test" in result.stderr


def test_an_api_under_a_path_prefix(run, api, monkeypatch):
    monkeypatch.setenv("PANDA_API_URL", "http://panda.test/platform/")
    api.on(
        "GET",
        "/platform" + APPS,
        page([app_json("web")], next_url="http://panda.test/platform/api/v1/teams/acme/apps/?cursor=2"),
        page([]),
    )
    result = run("apps", "list")
    assert result.exit_code == 0, result.stderr
    assert [r.url.path for r in api.requests] == ["/platform" + APPS, "/platform" + APPS]


def test_a_redirect_is_reported_not_followed(run, api):
    api.on("GET", APPS, reply(301, content=b"", headers={"Location": "https://panda.test/api/v1/teams/acme/apps/"}))
    result = run("apps", "list")
    assert result.exit_code == 1
    assert "redirect" in result.stderr
    assert len(api.requests) == 1
