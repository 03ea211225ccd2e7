"""The Docker Engine driver against the real engine, with tiny local images (no registry)."""

import http.client
import queue
import threading
import time
from collections.abc import Iterator

import pytest

from apps.runtime.engine import (
    APP_CAPABILITIES,
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    DEFAULT_PIDS_LIMIT,
    ContainerInfo,
    ContainerSpec,
    DockerEngine,
    EngineError,
    LogLine,
)
from tests.support.engine_fixtures import EngineTestRun

PORT = 5000


def make_spec(run: EngineTestRun, suffix: str, image: str, network: str, **overrides: object) -> ContainerSpec:
    fields: dict = {
        "name": run.name(suffix),
        "image": image,
        "port": PORT,
        "env": {},
        "labels": {**run.labels, "io.pandastack.replica": suffix},
        "network": network,
    }
    fields.update(overrides)
    return ContainerSpec(**fields)


def team_network(engine: DockerEngine, run: EngineTestRun, suffix: str = "net") -> str:
    name = run.name(suffix)
    engine.ensure_network(name, run.labels)
    return name


def http_get(ip: str, path: str = "/", *, deadline: float = 5.0) -> tuple[str, int]:
    """GET http://ip:PORT/path once the server listens; returns (body, the client's source port)."""
    give_up = time.monotonic() + deadline
    while True:
        conn = http.client.HTTPConnection(ip, PORT, timeout=2)
        try:
            conn.connect()
            source_port = conn.sock.getsockname()[1]
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200, response.status
            return response.read().decode(), source_port
        except ConnectionRefusedError:
            # The container is up but httpd is not listening yet: poll, there is no event to wait on.
            if time.monotonic() > give_up:
                raise
            time.sleep(0.02)
        finally:
            conn.close()


def wait_for_line(lines: "queue.Queue[tuple[str, LogLine]]", predicate, timeout: float = 5.0) -> tuple[str, LogLine]:
    give_up = time.monotonic() + timeout
    seen = []
    while True:
        remaining = give_up - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching log line within {timeout}s; saw {seen}")
        try:
            item = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        seen.append(item)
        if predicate(item):
            return item


def consume_in_thread(iterator: Iterator) -> tuple["queue.Queue", threading.Thread]:
    received: queue.Queue = queue.Queue()

    def consume() -> None:
        for item in iterator:
            received.put(item)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    return received, thread


# -- engine and images ------------------------------------------------------------------------


def test_ping(docker_engine):
    assert docker_engine.ping() is True


def test_an_unreachable_engine_fails_with_an_actionable_message():
    engine = DockerEngine(base_url="unix:///nonexistent/docker.sock")
    assert engine.ping() is False
    with pytest.raises(EngineError, match=r"not reachable at unix:///nonexistent/docker.sock: is dockerd running\?"):
        engine.list({})


def test_from_settings_uses_the_configured_url(settings):
    settings.PANDASTACK_DOCKER_URL = "unix:///nonexistent/docker.sock"
    assert DockerEngine.from_settings().ping() is False
    settings.PANDASTACK_DOCKER_URL = None
    assert DockerEngine.from_settings().ping() is True


def test_ensure_image_uses_a_local_image_without_pulling(docker_engine, web_image, monkeypatch):
    def no_pull(*args, **kwargs):
        raise AssertionError(f"pulled {args}")

    monkeypatch.setattr(docker_engine.client.api, "pull", no_pull)
    image_id = docker_engine.ensure_image(web_image)
    assert image_id.startswith("sha256:")
    assert image_id == docker_engine.client.images.get(web_image).id
    # Built locally, so there is no repository digest: the id stands in for it.
    assert docker_engine.image_digest(web_image) == image_id


def test_a_missing_image_fails_quickly_and_clearly(docker_engine):
    # A registry on the loopback is refused by default (tests/security/test_image_refs.py); this engine
    # is an operator's that allows private registries, so the pull is tried and fails.
    engine = DockerEngine(docker_engine.client, allow_private_registries=True)
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"image not found: 127\.0\.0\.1:1/nope:latest \(.+\)"):
        engine.ensure_image("127.0.0.1:1/nope:latest")
    assert time.monotonic() - started < 10
    assert engine.image_digest("127.0.0.1:1/nope:latest") is None


# -- running containers -----------------------------------------------------------------------


def test_every_container_gets_the_hardening_policy_even_when_its_spec_names_no_limits(
    docker_engine, engine_run, web_image
):
    network = team_network(docker_engine, engine_run)
    script = "mkdir -p /w; mknod /w/null c 1 3 && echo mknod-allowed; chown 1:1 /w && echo chown-allowed; sleep 30"
    info = docker_engine.run(make_spec(engine_run, "bare", web_image, network, command=["sh", "-c", script]))

    host = docker_engine.client.api.inspect_container(info.id)["HostConfig"]
    assert (host["PidsLimit"], host["Memory"], host["NanoCpus"]) == (
        DEFAULT_PIDS_LIMIT, DEFAULT_MEMORY_MB * 1024 * 1024, int(DEFAULT_CPUS * 1_000_000_000)
    )  # fmt: skip
    assert host["MemorySwap"] == host["Memory"]  # no swap on top of the memory limit
    assert (host["CapDrop"], sorted(host["CapAdd"])) == (["ALL"], sorted(APP_CAPABILITIES))
    assert host["SecurityOpt"] == ["no-new-privileges:true"] and host["Privileged"] is False
    # What the dropped capabilities mean inside: no device nodes (MKNOD); a normal image's chown still works.
    give_up = time.monotonic() + 10
    while "chown-allowed" not in (text := "\n".join(line.text for line in docker_engine.logs(info.id))):
        assert time.monotonic() < give_up, text
        time.sleep(0.05)
    assert "mknod-allowed" not in text and "Operation not permitted" in text, text


def test_a_zero_limit_is_refused_rather_than_read_as_unlimited(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    with pytest.raises(EngineError, match="must be positive"):
        docker_engine.run(make_spec(engine_run, "zero", web_image, network, pids_limit=0))
    assert docker_engine.inspect(engine_run.name("zero")) is None


def test_run_serves_on_the_team_network_with_port_labels_and_limits(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    docker_engine.ensure_network(network, engine_run.labels)  # idempotent
    spec = make_spec(
        engine_run,
        "web-r1",
        web_image,
        network,
        env={"GREETING": "hello", "PORT": "1"},
        memory_mb=64,
        cpus=0.5,
    )

    info = docker_engine.run(spec)

    assert info.status == "running"
    assert info.name == spec.name
    assert info.image == web_image
    assert info.exit_code is None
    assert info.started_at is not None
    assert list(info.networks) == [network]  # the team's network and no other
    assert info.ip == info.networks[network]
    assert info.labels["io.pandastack.replica"] == "web-r1"
    body, _ = http_get(info.ip)
    assert body == f"v1 {info.id[:12]}\n"

    attrs = docker_engine.client.api.inspect_container(info.id)
    env = attrs["Config"]["Env"]
    assert f"PORT={PORT}" in env
    assert "PORT=1" not in env  # the platform's PORT wins over the app's environment
    assert "GREETING=hello" in env
    assert attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] in ("no", "")
    net_attrs = docker_engine.client.networks.get(network).attrs
    assert net_attrs["Driver"] == "bridge"
    assert net_attrs["Internal"] is False
    assert net_attrs["Labels"] == engine_run.labels

    again = docker_engine.run(spec)
    assert again.id == info.id
    assert docker_engine.inspect(info.id) == docker_engine.inspect(spec.name)


def test_run_replaces_a_container_that_is_not_running(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    spec = make_spec(engine_run, "web-r1", web_image, network)
    first = docker_engine.run(spec)
    docker_engine.stop(spec.name)
    stopped = docker_engine.inspect(spec.name)
    assert stopped is not None and stopped.status == "exited" and stopped.exit_code == 0
    assert stopped.ip is None

    second = docker_engine.run(spec)

    assert second.id != first.id
    assert second.status == "running"
    assert docker_engine.inspect(first.id) is None


def test_a_command_that_cannot_start_leaves_nothing_behind(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    spec = make_spec(engine_run, "bad-cmd", web_image, network, command=["/no/such/binary"])
    with pytest.raises(EngineError, match=r"could not start: .*/no/such/binary"):
        docker_engine.run(spec)
    assert docker_engine.inspect(spec.name) is None


def test_a_network_two_workers_created_at_once_still_starts_containers(docker_engine, engine_run, web_image):
    """Two workers deploying a team's first apps at once both create its network (the engine's duplicate
    check is not atomic): one worker's container then met "network ... is ambiguous" when it started,
    before the other worker had removed its twin, and the deploy failed. The twin (never used: every
    caller settles on the oldest) goes, and the container starts."""
    network = team_network(docker_engine, engine_run)
    twin = docker_engine.client.networks.create(
        network, driver="bridge", labels=engine_run.labels, check_duplicate=False
    )
    assert len(docker_engine.client.networks.list(names=[network])) == 2

    info = docker_engine.run(make_spec(engine_run, "web-r1", web_image, network))

    assert info.status == "running" and list(info.networks) == [network]
    assert [n.id for n in docker_engine.client.networks.list(names=[network])] != [twin.id]
    assert len(docker_engine.client.networks.list(names=[network])) == 1


def test_a_missing_network_is_an_engine_error(docker_engine, engine_run, web_image):
    spec = make_spec(engine_run, "web-r1", web_image, engine_run.name("never-created"))
    with pytest.raises(EngineError, match="not found"):
        docker_engine.run(spec)
    assert docker_engine.inspect(spec.name) is None


def test_stop_and_remove_are_idempotent(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    spec = make_spec(engine_run, "web-r1", web_image, network)
    info = docker_engine.run(spec)

    docker_engine.stop(spec.name, timeout=5)
    docker_engine.stop(spec.name, timeout=5)
    assert docker_engine.inspect(info.id).status == "exited"
    docker_engine.remove(spec.name)
    docker_engine.remove(spec.name)
    assert docker_engine.inspect(spec.name) is None
    # Never existed at all: also fine.
    docker_engine.stop(engine_run.name("ghost"))
    docker_engine.remove(engine_run.name("ghost"))


def test_remove_force_removes_a_running_container(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    info = docker_engine.run(make_spec(engine_run, "web-r1", web_image, network))
    docker_engine.remove(info.id)
    assert docker_engine.inspect(info.id) is None


def test_list_filters_by_labels_in_every_state(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    alpha = docker_engine.run(make_spec(engine_run, "alpha", web_image, network))
    beta = docker_engine.run(make_spec(engine_run, "beta", web_image, network))
    docker_engine.stop(beta.id)

    def ids(labels: dict) -> set[str]:
        return {info.id for info in docker_engine.list(labels)}

    assert ids(engine_run.labels) == {alpha.id, beta.id}
    assert ids({**engine_run.labels, "io.pandastack.replica": None}) == {alpha.id, beta.id}
    assert ids({**engine_run.labels, "io.pandastack.replica": "alpha"}) == {alpha.id}
    [stopped] = docker_engine.list({**engine_run.labels, "io.pandastack.replica": "beta"})
    assert isinstance(stopped, ContainerInfo)
    assert stopped.status == "exited"
    # One engine call lists them all, with what inspect says of name, state, exit code and addresses.
    inspected = docker_engine.inspect(beta.id)
    assert (stopped.name, stopped.exit_code) == (inspected.name, inspected.exit_code) and stopped.exit_code is not None
    [running] = docker_engine.list({**engine_run.labels, "io.pandastack.replica": "alpha"})
    assert (running.name, running.status, running.ip) == (alpha.name, "running", alpha.ip)
    assert running.networks == {network: alpha.ip}
    assert running.labels == docker_engine.inspect(alpha.id).labels
    assert ids({**engine_run.labels, "io.pandastack.replica": "gamma"}) == set()


# -- logs -------------------------------------------------------------------------------------


def test_logs_of_a_broken_container(docker_engine, engine_run, broken_image):
    network = team_network(docker_engine, engine_run)
    info = docker_engine.run(make_spec(engine_run, "broken", broken_image, network))
    docker_engine.client.api.wait(info.id, timeout=10)

    exited = docker_engine.inspect(info.id)
    assert exited.status == "exited"
    assert exited.exit_code == 1

    lines = docker_engine.logs(info.id)
    assert [(line.stream, line.text) for line in lines] == [
        ("stderr", "booting broken build"),
        ("stderr", "fatal: missing DATABASE_URL"),
    ]
    assert all(line.at is not None for line in lines)
    assert [line.text for line in docker_engine.logs(info.id, tail=1)] == ["fatal: missing DATABASE_URL"]


def test_logs_contain_the_start_line_and_request_lines(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    info = docker_engine.run(make_spec(engine_run, "web-r1", web_image, network))
    _, source_port = http_get(info.ip)

    lines = docker_engine.logs(info.name)

    assert LogLine(at=lines[0].at, text=f"starting v1 on port {PORT}", stream="stdout") == lines[0]
    assert any(line.stream == "stderr" and f":{source_port}: response:200" in line.text for line in lines)
    assert lines == sorted(lines, key=lambda line: line.at)


def test_logs_of_a_missing_container_raise(docker_engine, engine_run):
    with pytest.raises(EngineError, match="container not found"):
        docker_engine.logs(engine_run.name("ghost"))


def test_follow_logs_yields_new_lines_and_ends_when_stop_is_set(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    info = docker_engine.run(make_spec(engine_run, "web-r1", web_image, network))
    stop = threading.Event()
    received, thread = consume_in_thread(docker_engine.follow_logs([info.name], tail=10, stop=stop))

    name, first = wait_for_line(received, lambda item: item[1].text.startswith("starting v1"))
    assert name == info.name
    assert first.stream == "stdout"
    # A request made now is logged now: a line that was not in the tail.
    _, source_port = http_get(info.ip)
    name, request_line = wait_for_line(received, lambda item: f":{source_port}: response:200" in item[1].text)
    assert (name, request_line.stream) == (info.name, "stderr")

    stop.set()
    thread.join(timeout=3)
    assert not thread.is_alive()
    assert docker_engine.inspect(info.id).status == "running"  # following never touches the container


def test_follow_logs_merges_containers_and_ends_when_they_all_stop(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    one = docker_engine.run(make_spec(engine_run, "web-r1", web_image, network))
    two = docker_engine.run(make_spec(engine_run, "web-r2", web_image, network))
    http_get(one.ip)
    http_get(two.ip)
    received, thread = consume_in_thread(
        docker_engine.follow_logs([one.name, two.id, engine_run.name("ghost")], tail=0)
    )

    docker_engine.stop(one.name)
    docker_engine.stop(two.name)
    thread.join(timeout=5)

    assert not thread.is_alive()
    items = []
    while not received.empty():
        items.append(received.get())
    assert "stopping v1" in {line.text for name, line in items if name == one.name}, items
    assert "stopping v1" in {line.text for name, line in items if name == two.name}, items


# -- networks ---------------------------------------------------------------------------------


def test_connect_is_idempotent_and_keeps_the_primary_ip(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    extra = team_network(docker_engine, engine_run, "extra")
    info = docker_engine.run(make_spec(engine_run, "web-r1", web_image, network))

    docker_engine.connect(extra, info.name)
    docker_engine.connect(extra, info.name)

    connected = docker_engine.inspect(info.id)
    assert set(connected.networks) == {network, extra}
    assert connected.ip == info.ip


def test_remove_network_is_idempotent_and_refuses_while_in_use(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    info = docker_engine.run(make_spec(engine_run, "web-r1", web_image, network))
    with pytest.raises(EngineError, match="still has containers attached"):
        docker_engine.remove_network(network)

    docker_engine.remove(info.id)
    docker_engine.remove_network(network)
    docker_engine.remove_network(network)
    assert docker_engine.client.networks.list(names=[network]) == []


def test_containers_of_another_team_network_are_unreachable(docker_engine, engine_run, web_image):
    team_a = team_network(docker_engine, engine_run, "team-a")
    team_b = team_network(docker_engine, engine_run, "team-b")
    a1 = docker_engine.run(make_spec(engine_run, "a1", web_image, team_a))
    a2 = docker_engine.run(make_spec(engine_run, "a2", web_image, team_a))
    b1 = docker_engine.run(make_spec(engine_run, "b1", web_image, team_b))
    for info in (a2, b1):
        http_get(info.ip)  # both listen: the host reaches either network

    def probe(target: ContainerInfo) -> tuple[int, str]:
        # Debian's busybox nc has no -z: send a real request and read the answer.
        command = f'printf "GET /healthz HTTP/1.0\\r\\n\\r\\n" | nc -w 2 {target.ip} {PORT}'
        result = docker_engine.client.containers.get(a1.id).exec_run(["sh", "-c", command])
        return result.exit_code, result.output.decode(errors="replace")

    same_team_code, same_team_output = probe(a2)
    assert same_team_code == 0, same_team_output
    assert "200 OK" in same_team_output

    other_team_code, other_team_output = probe(b1)
    assert other_team_code != 0, other_team_output
    # Docker drops packets between user-defined bridges: nc gives up, it is not refused.
    assert "timed out" in other_team_output or "can't connect" in other_team_output, other_team_output
