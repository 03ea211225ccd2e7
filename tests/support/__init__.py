"""Helpers shared by tests that drive the real Docker Engine.

Everything a test creates on the engine carries ``TEST_RUN_LABEL=<run id>`` (a fresh uuid per test),
so teardown can remove exactly that, even after a failure, and never touches anything else.
"""

from __future__ import annotations

import contextlib

import docker
import docker.errors

TEST_RUN_LABEL = "io.pandastack.test-run"


def remove_test_run(client: docker.DockerClient, run_id: str) -> list[str]:
    """Remove every container (running or not), then every network and every volume labelled with
    ``run_id``.

    Returns what could not be removed (empty when all went), so the caller can fail loudly.
    """
    selector = {"label": [f"{TEST_RUN_LABEL}={run_id}"]}
    leftovers: list[str] = []
    for container in client.containers.list(all=True, filters=selector, sparse=True):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            leftovers.append(f"container {container.id[:12]}: {exc}")
    for network in client.networks.list(filters=selector):
        # A test may have attached an unlabelled container (e.g. one it created by hand).
        network.reload()
        for attached in network.attrs.get("Containers") or {}:
            with contextlib.suppress(docker.errors.APIError):
                network.disconnect(attached, force=True)
        try:
            network.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            leftovers.append(f"network {network.name}: {exc}")
    for volume in client.volumes.list(filters=selector):
        try:
            volume.remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            leftovers.append(f"volume {volume.name}: {exc}")
    return leftovers
