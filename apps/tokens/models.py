import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.models import TeamOwnedModel

# A public marker that lets secret scanners recognise our tokens; not a secret itself.
TOKEN_PREFIX = "pst_"  # noqa: S105  # nosec B105
# How many characters of the token are kept in clear: enough for people to tell tokens apart.
DISPLAY_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8


def hash_token(raw: str) -> str:
    # Tokens carry 240 bits of randomness, so a fast hash is enough; nothing is brute-forceable.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(TeamOwnedModel):
    """A bearer token for CI and the CLI. Only its hash is stored; it acts at most as its user,
    and only inside its team, within its scopes and (optionally) its projects."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=DISPLAY_PREFIX_LENGTH, db_index=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    projects = models.ManyToManyField("teams.Project", blank=True, related_name="+")
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes)

    @property
    def project_ids(self) -> frozenset[int]:
        """Ids of the projects this token is limited to; empty means the whole team.
        Cached on the instance by the authentication class (one query per request)."""
        cached = getattr(self, "_project_ids", None)
        if cached is None:
            cached = frozenset(self.projects.values_list("id", flat=True))
            self._project_ids = cached
        return cached
