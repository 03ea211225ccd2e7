"""A real private registry for tests: Debian's ``docker-registry`` (the CNCF distribution registry 2.8)
on a free loopback port, with htpasswd (bcrypt) authentication and its storage in a temporary directory.

The Docker Engine treats registries on 127.0.0.0/8 as insecure-allowed, so plain HTTP works; and because
the registry is on loopback, tests using it run with PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES on (in this
process and in the worker ``registry_worker`` starts). A tiny image is pushed to it with a login given to
that one push only; the local copy of the pushed tag is then removed, and the host's Docker configuration
is checked to hold no login for the registry, so only credentials the platform passes can pull it.

Registered once in tests/conftest.py's ``pytest_plugins``; tests use the fixtures by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from tests.support.images import build_web_image
from tests.support.platform_fixtures import WorkerProcess, free_port

REGISTRY_BINARY = "/usr/bin/docker-registry"
REPOSITORY = "private/web"
BUILD_TAG = "pandastack-test/registry-web:v1"


@dataclass(frozen=True)
class PrivateRegistry:
    host: str  # "127.0.0.1:<port>", as image references name it
    image: str  # "<host>/private/web:1" (answers "private <hostname>"), pushed; absent from the engine after
    username: str
    password: str = field(repr=False)
    log_path: Path


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for an htpasswd file (the only kind the distribution registry accepts), made with
    the `bcrypt` package (a dev dependency: Python 3.13 has no `crypt` module to fall back on)."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()


def _wait_listening(port: int, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            # 401 without credentials: the registry is up and asks for a login.
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                return
        time.sleep(0.1)
    pytest.fail(f"docker-registry did not start:\n{log_path.read_text(errors='replace')[-2000:]}", pytrace=False)


def _host_docker_logins() -> set[str]:
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    if not config.exists():
        return set()
    return set((json.loads(config.read_text() or "{}").get("auths") or {}).keys())


@pytest.fixture(scope="session")
def private_registry(docker_engine, tmp_path_factory) -> Iterator[PrivateRegistry]:
    if not os.access(REGISTRY_BINARY, os.X_OK):
        pytest.fail(f"these tests need {REGISTRY_BINARY}: apt-get install docker-registry", pytrace=False)
    root = tmp_path_factory.mktemp("registry")
    username, password = "alpha-ci", "reg-" + secrets.token_urlsafe(16)
    (root / "htpasswd").write_text(f"{username}:{bcrypt_hash(password)}\n")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        "auth": {"htpasswd": {"realm": "pandastack-test", "path": str(root / "htpasswd")}},
    }
    (root / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log_path = root / "registry.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_listening(port, process, log_path)
        host = f"127.0.0.1:{port}"
        image = f"{host}/{REPOSITORY}:1"
        client = docker.from_env()
        try:
            auth = {"username": username, "password": password}
            client.login(username=username, password=password, registry=f"http://{host}", reauth=True)
            # An image of its own (answering "private <hostname>"): pushing the shared web image would give
            # it a repository digest other tests do not expect.
            built = build_web_image(BUILD_TAG, version="private")
            client.images.get(built).tag(f"{host}/{REPOSITORY}", tag="1")
            for event in client.api.push(f"{host}/{REPOSITORY}", tag="1", stream=True, decode=True, auth_config=auth):
                if isinstance(event, dict) and event.get("error"):
                    pytest.fail(f"pushing the test image failed: {event['error']}", pytrace=False)
            # Gone from the engine: only the registry has it now, so the first pull is a real one.
            client.images.remove(image)
            client.images.remove(built)
        finally:
            client.close()  # the login lived in that client's memory only
        assert host not in _host_docker_logins(), "the host's Docker config must hold no login for the test registry"
        yield PrivateRegistry(host=host, image=image, username=username, password=password, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        with contextlib.suppress(docker.errors.DockerException):
            docker.from_env().images.remove(f"127.0.0.1:{port}/{REPOSITORY}:1")


@pytest.fixture
def registry_worker(platform, worker, platform_settings, settings, tmp_path) -> Iterator[WorkerProcess]:
    """The platform with private registries allowed (the test registry is on loopback): in this process
    (the API's check) and in a worker of its own, which replaces the session's worker for the test (two
    workers on one queue would race for the deployments). The session worker is started again after."""
    # Only the API's check reads this setting in this process; the worker below has its own.
    settings.PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES = True
    worker.stop()
    env = {**platform_settings["env"], "PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES": "true"}
    own = WorkerProcess(env, tmp_path / "registry-worker.log")
    own.start()
    try:
        yield own
    finally:
        own.stop()
        worker.start()
