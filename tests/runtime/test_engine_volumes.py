"""Named volumes and health checks of the Docker Engine driver, against the real engine with the
tiny local busybox images (no registry)."""

import time

import pytest

from apps.runtime.engine import ContainerInfo, DockerEngine, EngineError, HealthCheck
from tests.support.engine_fixtures import EngineTestRun

from .test_engine import make_spec, team_network

FAST = {"interval_seconds": 0.2, "timeout_seconds": 2.0}


def wait_for_health(engine: DockerEngine, name: str, status: str, timeout: float = 15.0) -> ContainerInfo:
    """Poll until the engine's health verdict is ``status`` (there is no event the driver exposes)."""
    give_up = time.monotonic() + timeout
    while True:
        info = engine.inspect(name)
        assert info is not None, f"{name} is gone"
        if info.health is not None and info.health.status == status:
            return info
        if time.monotonic() > give_up:
            raise AssertionError(f"{name} not {status} within {timeout}s: {info.status} {info.health}")
        time.sleep(0.05)


def shell(engine: DockerEngine, name: str, line: str) -> str:
    result = engine.client.containers.get(name).exec_run(["sh", "-c", line])
    assert result.exit_code == 0, result.output
    return result.output.decode()


# -- volumes ------------------------------------------------------------------------------------


def test_ensure_volume_is_idempotent_and_keeps_the_labels_it_was_created_with(docker_engine, engine_run):
    name = engine_run.name("data")
    assert docker_engine.inspect_volume(name) is None

    created = docker_engine.ensure_volume(name, {**engine_run.labels, "io.pandastack.note": "first"})
    again = docker_engine.ensure_volume(name, {**engine_run.labels, "io.pandastack.note": "second"})

    assert created.name == again.name == name
    assert created.labels["io.pandastack.note"] == again.labels["io.pandastack.note"] == "first"
    assert docker_engine.inspect_volume(name) == created
    assert docker_engine.list_volumes({**engine_run.labels, "io.pandastack.note": None}) == [created]
    assert docker_engine.list_volumes({**engine_run.labels, "io.pandastack.note": "second"}) == []


def test_remove_volume_is_idempotent(docker_engine, engine_run):
    name = engine_run.name("data")
    docker_engine.ensure_volume(name, engine_run.labels)

    docker_engine.remove_volume(name)
    docker_engine.remove_volume(name)

    assert docker_engine.inspect_volume(name) is None


def test_data_on_a_volume_outlives_its_container(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    volume = engine_run.name("data")
    docker_engine.ensure_volume(volume, engine_run.labels)
    spec = make_spec(engine_run, "db", web_image, network, volumes={volume: "/data"})

    first = docker_engine.run(spec)
    shell(docker_engine, first.id, "echo kept > /data/file")
    docker_engine.remove(first.id)
    assert docker_engine.inspect_volume(volume) is not None  # removing the container keeps named volumes

    second = docker_engine.run(spec)
    assert second.id != first.id
    assert shell(docker_engine, second.id, "cat /data/file") == "kept\n"
    mounts = docker_engine.client.api.inspect_container(second.id)["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [("volume", volume, "/data")]


def test_a_volume_in_use_cannot_be_removed(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    volume = engine_run.name("data")
    docker_engine.ensure_volume(volume, engine_run.labels)
    info = docker_engine.run(make_spec(engine_run, "db", web_image, network, volumes={volume: "/data"}))

    with pytest.raises(EngineError, match=rf"volume {volume} is still in use: remove its container first"):
        docker_engine.remove_volume(volume)

    docker_engine.remove(info.id)
    docker_engine.remove_volume(volume)
    assert docker_engine.inspect_volume(volume) is None


# -- health checks ------------------------------------------------------------------------------


def test_a_container_without_a_health_check_has_no_health(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    info = docker_engine.run(make_spec(engine_run, "web", web_image, network))
    assert info.health is None


def test_health_goes_from_starting_to_healthy_when_the_probe_passes(
    docker_engine: DockerEngine, engine_run: EngineTestRun, web_image: str
):
    network = team_network(docker_engine, engine_run)
    check = HealthCheck(
        test=["CMD-SHELL", "test -e /tmp/ready || { echo not ready yet; exit 1; }"], retries=1000, **FAST
    )
    info = docker_engine.run(make_spec(engine_run, "db", web_image, network, healthcheck=check))

    assert info.health is not None and info.health.status == "starting"
    attrs = docker_engine.client.api.inspect_container(info.id)["Config"]["Healthcheck"]
    assert attrs["Test"] == list(check.test)
    assert attrs["Interval"] == 200_000_000
    assert attrs["Retries"] == 1000
    failing = docker_engine.inspect(info.id)
    give_up = time.monotonic() + 10
    while failing.health.failing_streak == 0:  # the first probe has not run yet
        assert time.monotonic() < give_up
        time.sleep(0.05)
        failing = docker_engine.inspect(info.id)
    assert failing.health.status == "starting"
    assert failing.health.last_output == "not ready yet"

    shell(docker_engine, info.id, "touch /tmp/ready")

    healthy = wait_for_health(docker_engine, info.id, "healthy")
    assert healthy.health.failing_streak == 0


def test_a_failing_probe_makes_the_container_unhealthy_with_its_output(docker_engine, engine_run, web_image):
    network = team_network(docker_engine, engine_run)
    check = HealthCheck(test=["CMD-SHELL", "echo 'no response on port 5000'; exit 1"], retries=2, **FAST)
    info = docker_engine.run(make_spec(engine_run, "db", web_image, network, healthcheck=check))

    unhealthy = wait_for_health(docker_engine, info.id, "unhealthy")

    assert unhealthy.status == "running"  # the engine only reports; it does not stop the container
    assert unhealthy.health.failing_streak >= 2
    assert unhealthy.health.last_output == "no response on port 5000"
