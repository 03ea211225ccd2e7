"""logs (streaming NDJSON), scale, --version, --help on every command, colour rules, and the
promise that the CLI never imports Django. The API is faked with httpx.MockTransport: allowed here
because these tests check the CLI's own request and response handling; end-to-end tests against
the real server are separate."""

import io
import json
import subprocess
import sys

import httpx
import pytest
from conftest import api_error, reply

from panda_cli import output
from panda_cli.main import app

APP = "/api/v1/teams/acme/apps/web/"
LOGS = APP + "logs/"


@pytest.fixture(autouse=True)
def _ci(ci_env):
    pass


def ndjson(*entries):
    return b"".join(json.dumps(entry).encode() + b"\n" for entry in entries)


def test_logs_prints_each_line_with_its_replica(run, api):
    body = ndjson(
        {"replica": "r1", "at": "2025-01-31T12:00:00Z", "line": "listening on :8000"},
        {"replica": "r2", "at": None, "line": "GET / 200"},
    )
    api.on("GET", LOGS, reply(200, content=body, headers={"Content-Type": "application/x-ndjson"}))

    result = run("logs", "--app", "web")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "[r1] listening on :8000\n[r2] GET / 200\n"
    request = api.requests[0]
    assert request.url.params["tail"] == "100"
    assert "follow" not in request.url.params
    assert request.headers["Accept"] == "application/x-ndjson"


def test_logs_json_passes_the_ndjson_through(run, api):
    entries = [{"replica": "r1", "at": None, "line": "a"}, {"replica": "r1", "at": None, "line": "b"}]
    api.on("GET", LOGS, reply(200, content=ndjson(*entries)))

    result = run("logs", "--app", "web", "-n", "2", "--json")

    assert [json.loads(line) for line in result.stdout.splitlines()] == entries
    assert api.requests[0].url.params["tail"] == "2"


def test_logs_follow_prints_lines_as_they_arrive(run, api, monkeypatch):
    printed = []
    monkeypatch.setattr(output, "line", printed.append)

    def stream():
        yield ndjson({"replica": "r1", "at": None, "line": "first"})
        # The first line is on screen before the server has sent the second.
        assert printed == ["[r1] first"]
        yield ndjson({"replica": "r1", "at": None, "line": "second"})

    api.on("GET", LOGS, lambda request: httpx.Response(200, content=stream()))

    result = run("logs", "--app", "web", "-f", "-n", "0")

    assert result.exit_code == 0, result.stderr
    assert printed == ["[r1] first", "[r1] second"]
    params = api.requests[0].url.params
    assert params["follow"] == "1"
    assert params["tail"] == "0"


def test_logs_follow_says_why_the_server_ended_the_stream(run, api):
    message = "This stream reached its maximum duration of 3600 s; open a new one to go on."
    body = ndjson(
        {"replica": "r1", "at": None, "line": "first"},
        {"end": {"reason": "max_duration", "message": message}},
    )
    api.on("GET", LOGS, reply(200, content=body))
    result = run("logs", "--app", "web", "-f")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "[r1] first\n"
    assert message in result.stderr


def test_logs_split_across_chunks_and_blank_lines(run, api):
    body = ndjson({"replica": "r1", "at": None, "line": "whole line"})
    chunks = [body[:5], body[5:], b"\n", b"not json\n"]
    api.on("GET", LOGS, lambda request: httpx.Response(200, content=iter(chunks)))
    result = run("logs", "--app", "web")
    assert result.stdout == "[r1] whole line\nnot json\n"


def test_logs_without_the_logs_permission_exits_1(run, api):
    api.on("GET", LOGS, api_error(403, "permission_denied", "You may not read this app's logs."))
    result = run("logs", "--app", "web")
    assert result.exit_code == 1
    assert "You may not read this app's logs. (permission_denied)" in result.stderr
    assert result.stdout == ""


def test_logs_with_a_rejected_token_exits_4(run, api):
    api.on("GET", LOGS, api_error(401, "not_authenticated", "Token expired."))
    assert run("logs", "--app", "web", "-f").exit_code == 4


def test_logs_negative_tail_is_a_usage_error(run, api):
    assert run("logs", "--app", "web", "-n", "-1").exit_code == 2


def test_scale_posts_the_replica_count(run, api):
    api.on("POST", APP + "scale/", reply(202, {"name": "web", "replicas": 3, "status": "deploying"}))

    result = run("scale", "--app", "web", "3")

    assert result.exit_code == 0, result.stderr
    assert api.body(api.requests[0]) == {"replicas": 3}
    assert "Scaling web to 3 replicas (deploying)." in result.stderr
    assert result.stdout == ""


def test_scale_json(run, api):
    api.on("POST", APP + "scale/", reply(202, {"name": "web", "replicas": 0, "status": "stopped"}))
    result = run("scale", "--app", "web", "0", "--json")
    assert json.loads(result.stdout)["replicas"] == 0


def test_scale_over_the_plan_exits_1_with_the_limit(run, api):
    api.on("POST", APP + "scale/", api_error(403, "quota_exceeded", "Your plan allows 2 replicas.", maximum=2))
    result = run("scale", "--app", "web", "9")
    assert result.exit_code == 1
    assert "maximum: 2" in result.stderr


@pytest.mark.parametrize("args", [["scale", "--app", "web"], ["scale", "--app", "web", "-1"], ["scale", "3"]])
def test_scale_usage_errors_exit_2(run, api, args):
    assert run(*args).exit_code == 2
    assert api.requests == []


def test_unknown_command_exits_2(run):
    assert run("frobnicate").exit_code == 2


def test_version(run):
    from panda_cli import __version__

    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"panda {__version__}\n"


def _commands(group, prefix=()):
    from typer.main import get_command

    command = get_command(group) if not prefix else group
    for name, sub in getattr(command, "commands", {}).items():
        yield (*prefix, name)
        yield from _commands(sub, (*prefix, name))


COMMANDS = list(_commands(app))


def test_every_command_the_issue_asks_for_exists():
    assert set(COMMANDS) >= {
        ("login",), ("logout",), ("whoami",), ("apps",), ("apps", "list"), ("apps", "create"), ("apps", "info"),
        ("deploy",), ("releases",), ("rollback",), ("logs",), ("scale",),
    }  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_on_every_command(run, api, command):
    result = run(*command, "--help")
    assert result.exit_code == 0
    assert "Usage: panda " + " ".join(command) in result.stdout
    assert api.requests == []


def test_no_colour_when_not_a_terminal_or_no_color(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert output.colour_enabled(Terminal()) is True
    assert output.colour_enabled(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert output.colour_enabled(Terminal()) is False


def test_errors_carry_no_escape_codes_when_captured(run, api):
    api.on("GET", "/api/v1/me/", api_error(401, "not_authenticated", "Token expired."))
    result = run("whoami")
    assert result.exit_code == 4
    assert "error: the API at http://panda.test rejected the token: Token expired." in result.stderr
    assert "\x1b[" not in result.stderr


def test_the_cli_never_imports_django():
    code = "import sys, panda_cli.main; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip() == "[]"


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "panda_cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout.startswith("panda ")
