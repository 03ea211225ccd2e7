"""The HAProxy router against a real HAProxy and real HTTP: upstreams are small threaded HTTP servers
on 127.0.0.1 that answer their own name; a client thread keeps requesting while servers come and go
and while HAProxy reloads, and every failed request is counted.

No database is needed. Every test starts its own HAProxy on a free port in its own state directory
and the fixture stops it (and kills anything left of it) at teardown, whatever happened.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apps.runtime.router import Backend, HAProxyRouter, RouterError, Server
from tests.support.router_load import Load

HOST = "web.alpha.localhost"


def free_port() -> int:
    """A free port below the ephemeral range, so that no upstream (bound to port 0) or client
    connection takes it between now and HAProxy binding it."""
    for _ in range(100):
        port = random.randrange(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port found")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- upstreams ----------------------------------------------------------------------------------------
class Upstream:
    """An HTTP/1.1 keep-alive server answering its name, after ``delay`` seconds (so that requests
    are in flight when a server is drained)."""

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Head and body in one segment, sent at once: otherwise Nagle's algorithm and delayed ACKs
            # add 40 ms to every request on a reused connection.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                upstream.hits += 1
                if upstream.delay:
                    time.sleep(upstream.delay)
                body = upstream.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Quiet(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # HAProxy closing idle pooled connections is not an error

        self.delay = delay
        self.hits = 0
        self.closed = False
        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def server(self, weight: int = 100) -> Server:
        return Server(name=self.name, address="127.0.0.1", port=self.port, weight=weight)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def upstream() -> Iterator[Callable[..., Upstream]]:
    started: list[Upstream] = []

    def start(name: str, delay: float = 0.0) -> Upstream:
        started.append(Upstream(name, delay))
        return started[-1]

    yield start
    for up in started:
        up.close()


# --- the router -------------------------------------------------------------------------------------
@pytest.fixture
def router(tmp_path: Path) -> Iterator[HAProxyRouter]:
    r = HAProxyRouter(state_dir=tmp_path / "router", http_port=free_port(), metrics_port=free_port())
    try:
        yield r
    finally:
        try:
            r.stop()
        finally:
            # Whatever stop() did, no HAProxy of this test may outlive it.
            for pid in r._own_processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    assert not r._own_processes()


def get(router: HAProxyRouter, host: str = HOST, timeout: float = 5.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", router.http_port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def load() -> Iterator[Callable[..., Load]]:
    started: list[Load] = []

    def start(router: HAProxyRouter, host: str = HOST, *, keepalive: bool = False) -> Load:
        started.append(Load(router, host, keepalive=keepalive))
        started[-1].start()
        return started[-1]

    yield start
    for client in started:
        client.halt.set()
        client.join(timeout=10)


def backend(*servers: Server, name: str = "app_1", host: str = HOST) -> Backend:
    return Backend(name=name, hosts=(host,), servers=servers)


def states(router: HAProxyRouter, name: str = "app_1") -> dict[str, tuple[str, int]]:
    return {s.name: (s.admin_state, s.weight) for s in router.servers(name)}


# --- tests ------------------------------------------------------------------------------------------
def test_starts_from_nothing_and_answers_503_without_apps(router: HAProxyRouter) -> None:
    assert not router.is_running()
    router.ensure_running()
    assert router.is_running()
    master = router._master_pid()
    assert master is not None
    for name in ("haproxy.cfg", "hosts.map", "master.sock", "admin.sock", "haproxy.pid"):
        assert (router.state_dir / name).exists(), name
    assert get(router, "anything.localhost") == (503, "no app here")
    metrics = http.client.HTTPConnection("127.0.0.1", router.metrics_port, timeout=5)
    metrics.request("GET", "/metrics")
    assert b"haproxy_process_start_time_seconds" in metrics.getresponse().read()
    metrics.close()

    router.ensure_running()  # already running: nothing happens
    assert router._master_pid() == master


def test_routes_by_host_and_skips_unchanged_config(router: HAProxyRouter, upstream: Callable[..., Upstream]) -> None:
    s1 = upstream("s1")
    assert router.apply_config([backend(s1.server())]) is True  # starts HAProxy: it was not running
    assert get(router) == (200, "s1")
    assert get(router, f"WEB.Alpha.localhost:{router.http_port}") == (200, "s1")  # Host is case- and port-blind
    assert get(router, "other.alpha.localhost") == (503, "no app here")

    master = router._master_pid()
    assert router.apply_config([backend(s1.server())]) is False
    assert router._master_pid() == master
    assert [(s.name, s.port, s.admin_state, s.operational) for s in router.servers("app_1")] == [
        ("s1", s1.port, "ready", "up")
    ]


def test_server_names_lists_every_backends_servers_in_one_command(
    router: HAProxyRouter, upstream: Callable[..., Upstream]
) -> None:
    s1, s2 = upstream("s1"), upstream("s2")
    router.apply_config(
        [
            backend(s1.server()),
            Backend(name="app_2", hosts=("api.alpha.localhost",)),
            Backend(name="app_3", hosts=("etl.alpha.localhost",)),
        ]
    )
    router.add_server("app_2", s2.server())
    router.add_server("app_3", Server(name="s3", address="127.0.0.1", port=s2.port))
    router.remove_server("app_3", "s3", drain_timeout=0)
    assert router.server_names() == {"app_1": {"s1"}, "app_2": {"s2"}}  # app_3 has none left


def test_add_server_balances_and_is_idempotent(router: HAProxyRouter, upstream: Callable[..., Upstream]) -> None:
    s1, s2, s3 = upstream("s1"), upstream("s2"), upstream("s3")
    router.apply_config([backend(s1.server())])
    router.add_server("app_1", s2.server())
    answers = Counter(get(router)[1] for _ in range(10))
    assert answers == {"s1": 5, "s2": 5}  # round robin

    router.add_server("app_1", s2.server())  # again: nothing changes
    assert states(router) == {"s1": ("ready", 100), "s2": ("ready", 100)}

    # A drained server is made ready again; one at another address is moved there.
    router.drain_server("app_1", "s2")
    assert states(router)["s2"] == ("drain", 100)
    assert {get(router)[1] for _ in range(4)} == {"s1"}
    router.add_server("app_1", Server(name="s2", address="127.0.0.1", port=s3.port, weight=50))
    assert {s.name: (s.port, s.admin_state, s.weight) for s in router.servers("app_1")}["s2"] == (s3.port, "ready", 50)
    assert {get(router)[1] for _ in range(6)} == {"s1", "s3"}

    router.set_weight("app_1", "s1", 0)  # weight 0: no new requests
    assert {get(router)[1] for _ in range(4)} == {"s3"}

    # Run-time changes are written back to the configuration, without a reload.
    config = (router.state_dir / "haproxy.cfg").read_text()
    assert f"server s2 127.0.0.1:{s3.port} weight 50" in config
    assert f"server s1 127.0.0.1:{s1.port} weight 0" in config


def test_remove_server_drains_with_no_failed_request(
    router: HAProxyRouter, upstream: Callable[..., Upstream], load: Callable[..., Load]
) -> None:
    # Upstreams answer after 10 ms so that requests are in flight whenever a server is drained.
    ups = [upstream(f"s{i}", delay=0.01) for i in range(1, 5)]
    router.apply_config([backend(ups[0].server())])
    clients = [load(router), load(router), load(router, keepalive=True)]

    def requests(count: int) -> None:
        start = sum(c.total for c in clients)
        assert wait_for(lambda: sum(c.total for c in clients) >= start + count, timeout=10)

    hits_at_removal: dict[str, int] = {}

    def remove(index: int) -> None:
        router.remove_server("app_1", ups[index].name, drain_timeout=5)
        hits_at_removal[ups[index].name] = ups[index].hits
        ups[index].close()  # as a deploy stops the old container once it is out of the router

    requests(100)
    # A rolling replacement, twice: add the new server, then drain and delete the old one.
    router.add_server("app_1", ups[1].server())
    requests(100)
    remove(0)
    router.add_server("app_1", ups[2].server())
    router.add_server("app_1", ups[3].server())
    requests(100)
    remove(1)
    remove(2)
    requests(100)
    for client in clients:
        client.finish()
    # Once removed, a server got no request at all (not even one retried elsewhere).
    assert {up.name: up.hits for up in ups[:3]} == hits_at_removal

    total = sum(c.total for c in clients)
    failures = [f for c in clients for f in c.failures]
    seen = Counter()
    for client in clients:
        seen.update(client.seen)
    ka = clients[2]
    print(
        f"remove_server under load: {total} requests, {len(failures)} failed, by server {dict(seen)}"
        f" ({ka.total} keep-alive, {ka.stale_retries} retried after an idle close)"
    )
    assert total >= 400, total
    assert failures == [], failures[:10]
    assert set(seen) == {"s1", "s2", "s3", "s4"}
    assert [s.name for s in router.servers("app_1")] == ["s4"]
    assert {get(router)[1] for _ in range(3)} == {"s4"}

    # Idempotent: a server (or a backend) that is not there is not an error.
    router.remove_server("app_1", "s1")
    router.remove_server("app_gone", "s1")
    assert "server s1 " not in (router.state_dir / "haproxy.cfg").read_text()


def test_remove_server_cuts_sessions_after_drain_timeout(
    router: HAProxyRouter, upstream: Callable[..., Upstream]
) -> None:
    slow, fast = upstream("slow", delay=3.0), upstream("fast")
    router.apply_config([backend(slow.server())])
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(_try_get(router)), daemon=True)
    thread.start()
    assert wait_for(lambda: {s.name: s.current_sessions for s in router.servers("app_1")} == {"slow": 1})
    router.add_server("app_1", fast.server())

    started = time.monotonic()
    router.remove_server("app_1", "slow", drain_timeout=0.3)
    assert time.monotonic() - started < 2.5  # did not wait for the 3 s answer
    thread.join(timeout=5)
    assert [s.name for s in router.servers("app_1")] == ["fast"]
    assert result and result[0] != (200, "slow")  # its session was cut
    assert get(router) == (200, "fast")


def _try_get(router: HAProxyRouter) -> object:
    try:
        return get(router)
    except OSError as exc:
        return exc


def test_reload_is_seamless_and_skipped_when_unchanged(
    router: HAProxyRouter, upstream: Callable[..., Upstream], load: Callable[..., Load]
) -> None:
    s1, s2, b1 = upstream("s1"), upstream("s2"), upstream("b1")
    router.apply_config([backend(s1.server())])
    router.add_server("app_1", s2.server())
    router.drain_server("app_1", "s2")
    master = router._master_pid()
    worker = router._worker_pid()

    # The servers added at run time are in the configuration on disk: passing them changes nothing.
    assert router.apply_config([backend(s1.server(), s2.server())]) is False
    assert router._worker_pid() == worker

    clients = [load(router), load(router, keepalive=True)]

    # Other processes reading and changing servers while the reloads happen never see an error:
    # reads retry through the master's re-execution, changes wait for the lock that reloads hold.
    other = HAProxyRouter(state_dir=router.state_dir, http_port=router.http_port)
    spare = upstream("spare").server(weight=0)  # weight 0: takes no requests from the clients
    side_errors: list[Exception] = []
    side_calls = Counter()
    side_halt = threading.Event()

    def read_servers() -> None:
        while not side_halt.is_set():
            try:
                assert {"s1", "s2"} <= {s.name for s in other.servers("app_1")}
            except Exception as exc:
                side_errors.append(exc)
            side_calls["read"] += 1

    def add_and_remove() -> None:
        while not side_halt.is_set():
            try:
                other.add_server("app_1", spare)
                other.remove_server("app_1", "spare", drain_timeout=1)
            except Exception as exc:
                side_errors.append(exc)
            side_calls["add+remove"] += 1

    side = [threading.Thread(target=f, daemon=True) for f in (read_servers, add_and_remove)]
    for thread in side:
        thread.start()

    def requests(count: int) -> None:
        start = sum(c.total for c in clients)
        assert wait_for(lambda: sum(c.total for c in clients) >= start + count, timeout=10)

    requests(50)
    reloads = 0
    for i in range(2, 12):  # ten reloads, each adding an app
        apps = [backend(s1.server(), s2.server())] + [
            backend(b1.server(), name=f"app_{n}", host=f"app{n}.beta.localhost") for n in range(2, i + 1)
        ]
        assert router.apply_config(apps) is True
        reloads += 1
        assert get(router, f"app{i}.beta.localhost") == (200, "b1")
        requests(50)
    for client in clients:
        client.finish()
    side_halt.set()
    for thread in side:
        thread.join(timeout=10)
    print(f"alongside the reloads: {dict(side_calls)} calls from another router, {len(side_errors)} errors")
    assert side_calls["read"] > 50 and side_calls["add+remove"] > 5, side_calls
    assert side_errors == [], side_errors[:3]
    other.remove_server("app_1", "spare")

    total = sum(c.total for c in clients)
    failures = [f for c in clients for f in c.failures]
    ka = clients[1]
    print(
        f"reloads under load: {reloads} reloads, {total} requests, {len(failures)} failed"
        f" ({ka.total} keep-alive, {ka.stale_retries} retried after an idle close)"
    )
    assert reloads == 10
    assert total >= 500, total
    assert failures == [], failures[:10]
    assert router._master_pid() == master  # the same master, new workers
    assert router._worker_pid() != worker
    # The drained server stayed drained across the reloads (only s1 answered).
    assert {body for c in clients for body in c.seen} == {"s1"}
    assert states(router) == {"s1": ("ready", 100), "s2": ("drain", 100)}

    # Deleting an app is a reload too; its host then answers 503.
    assert router.apply_config([backend(s1.server(), s2.server())]) is True
    assert get(router, "app2.beta.localhost") == (503, "no app here")
    assert get(router) == (200, "s1")


def test_recovers_after_haproxy_was_killed(router: HAProxyRouter, upstream: Callable[..., Upstream]) -> None:
    s1, s2, s3 = upstream("s1"), upstream("s2"), upstream("s3")
    router.apply_config([backend(s1.server())])
    router.add_server("app_1", s2.server())
    pids = router._own_processes()
    assert len(pids) == 2  # master and worker

    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not router.is_running())
    with pytest.raises(OSError):
        get(router, timeout=1)

    # The reconciler: start it again (routes and servers come back from the state directory)...
    router.ensure_running()
    assert router.is_running()
    assert {get(router)[1] for _ in range(4)} == {"s1", "s2"}
    # ...then apply what the database says, which may differ.
    assert router.apply_config([backend(s1.server(), s3.server())]) is True
    assert {get(router)[1] for _ in range(4)} == {"s1", "s3"}
    assert states(router) == {"s1": ("ready", 100), "s3": ("ready", 100)}


def test_locked_holds_off_other_programmers_and_lets_its_own_thread_through(
    router: HAProxyRouter, upstream: Callable[..., Upstream]
) -> None:
    """A caller that reads elsewhere and then changes the router (a configuration rendered from the
    database) holds the lock for the whole block; its own changes inside go through, another process's
    (here another router object on the same state directory, in another thread) wait for the block."""
    s1, s2, s3 = upstream("s1"), upstream("s2"), upstream("s3")
    router.apply_config([backend(s1.server())])
    other = HAProxyRouter(state_dir=router.state_dir, http_port=router.http_port)
    added = threading.Event()

    def add_elsewhere() -> None:
        other.add_server("app_1", s3.server())
        added.set()

    with router.locked():
        elsewhere = threading.Thread(target=add_elsewhere)
        elsewhere.start()
        with router.locked():  # re-entrant
            router.add_server("app_1", s2.server())
        assert router.apply_config([backend(s1.server(), s2.server())]) is False
        assert not added.wait(0.5)  # waits for the block to end
    elsewhere.join(10)
    assert added.is_set()
    assert set(states(router)) == {"s1", "s2", "s3"}


def test_invalid_input_raises_and_changes_nothing(router: HAProxyRouter, upstream: Callable[..., Upstream]) -> None:
    s1 = upstream("s1")
    router.apply_config([backend(s1.server())])
    files = {p.name: p.read_text() for p in router.state_dir.iterdir() if p.suffix in (".cfg", ".map", ".json")}
    worker = router._worker_pid()

    bad_calls: list[Callable[[], object]] = [
        lambda: router.add_server("app_1", Server(name="bad.name", address="127.0.0.1", port=s1.port)),
        lambda: router.add_server("app_1", Server(name="ok", address="not-an-ip", port=s1.port)),
        lambda: router.add_server("app_1", Server(name="ok", address="127.0.0.1", port=s1.port, weight=300)),
        lambda: router.add_server("no_such_app", Server(name="ok", address="127.0.0.1", port=s1.port)),
        lambda: router.apply_config([backend(Server(name="Bad Name", address="127.0.0.1", port=1))]),
        lambda: router.apply_config([backend(s1.server()), backend(name="app_2")]),  # same host twice
        lambda: router.apply_config([backend(name="app;1")]),
        lambda: router.set_weight("app_1", "nope", 10),
        lambda: router.drain_server("app_1", "s1 state maint"),
    ]
    for call in bad_calls:
        with pytest.raises(RouterError) as info:
            call()
        assert str(info.value)

    assert {p.name: p.read_text() for p in router.state_dir.iterdir() if p.suffix in (".cfg", ".map", ".json")} == files
    assert router._worker_pid() == worker
    assert states(router) == {"s1": ("ready", 100)}
    assert get(router) == (200, "s1")


def test_missing_haproxy_is_a_clear_error(tmp_path: Path) -> None:
    r = HAProxyRouter(state_dir=tmp_path / "r", http_port=free_port(), haproxy_bin="/nonexistent/haproxy")
    with pytest.raises(RouterError, match=r"haproxy not found.*apt-get install haproxy"):
        r.ensure_running()
    assert not r.is_running()


def test_configuration_refused_by_haproxy_carries_its_message(tmp_path: Path) -> None:
    r = HAProxyRouter(state_dir=tmp_path / "r", http_port=free_port(), bind_address="999.1.1.1")
    with pytest.raises(RouterError, match=r"haproxy refused the configuration: .*invalid address: '999\.1\.1\.1'"):
        r.ensure_running()
    assert not r.is_running()
    assert not (r.state_dir / "haproxy.cfg").exists()


def test_from_settings(settings, tmp_path: Path) -> None:
    settings.PANDASTACK_ROUTER_DIR = tmp_path / "from-settings"
    settings.PANDASTACK_ROUTER_HTTP_PORT = 8123
    settings.PANDASTACK_ROUTER_BIND = "127.0.0.2"
    settings.PANDASTACK_HAPROXY_BIN = "/usr/sbin/haproxy"
    r = HAProxyRouter.from_settings()
    assert (r.state_dir, r.http_port, r.bind_address, r.haproxy_bin, r.metrics_port) == (
        tmp_path / "from-settings",
        8123,
        "127.0.0.2",
        "/usr/sbin/haproxy",
        None,
    )
