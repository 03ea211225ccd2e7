"""login, logout, whoami, and how credentials and the team are found. The API is faked with
httpx.MockTransport: allowed here because these tests check the CLI's own request and response
handling; end-to-end tests against the real server are separate."""

import json
import stat

from conftest import API, TEAM, api_error, reply

ME = {
    "id": 7,
    "username": "ada",
    "email": "ada@example.com",
    "is_service_account": False,
    "token": {
        "id": 3,
        "name": "laptop",
        "prefix": "psk_ab12",
        "team": TEAM,
        "scopes": ["read", "deploy", "logs"],
        "expires_at": None,
    },
}


def config_file(config_home):
    return config_home / "panda" / "config.json"


def test_login_checks_the_token_and_saves_it_for_the_user_only(run, api, clean_environment):
    api.on("GET", "/api/v1/me/", reply(200, ME))

    result = run("login", "--token", "psk_secret", "--api-url", API + "/")

    assert result.exit_code == 0, result.stderr
    assert "Logged in to http://panda.test as ada (team acme)" in result.stderr
    assert result.stdout == ""
    (request,) = api.requests
    assert str(request.url) == "http://panda.test/api/v1/me/"
    assert request.headers["Authorization"] == "Bearer psk_secret"
    path = config_file(clean_environment)
    assert json.loads(path.read_text()) == {"api_url": API, "token": "psk_secret", "team": TEAM}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_login_tightens_an_existing_file_and_directory(run, api, clean_environment):
    path = config_file(clean_environment)
    path.parent.mkdir(parents=True, mode=0o755)
    path.parent.chmod(0o755)
    path.write_text("{}")
    path.chmod(0o644)
    api.on("GET", "/api/v1/me/", reply(200, ME))

    assert run("login", "--token", "psk_secret", "--api-url", API).exit_code == 0

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temporary file left


def test_login_with_team_option_and_token_from_stdin(run, api, clean_environment):
    api.on("GET", "/api/v1/me/", reply(200, {**ME, "token": {**ME["token"], "team": None}}))

    result = run("login", "--token", "-", "--api-url", API, "--team", "other", input="psk_piped\n")

    assert result.exit_code == 0, result.stderr
    assert api.requests[0].headers["Authorization"] == "Bearer psk_piped"
    assert json.loads(config_file(clean_environment).read_text())["team"] == "other"


def test_login_with_a_rejected_token_exits_4_and_saves_nothing(run, api, clean_environment):
    api.on("GET", "/api/v1/me/", api_error(401, "not_authenticated", "Invalid token."))

    result = run("login", "--token", "psk_bad", "--api-url", API)

    assert result.exit_code == 4
    assert "rejected the token: Invalid token." in result.stderr
    assert not config_file(clean_environment).exists()


def test_login_without_token_is_a_usage_error(run):
    result = run("login")
    assert result.exit_code == 2
    assert "--token" in result.stderr


def test_login_to_an_unreachable_api_exits_1_with_a_clear_message(run, monkeypatch, clean_environment):
    import httpx

    from panda_cli import client

    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(refuse))

    result = run("login", "--token", "psk_x", "--api-url", "http://127.0.0.1:9")

    assert result.exit_code == 1
    assert "cannot reach the PandaStack API at http://127.0.0.1:9" in result.stderr
    assert not config_file(clean_environment).exists()


def test_login_rejects_a_url_that_is_not_http(run, api):
    result = run("login", "--token", "psk_x", "--api-url", "panda.test")
    assert result.exit_code == 2
    assert "--api-url must be an http:// or https:// URL" in result.stderr
    assert api.requests == []


def test_logout_forgets_the_token_but_keeps_the_api_url(run, api, clean_environment):
    api.on("GET", "/api/v1/me/", reply(200, ME))
    run("login", "--token", "psk_secret", "--api-url", API)

    result = run("logout")

    assert result.exit_code == 0
    assert "Logged out" in result.stderr
    assert json.loads(config_file(clean_environment).read_text()) == {"api_url": API}
    assert run("whoami").exit_code == 4
    assert run("logout").stderr.startswith("Not logged in")


def test_saved_login_is_used_by_later_commands(run, api):
    api.on("GET", "/api/v1/me/", reply(200, ME))
    run("login", "--token", "psk_secret", "--api-url", API)

    result = run("whoami")

    assert result.exit_code == 0, result.stderr
    assert all(r.headers["Authorization"] == "Bearer psk_secret" for r in api.requests)


def test_whoami_prints_the_user_token_and_team(run, api, ci_env):
    api.on("GET", "/api/v1/me/", reply(200, ME))

    result = run("whoami")

    assert result.exit_code == 0
    assert "User:" in result.stdout and "ada" in result.stdout
    assert "read, deploy, logs" in result.stdout
    assert "laptop (psk_ab12…)" in result.stdout
    assert "PANDA_TOKEN" in result.stdout  # where the token came from
    assert result.stderr == ""


def test_whoami_json_prints_the_apis_json(run, api, ci_env):
    api.on("GET", "/api/v1/me/", reply(200, ME))

    result = run("whoami", "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == ME


def test_no_token_anywhere_exits_4(run, api):
    result = run("whoami")
    assert result.exit_code == 4
    assert "not logged in" in result.stderr
    assert "panda login --token" in result.stderr
    assert api.requests == []


def test_a_revoked_token_exits_4(run, api, ci_env):
    api.on("GET", "/api/v1/me/", api_error(401, "not_authenticated", "Token revoked."))
    result = run("whoami")
    assert result.exit_code == 4
    assert "Token revoked." in result.stderr


def test_environment_wins_over_the_saved_login(run, api, monkeypatch):
    api.on("GET", "/api/v1/me/", reply(200, ME))
    api.on("GET", "/api/v1/teams/from-env/apps/", reply(200, {"next": None, "previous": None, "results": []}))
    run("login", "--token", "psk_saved", "--api-url", "http://saved.test", "--team", "saved")
    api.requests.clear()
    monkeypatch.setenv("PANDA_TOKEN", "psk_env")
    monkeypatch.setenv("PANDA_API_URL", API)
    monkeypatch.setenv("PANDA_TEAM", "from-env")

    result = run("apps", "list")

    assert result.exit_code == 0, result.stderr
    (request,) = api.requests
    assert request.url.host == "panda.test"
    assert request.headers["Authorization"] == "Bearer psk_env"


def test_team_option_wins_over_environment(run, api, ci_env):
    api.on("GET", "/api/v1/teams/cli-team/apps/", reply(200, {"next": None, "previous": None, "results": []}))
    assert run("apps", "list", "--team", "cli-team").exit_code == 0


def test_empty_environment_variables_count_as_unset(run, api, monkeypatch):
    api.on("GET", "/api/v1/me/", reply(200, ME))
    run("login", "--token", "psk_saved", "--api-url", API, "--team", "saved")
    api.requests.clear()
    api.on("GET", "/api/v1/teams/saved/apps/", reply(200, {"next": None, "previous": None, "results": []}))
    for name in ("PANDA_TOKEN", "PANDA_API_URL", "PANDA_TEAM"):
        monkeypatch.setenv(name, "")

    result = run("apps", "list")

    assert result.exit_code == 0, result.stderr
    assert api.requests[0].headers["Authorization"] == "Bearer psk_saved"


def test_team_defaults_to_the_tokens_team(run, api, monkeypatch):
    monkeypatch.setenv("PANDA_TOKEN", "psk_env")
    monkeypatch.setenv("PANDA_API_URL", API)
    api.on("GET", "/api/v1/me/", reply(200, ME))
    api.on("GET", "/api/v1/teams/acme/apps/", reply(200, {"next": None, "previous": None, "results": []}))

    result = run("apps", "list")

    assert result.exit_code == 0, result.stderr
    assert [r.url.path for r in api.requests] == ["/api/v1/me/", "/api/v1/teams/acme/apps/"]


def test_no_team_anywhere_is_a_usage_error(run, api, monkeypatch):
    monkeypatch.setenv("PANDA_TOKEN", "psk_env")
    monkeypatch.setenv("PANDA_API_URL", API)
    api.on("GET", "/api/v1/me/", reply(200, {**ME, "token": None}))

    result = run("apps", "list")

    assert result.exit_code == 2
    assert "--team" in result.stderr


def test_invalid_api_url_in_environment_is_a_usage_error(run, api, monkeypatch):
    monkeypatch.setenv("PANDA_TOKEN", "psk_env")
    monkeypatch.setenv("PANDA_API_URL", "ftp://panda.test")
    result = run("whoami")
    assert result.exit_code == 2
    assert "PANDA_API_URL" in result.stderr


def test_relative_xdg_config_home_is_ignored(monkeypatch, tmp_path):
    from panda_cli import config

    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.config_path() == tmp_path / ".config" / "panda" / "config.json"


def test_a_broken_config_file_is_reported_and_logout_removes_it(run, api, clean_environment):
    path = config_file(clean_environment)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")

    result = run("whoami")
    assert result.exit_code == 1
    assert "is not a JSON object" in result.stderr
    assert "panda logout" in result.stderr

    assert run("logout").exit_code == 0
    assert not path.exists()
