"""A team's login to a container registry, used by the worker to pull that team's private images."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from apps.core.models import TeamOwnedModel
from apps.secrets.crypto import EncryptedTextField

# Docker Hub answers to several names; references without a registry ("app", "org/app") mean it too.
DOCKER_HUB = "docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# host[:port] as an image reference names it: a dotted name or an IPv4 address, "localhost", or [IPv6].
REGISTRY_RE = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::[0-9]{{1,5}})?\Z")


def registry_normalize(host: str) -> str:
    """The one spelling a credential is stored and matched under (lower case, Docker Hub as docker.io)."""
    host = host.strip().lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def registry_validator(value: str) -> None:
    host = registry_normalize(value)
    if not REGISTRY_RE.match(host):
        raise ValidationError("A registry host, optionally with a port: ghcr.io, registry.example.com:5000.")
    port = host.rpartition("]")[2].partition(":")[2] if host.startswith("[") else host.partition(":")[2]
    if port and not 0 < int(port) < 65536:
        raise ValidationError("A port between 1 and 65535.")
    first = host.split(":")[0] if not host.startswith("[") else host
    # The engine reads "name/app" as Docker Hub's "name" organisation: a credential for a host that no
    # reference can name would never be used.
    if host != DOCKER_HUB and "." not in first and ":" not in host and first != "localhost":
        raise ValidationError("A registry host has a dot or a port (or is localhost); Docker Hub is docker.io.")


class RegistryCredential(TeamOwnedModel):
    """The team's username and password (or token) for one registry host. The password is stored only
    encrypted, decrypted only by the worker when it pulls, and never returned by the API."""

    registry = models.CharField(max_length=255, validators=[registry_validator])
    username = models.CharField(max_length=255)
    password_encrypted = EncryptedTextField(editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("registry", "id")
        constraints = [
            models.UniqueConstraint(fields=["team", "registry"], name="registry_credential_unique_in_team"),
        ]

    def __str__(self) -> str:
        # Never the password.
        return f"{self.registry} ({self.username})"
