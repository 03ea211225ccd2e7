"""Streams cannot take the API down (issue 11, item 8).

Everything here goes through a real ASGI server — uvicorn with ONE worker, started as a subprocess on
the test database, as scripts/run and the production image run the platform — following the logs of
a real app container deployed by the real Celery worker on the real Docker Engine.

Before the fix the follow endpoint returned a sync iterator that blocked on the Docker SDK: a sync
server (runserver, gunicorn's 3 sync workers) gave each follower a whole worker, so three of them
took the API down, and under ASGI Django drained that iterator to its end before sending a byte, so a
follow never delivered a line. There was no cap per token, no maximum duration and no end on
revocation: each test below fails on that code.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator

import h11
import httpx
import pytest

from apps.tokens.models import ApiToken
from tests.conftest import make_team, make_token
from tests.e2e.test_deploy import create_app, deploy, host, token_client
from tests.support.platform_fixtures import WorkerProcess, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LOGS = "/api/v1/teams/alpha/apps/web/logs/"


class Server:
    def __init__(self, process: WorkerProcess, port: int) -> None:
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}"

    def get(self, raw_token: str, path: str, timeout: float = 10.0) -> httpx.Response:
        return httpx.get(self.base_url + path, headers=auth(raw_token), timeout=timeout)


def auth(raw_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_token}"}


@pytest.fixture
def asgi_server(platform, platform_settings, tmp_path) -> Iterator[Callable[..., Server]]:
    """start(**settings) -> a uvicorn server (one worker) on a free port with these extra settings."""
    started: list[WorkerProcess] = []

    def start(**overrides: object) -> Server:
        port = free_port()
        env = {
            **platform_settings["env"],
            "PANDASTACK_STREAM_CHECK_SECONDS": "0.5",
            **{name: str(value) for name, value in overrides.items()},
        }
        argv = [
            sys.executable, "-m", "uvicorn", "pandastack.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--lifespan", "off", "--timeout-graceful-shutdown", "2",
        ]  # fmt: skip
        process = WorkerProcess(env, tmp_path / f"uvicorn-{port}.log", argv=argv, ready=b"Uvicorn running on")
        process.start()
        started.append(process)
        return Server(process, port)

    yield start
    for process in started:
        process.stop()


class Follower:
    """One `logs?follow=1` client in a thread of its own (a plain socket and h11, so that `close()`
    really hangs up even while no line arrives): records the status and every NDJSON line."""

    def __init__(self, server: Server, raw_token: str, tail: int = 0) -> None:
        self.port = int(server.base_url.rsplit(":", 1)[1])
        self.target = f"{LOGS}?follow=1&tail={tail}"
        self.token = raw_token
        self.status: int | None = None
        self.body = b""
        self.lines: list[dict] = []
        self.ended = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn = h11.Connection(h11.CLIENT)
        pending = b""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                headers = [("Host", "127.0.0.1"), ("Authorization", f"Bearer {self.token}"), ("Connection", "close")]
                sock.sendall(conn.send(h11.Request(method="GET", target=self.target, headers=headers)))
                sock.sendall(conn.send(h11.EndOfMessage()))
                sock.settimeout(0.2)
                while not self._stop.is_set():
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        try:
                            conn.receive_data(sock.recv(65536))
                        except TimeoutError:
                            continue
                    elif isinstance(event, h11.Response):
                        self.status = event.status_code
                    elif isinstance(event, h11.Data):
                        if self.status != 200:
                            self.body += bytes(event.data)
                            continue
                        pending += bytes(event.data)
                        *complete, pending = pending.split(b"\n")
                        self.lines.extend(json.loads(raw) for raw in complete if raw.strip())
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        return
        except OSError:
            pass
        finally:
            self.ended.set()

    def close(self) -> None:
        """Hang up (within 0.2 s)."""
        self._stop.set()

    def saw(self, text: str) -> bool:
        return any(text in line.get("line", "") for line in self.lines)

    @property
    def last(self) -> dict | None:
        return self.lines[-1] if self.lines else None


@pytest.fixture
def deployed(platform, web_image):
    """Team alpha with the app `web` live (a busybox httpd that logs every response), and a token."""
    world = make_team("alpha")
    _, raw = make_token(world.team, world.user("owner"))
    client = token_client(raw)
    create_app(client)
    deploy(client, web_image, platform=platform)
    return world


def owner_token(world, name: str = "t") -> tuple[ApiToken, str]:
    return make_token(world.team, world.user("owner"), name=name)


def wait_statuses(followers: list[Follower], timeout: float = 20.0) -> None:
    wait_for(lambda: all(f.status is not None for f in followers), timeout=timeout, what="the streams to answer")


def test_ten_open_follows_leave_the_api_answering_fast_and_every_stream_live(deployed, asgi_server, platform):
    server = asgi_server()
    tokens = [owner_token(deployed, "a")[1], owner_token(deployed, "b")[1]]
    followers = [Follower(server, tokens[i % 2]) for i in range(10)]  # 5 per token: the default cap
    try:
        wait_statuses(followers)
        assert [f.status for f in followers] == [200] * 10

        # Ordinary API requests are served at once while the ten streams stay open (one worker!).
        timings = []
        for _ in range(20):
            started = time.monotonic()
            response = server.get(tokens[0], "/api/v1/teams/alpha/apps/", timeout=10)
            timings.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
        assert max(timings) < 2.0 and statistics.median(timings) < 0.5, timings
        assert not any(f.ended.is_set() for f in followers)

        # ...and every one of them is live: a request to the app shows up in all ten.
        wait_for(
            lambda: platform.get(host(), "/stream-probe").status_code == 404
            and all(f.saw("response:404") for f in followers),
            timeout=30,
            what="the new log line in all ten streams",
        )
    finally:
        for f in followers:
            f.close()


def test_the_per_token_cap_answers_429_in_the_error_shape_and_frees_on_close(deployed, asgi_server):
    server = asgi_server(PANDASTACK_MAX_FOLLOWS_PER_TOKEN=2)
    _, capped = owner_token(deployed, "capped")
    _, other = owner_token(deployed, "other")
    first, second = Follower(server, capped), Follower(server, capped)
    wait_statuses([first, second])
    assert (first.status, second.status) == (200, 200)

    third = server.get(capped, LOGS + "?follow=1", timeout=10)
    assert third.status_code == 429, third.text
    body = third.json()
    assert set(body) == {"error"} and body["error"]["code"] == "throttled", body
    assert {"code", "message", "fields", "request_id"} <= set(body["error"])
    assert "log streams" in body["error"]["message"] and body["error"]["retry_after"] >= 1
    assert third.headers["Retry-After"] == str(body["error"]["retry_after"])
    # The cap is per token: another token still follows, and plain (non-follow) reads are not capped.
    another = Follower(server, other)
    wait_statuses([another])
    assert another.status == 200
    assert server.get(capped, LOGS + "?tail=1").status_code == 200

    # Closing a stream gives its slot back (the server notices the client went away).
    first.close()
    wait_for(lambda: first.ended.is_set(), timeout=10, what="the first stream to close")
    retries: list[Follower] = []

    def slot_freed() -> bool:
        retry = Follower(server, capped)
        retries.append(retry)
        wait_statuses([retry])
        return retry.status == 200

    wait_for(slot_freed, timeout=15, what="the closed stream's slot to be given back")
    for f in (second, another, *retries):
        f.close()


def test_a_stream_ends_at_its_maximum_duration_with_a_last_line_saying_why(deployed, asgi_server):
    server = asgi_server(PANDASTACK_STREAM_MAX_SECONDS=3, PANDASTACK_MAX_FOLLOWS_PER_TOKEN=1)
    _, raw = owner_token(deployed)
    started = time.monotonic()
    follower = Follower(server, raw, tail=5)
    assert follower.ended.wait(20), "the stream did not end"
    elapsed = time.monotonic() - started
    assert follower.status == 200
    assert 2.5 <= elapsed < 10, elapsed
    assert follower.last["end"]["reason"] == "max_duration", follower.lines
    assert "maximum duration" in follower.last["end"]["message"]
    # The ended stream gave its slot back (cap 1): a new follow is allowed again.
    again = Follower(server, raw)
    wait_statuses([again])
    assert again.status == 200
    again.close()


def test_revoking_the_token_ends_its_open_stream_within_seconds(deployed, asgi_server):
    server = asgi_server(PANDASTACK_STREAM_CHECK_SECONDS=1)
    token, raw = owner_token(deployed, "ci")
    _, admin = owner_token(deployed, "admin")
    follower = Follower(server, raw)
    wait_statuses([follower])
    assert follower.status == 200
    time.sleep(1.5)
    assert not follower.ended.is_set()

    revoked = httpx.post(
        f"{server.base_url}/api/v1/teams/alpha/tokens/{token.pk}/revoke/", headers=auth(admin), timeout=10
    )
    assert revoked.status_code == 200, revoked.text
    started = time.monotonic()
    assert follower.ended.wait(10), "the stream outlived its revoked token"
    assert time.monotonic() - started < 5
    assert follower.last["end"]["reason"] == "access_revoked", follower.lines
    assert server.get(raw, LOGS + "?follow=1").status_code == 401


# A 100-byte line, 2,000 of them a second: enough to fill every buffer between the platform and a
# client that stops reading, bounded so the engine's log file stays small.
CHATTY = (
    "sh /start.sh & while true; do i=0; while [ $i -lt 2000 ]; do"
    " echo 'chatty-line-" + "x" * 80 + "'; i=$((i+1)); done; sleep 1; done"
)


def test_a_client_that_stops_reading_is_dropped_and_frees_its_slot(platform, web_image, asgi_server):
    world = make_team("alpha")
    _, setup = make_token(world.team, world.user("owner"))
    client = token_client(setup)
    create_app(client, command=["/bin/sh", "-c", CHATTY])
    deploy(client, web_image, platform=platform)
    server = asgi_server(PANDASTACK_MAX_FOLLOWS_PER_TOKEN=1, PANDASTACK_STREAM_STALL_SECONDS=3)
    _, raw = owner_token(world, "slow")

    # A follower that reads its first bytes, then nothing at all (a tiny receive window).
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1])))
    sock.sendall(
        f"GET {LOGS}?follow=1&tail=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {raw}\r\n\r\n".encode()
    )
    sock.settimeout(10)
    assert sock.recv(15).startswith(b"HTTP/1.1 200")
    try:
        # While it is parked, its token's one slot is taken...
        assert server.get(raw, LOGS + "?follow=1").status_code == 429
        # ...until the server drops it: then the token may follow again, and the socket reaches its end.
        def slot_back() -> bool:
            follower = Follower(server, raw)
            wait_statuses([follower])
            follower.close()
            return follower.status == 200

        wait_for(slot_back, timeout=30, what="the stalled stream to be dropped and its slot freed")
        sock.settimeout(1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if not sock.recv(1 << 20):
                    break  # the server closed the connection
            except TimeoutError:
                continue
            except OSError:
                break  # reset: closed too
        else:
            pytest.fail("the stalled connection was never closed")
        assert b"dropped a client that read nothing" in server.process.log_path.read_bytes()
    finally:
        sock.close()
