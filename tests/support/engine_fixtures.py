"""Fixtures for tests against the real Docker Engine.

Nothing here skips: a machine without a reachable engine fails these tests with the reason.
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from apps.runtime.engine import DockerEngine, EngineError
from tests.support import TEST_RUN_LABEL, remove_test_run
from tests.support.images import build_broken_image, build_slow_image, build_web_image


@pytest.fixture(scope="session")
def docker_engine() -> DockerEngine:
    engine = DockerEngine()
    try:
        info = engine.client.info()
    except EngineError as exc:
        pytest.fail(f"these tests need a running Docker Engine: {exc}", pytrace=False)
    except Exception as exc:
        pytest.fail(f"these tests need a running Docker Engine (docker info failed: {exc})", pytrace=False)
    assert info.get("ServerVersion"), info
    return engine


@pytest.fixture(scope="session")
def web_image(docker_engine: DockerEngine) -> str:
    return build_web_image()


@pytest.fixture(scope="session")
def web_image_v2(docker_engine: DockerEngine) -> str:
    return build_web_image("pandastack-test/web:v2", version="v2")


@pytest.fixture(scope="session")
def broken_image(docker_engine: DockerEngine) -> str:
    return build_broken_image()


@pytest.fixture(scope="session")
def slow_image(docker_engine: DockerEngine) -> str:
    return build_slow_image()


@dataclass
class EngineTestRun:
    """One test's footprint on the engine: put ``labels`` on everything created, name things with
    ``name()`` so that parallel or leftover runs never collide."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def labels(self) -> dict[str, str]:
        return {TEST_RUN_LABEL: self.id}

    def name(self, suffix: str) -> str:
        return f"pst-{self.id}-{suffix}"


@pytest.fixture
def engine_run(docker_engine: DockerEngine) -> Iterator[EngineTestRun]:
    """Removes every container and network labelled with this test's run id at teardown."""
    run = EngineTestRun()
    yield run
    leftovers = remove_test_run(docker_engine.client, run.id)
    assert not leftovers, f"could not clean up after the test: {leftovers}"
