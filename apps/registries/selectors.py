"""Reads of registry credentials: for callers (restricted, never the password) and for the worker."""

from collections.abc import Iterable, Sequence
from typing import Any

from apps.registries.models import DOCKER_HUB, RegistryCredential, registry_normalize
from apps.runtime.engine import ImagePull, RegistryAuth
from apps.runtime.images import image_registry_host
from apps.secrets import crypto


def image_pull_for(*, team: Any, image: str, credentials: Sequence[RegistryCredential] | None = None) -> ImagePull:
    """How the worker must get ``image`` for ``team`` before starting a container from it.

    A registry host on which any team has a credential is treated as private: every use pulls again,
    so that the registry, not a copy another team's pull left in the engine, decides whether this team
    may have the image. The team pulls with its own credential, or anonymously (never with the
    platform host's own Docker login). Other images (public registries nobody logs in to) are pulled
    only when absent. Decrypts the password: call this only in the worker, and never log the result.
    `credentials`: those already read with credentials_for (pulls for many containers at once).
    """
    host = _host_of(image)
    if credentials is None:
        credentials = credentials_for([image])
    on_host = [c for c in credentials if c.registry == host]
    own = next((c for c in on_host if c.team_id == team.pk), None)
    if own is not None:
        return ImagePull(
            auth=RegistryAuth(username=own.username, password=crypto.decrypt(own.password_encrypted)),
            always_pull=True,
        )
    if on_host:
        return ImagePull(auth=RegistryAuth.anonymous(), always_pull=True)
    return ImagePull()


def credentials_for(images: Iterable[str]) -> list[RegistryCredential]:
    """Every team's credentials on the registry hosts of `images`, in one query."""
    return list(RegistryCredential.objects.filter(registry__in={_host_of(image) for image in images}))


def _host_of(image: str) -> str:
    return registry_normalize(image_registry_host(image) or DOCKER_HUB)
