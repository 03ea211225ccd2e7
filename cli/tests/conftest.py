"""Fixtures for the `panda` CLI's own tests. They need no server: the API is faked with
httpx.MockTransport, which is allowed here because these tests check the CLI's own request and
response handling (what it sends, how it reads answers, errors, exit codes and output). End-to-end
tests against the real server live with the main project.

Every test gets an empty config directory and no PANDA_* variables, and a fake clock so polling
with a 600-second timeout finishes at once.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from panda_cli import client
from panda_cli.main import app

API = "http://panda.test"
TEAM = "acme"

Reply = httpx.Response | Callable[[httpx.Request], httpx.Response]


def reply(status: int = 200, body: Any = None, **kwargs: Any) -> httpx.Response:
    """A JSON response (or a raw one when `content=` is given)."""
    if "content" in kwargs:
        return httpx.Response(status, **kwargs)
    return httpx.Response(status, json=body, **kwargs)


def page(results: list[Any], next_url: str | None = None) -> httpx.Response:
    return reply(200, {"next": next_url, "previous": None, "results": results})


def api_error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    body = {"code": code, "message": message, "fields": extra.pop("fields", {}), "request_id": "req-1", **extra}
    return reply(status, {"error": body})


class FakeApi:
    """Routes (method, path) to replies. A list of replies is answered in order, its last one
    repeated; a callable gets the request. Every request is recorded."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = list(replies)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        if key not in self.routes:
            return api_error(404, "not_found", f"no fake route for {key}")
        queue = self.routes[key]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request) if callable(answer) else answer

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def body(self, request: httpx.Request) -> Any:
        return json.loads(request.content)


@dataclass
class FakeClock:
    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    for name in ("PANDA_TOKEN", "PANDA_API_URL", "PANDA_TEAM", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    config_home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    return config_home


@pytest.fixture(autouse=True)
def no_real_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that forgets the `api` fixture fails instead of touching the network."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected real request: {request.method} {request.url}")

    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(refuse))


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, no_real_network: None) -> FakeApi:
    fake = FakeApi()
    monkeypatch.setattr(client, "transport_factory", lambda: httpx.MockTransport(fake.handler))
    return fake


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(client, "clock", fake)
    return fake


@pytest.fixture
def ci_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Logged in the CI way: environment variables only."""
    monkeypatch.setenv("PANDA_TOKEN", "psk_test_token")
    monkeypatch.setenv("PANDA_API_URL", API)
    monkeypatch.setenv("PANDA_TEAM", TEAM)


def invoke(*args: str, input: str | None = None) -> Result:
    """Run `panda ARGS` in-process, with stdout and stderr captured apart."""
    result = CliRunner().invoke(app, list(args), input=input, prog_name="panda")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr, result.exception)


@pytest.fixture
def run() -> Callable[..., Result]:
    return invoke
