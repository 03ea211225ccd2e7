"""panda registries list|login|logout: what each command sends, what it prints, --json, usage errors
(exit 2, and no request) and API errors. The password is read from stdin only and never printed.

The API is faked with httpx.MockTransport: allowed here because these tests check the CLI's own
request and response handling; end-to-end tests against the real server are separate.
"""

import json

from conftest import api_error, page, reply

CREDENTIALS = "/api/v1/teams/acme/registry-credentials/"
GHCR = CREDENTIALS + "ghcr.io/"
LOCAL = CREDENTIALS + "registry.example.com:5000/"  # httpx gives the path decoded


def credential_json(registry="ghcr.io", username="ci"):
    return {"registry": registry, "username": username, "created_at": "2025-01-01T12:00:00Z",
            "updated_at": "2025-01-02T12:00:00Z"}  # fmt: skip


def test_list(run, api, ci_env):
    api.on("GET", CREDENTIALS, page([credential_json(), credential_json("registry.example.com:5000", "deploy")]))
    result = run("registries", "list")
    assert result.exit_code == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["REGISTRY", "USERNAME", "UPDATED"]
    assert first.split()[:2] == ["ghcr.io", "ci"]
    assert second.split()[:2] == ["registry.example.com:5000", "deploy"]


def test_list_json_and_empty(run, api, ci_env):
    api.on("GET", CREDENTIALS, page([]))
    assert json.loads(run("registries", "list", "--json").stdout) == []
    result = run("registries", "list")
    assert "No registry logins in team acme yet" in result.stderr


def test_login_creates_with_the_password_from_stdin_and_never_prints_it(run, api, ci_env):
    api.on("PATCH", GHCR, api_error(404, "not_found", "Not found."))
    api.on("POST", CREDENTIALS, reply(201, credential_json()))
    result = run("registries", "login", "ghcr.io", "-u", "ci", "--password-stdin", input="s3cret-token\n")
    assert result.exit_code == 0, result.stderr
    assert api.body(api.sent("POST", CREDENTIALS)[0]) == {
        "registry": "ghcr.io", "username": "ci", "password": "s3cret-token"
    }  # fmt: skip
    assert "Stored team acme's login to ghcr.io as ci" in result.stderr + result.stdout
    assert "s3cret-token" not in result.stdout + result.stderr


def test_login_replaces_an_existing_login(run, api, ci_env):
    api.on("PATCH", LOCAL, reply(200, credential_json("registry.example.com:5000")))
    result = run(
        "registries", "login", "registry.example.com:5000", "--username", "ci", "--password-stdin", "--json",
        input="new-pw",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    (patch,) = api.sent("PATCH", LOCAL)
    assert api.body(patch) == {"username": "ci", "password": "new-pw"}
    assert api.sent("POST", CREDENTIALS) == []
    assert json.loads(result.stdout)["registry"] == "registry.example.com:5000"


def test_login_needs_password_stdin_and_a_password(run, api, ci_env):
    result = run("registries", "login", "ghcr.io", "-u", "ci")
    assert result.exit_code == 2
    assert "stdin" in result.stderr
    result = run("registries", "login", "ghcr.io", "-u", "ci", "--password-stdin", input="\n")
    assert result.exit_code == 2
    assert api.requests == []


def test_login_reports_the_apis_refusal(run, api, ci_env):
    api.on("PATCH", CREDENTIALS + "bad host/", api_error(404, "not_found", "Not found."))
    api.on(
        "POST", CREDENTIALS,
        api_error(400, "invalid", "Invalid registry credential.", fields={"registry": ["A registry host."]}),
    )  # fmt: skip
    result = run("registries", "login", "bad host", "-u", "ci", "--password-stdin", input="pw-123456")
    assert result.exit_code == 1
    assert "registry" in result.stderr
    assert "pw-123456" not in result.stderr + result.stdout


def test_logout(run, api, ci_env):
    api.on("DELETE", GHCR, reply(204, content=b""))
    result = run("registries", "logout", "ghcr.io")
    assert result.exit_code == 0, result.stderr
    assert len(api.sent("DELETE", GHCR)) == 1
    assert "Removed team acme's login to ghcr.io" in result.stderr + result.stdout


def test_logout_of_an_unknown_host_is_an_error(run, api, ci_env):
    api.on("DELETE", GHCR, api_error(404, "not_found", "Not found."))
    assert run("registries", "logout", "ghcr.io").exit_code == 1
