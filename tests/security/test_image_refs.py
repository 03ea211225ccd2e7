"""Issue 11, item 10 (the part done): image references cannot make the platform reach its own network.

The Docker Engine pulls from wherever a reference points, from the host: `127.0.0.1:5000/x`,
`10.0.0.5/x`, `169.254.169.254/x` or a name resolving to such an address would have the engine connect to
services on the platform's loopback, private network or the cloud's metadata address for a tenant. The
attack here is real: a TCP listener on the host's loopback stands in for such a service, and the test
asserts that the real Docker Engine never connects to it — on a deploy through the API, on a cron run whose
job was written straight to the database (bypassing the API's check), and when a copy of the image is
already cached locally. The operator can allow private registries (PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES).
"""

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from apps.cron.models import CronJob, CronRun, RunStatus
from apps.cron.services import cron_job_run_now
from apps.deployments.models import Deployment
from apps.runtime.engine import ContainerSpec, DockerEngine, ImageRefused
from apps.runtime.images import image_refusal, image_registry_host
from tests.conftest import assert_error
from tests.cron.conftest import cron_world, ctx_of, finished  # noqa: F401

PRIVATE_REFERENCES = [
    "127.0.0.1:{port}/evil:1",
    "localhost:{port}/evil:1",
    "[::1]:{port}/evil:1",
    "10.0.0.5/team/app:1",
    "192.168.1.20:5000/app",
    "169.254.169.254/latest:1",
    "100.64.0.1/app",  # shared address space (carrier-grade NAT)
    "[::ffff:127.0.0.1]:5000/app",  # IPv4 loopback inside an IPv6 form
    "vm.localhost:5000/app",
]


class Listener:
    """A TCP server on the host's loopback that counts the connections it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def test_registry_hosts_are_read_as_the_engine_reads_them():
    assert image_registry_host("nginx") is None
    assert image_registry_host("org/app:1") is None
    assert image_registry_host("ghcr.io/org/app:1") == "ghcr.io"
    assert image_registry_host("localhost/app") == "localhost"
    assert image_registry_host("10.0.0.5:5000/app@sha256:" + "0" * 64) == "10.0.0.5:5000"
    assert image_registry_host("[::1]:5000/app") == "[::1]:5000"
    for reference in PRIVATE_REFERENCES:
        assert image_refusal(reference.format(port=5000)), reference
    for public in ("nginx:1", "org/app", "ghcr.io/org/app:1", "8.8.8.8/app", "quay.io/x/y"):
        assert image_refusal(public) is None, public


def test_a_name_that_resolves_to_loopback_is_refused():
    # The machine's own name resolves to a loopback address here (/etc/hosts): a name is checked by
    # what it resolves to, not by how it looks.
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    assert any(a.startswith("127.") or a == "::1" for a in addresses), addresses
    assert image_refusal(f"{name}:5000/app")


# IPv6 literals ("[::1]:5000/x") do not even pass the API's reference syntax.
@pytest.mark.parametrize("reference", [r for r in PRIVATE_REFERENCES if not r.startswith("[")])
def test_deploying_an_image_from_a_private_registry_is_refused_and_nothing_is_queued(team_a, client_for, reference):
    from apps.deployments.models import App

    App.objects.create(team=team_a.team, project=team_a.project, name="web")
    owner = client_for(team_a, "owner")
    response = owner.post("/api/v1/teams/alpha/apps/web/deployments/", {"image": reference.format(port=5000)})
    error = assert_error(response, 400, "invalid")
    assert "PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES" in error["message"]
    assert list(error["fields"]) == ["image"]
    assert Deployment.objects.count() == 0


def test_a_cron_job_with_an_image_from_a_private_registry_is_refused(team_a, client_for):
    owner = client_for(team_a, "owner")
    body = {"name": "evil", "project": "web", "command": ["true"], "schedule": "@daily"}
    for reference in ("127.0.0.1:5000/evil:1", "10.1.2.3/evil"):
        error = assert_error(owner.post("/api/v1/teams/alpha/cron-jobs/", {**body, "image": reference}), 400)
        assert list(error["fields"]) == ["image"]
    assert CronJob.objects.count() == 0
    assert owner.post("/api/v1/teams/alpha/cron-jobs/", {**body, "image": "busybox:1"}).status_code == 201


def test_the_operator_may_allow_private_registries(team_a, client_for, settings):
    from apps.deployments.models import App

    settings.PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES = True
    App.objects.create(team=team_a.team, project=team_a.project, name="web")
    owner = client_for(team_a, "owner")
    response = owner.post("/api/v1/teams/alpha/apps/web/deployments/", {"image": "registry.internal:5000/app:1"})
    assert response.status_code == 202, response.json()
    assert DockerEngine(allow_private_registries=True).allow_private_registries is True


# --- against the real Docker Engine ----------------------------------------------------------------
def spec(engine_run: Any, image: str) -> ContainerSpec:
    return ContainerSpec(
        name=engine_run.name(f"img-{uuid.uuid4().hex[:6]}"),
        image=image,
        port=8080,
        env={},
        labels=engine_run.labels,
        network="bridge",
    )


def test_the_engine_never_contacts_a_registry_on_the_hosts_loopback(docker_engine, engine_run, listener):
    image = f"127.0.0.1:{listener.port}/evil:1"
    with pytest.raises(ImageRefused, match="PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES"):
        docker_engine.ensure_image(image)
    with pytest.raises(ImageRefused):
        docker_engine.run(spec(engine_run, image))
    assert listener.connections == 0  # the engine did not even try


def test_a_locally_cached_copy_of_a_private_registry_image_is_not_run(docker_engine, engine_run, web_image):
    # Someone (another team, the operator) pulled it before: still refused, the cache gains nothing.
    cached = f"127.0.0.1:5999/cached-{uuid.uuid4().hex[:6]}:1"
    docker_engine.client.images.get(web_image).tag(cached)
    try:
        with pytest.raises(ImageRefused):
            docker_engine.run(spec(engine_run, cached))
        with pytest.raises(ImageRefused):
            docker_engine.ensure_image(cached)
    finally:
        docker_engine.client.images.remove(cached)
    assert docker_engine.list(engine_run.labels) == []


def test_a_cron_run_of_a_private_registry_image_written_past_the_api_fails_without_contacting_it(
    cron_world,  # noqa: F811
    listener,
):
    job = cron_world.job("evil", image=f"127.0.0.1:{listener.port}/evil:1", command=["true"])
    run = finished(cron_job_run_now(ctx=ctx_of(cron_world.world), job=job))
    assert run.status == RunStatus.FAILED
    assert "loopback, private or link-local" in run.reason
    assert listener.connections == 0
    assert CronRun.objects.filter(job=job).count() == 1
