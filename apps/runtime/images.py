"""Image references a tenant may give: which registry a reference names, and whether the platform may
contact it.

The Docker Engine pulls from wherever a reference points, from the host's own network: without a check,
a tenant deploying ``10.0.0.5:5000/x`` or ``localhost:5000/x`` makes the platform reach services on its
private network, loopback or the cloud's link-local metadata address. Such references are refused unless
the operator allows private registries (``PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES``): at the API
(``image_reference_check``, a 400 naming the field) and again by the engine before any container starts
or any pull (``DockerEngine``), so a name re-pointed later or a locally cached copy gains nothing.
"""

from __future__ import annotations

from apps.core.addresses import host_resolves_privately
from apps.core.errors import ValidationFailed


def image_registry_host(image: str) -> str | None:
    """The registry host (with its port) an image reference names, or None for Docker Hub.

    As the engine reads a reference: the part before the first "/" is a registry when it contains a
    "." or a ":" or is "localhost" (``localhost:5000/app``, ``10.0.0.5/app``, ``[::1]:5000/app``);
    otherwise (``app``, ``org/app``) the image comes from Docker Hub."""
    first, slash, _ = image.partition("/")
    if not slash:
        return None
    if "." in first or ":" in first or first == "localhost" or first.startswith("["):
        return first
    return None


def _strip_port(host: str) -> str:
    if host.startswith("["):  # [::1]:5000
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def image_refusal(image: str) -> str | None:
    """Why the platform refuses to use ``image`` when private registries are not allowed (its registry
    host is, or resolves to, a loopback, private or link-local address: the engine would reach the
    platform's own network for a tenant), or None when it may."""
    host = image_registry_host(image)
    if host is None:
        return None
    if host_resolves_privately(_strip_port(host)):
        return (
            f"image {image} names registry {host}, a loopback, private or link-local address: refused "
            "(the operator may allow private registries with PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES)"
        )
    return None


def image_reference_check(image: str, *, field: str = "image") -> None:
    """Raise ValidationFailed (400, naming ``field``) when ``image`` names a private registry and the
    operator does not allow those."""
    from django.conf import settings

    if getattr(settings, "PANDASTACK_IMAGE_ALLOW_PRIVATE_REGISTRIES", False):
        return
    if reason := image_refusal(image):
        raise ValidationFailed(reason, fields={field: ["A registry on a public address (or Docker Hub)."]})
