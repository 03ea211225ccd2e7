from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

from apps.core.models import TeamOwnedModel
from apps.secrets.crypto import EncryptedTextField

NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*\Z"  # \Z, not $: "$" also matches before a trailing newline
name_validator = RegexValidator(
    NAME_RE, "Use letters, digits and underscores, not starting with a digit.", code="invalid_name"
)
# Set by the platform itself: a variable may not shadow them.
RESERVED_NAMES = frozenset({"PORT"})
RESERVED_PREFIX = "PANDASTACK_"


class Level(models.TextChoices):
    TEAM = "team"
    PROJECT = "project"
    APP = "app"


class Variable(TeamOwnedModel):
    """An environment variable at one level (team, project or app; the narrower wins at deploy).
    Its value lives in versions, always encrypted; `current` is the latest (None once unset)."""

    level = models.CharField(max_length=10, choices=Level.choices)
    project = models.ForeignKey(
        "teams.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="variables"
    )
    app = models.ForeignKey(
        "deployments.App", null=True, blank=True, on_delete=models.CASCADE, related_name="variables"
    )
    name = models.CharField(max_length=128, validators=[name_validator])
    secret = models.BooleanField(default=False)
    current = models.ForeignKey(
        "secrets.VariableVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    project_lookup = "project"  # app-level rows carry their app's project too
    grant_paths = ("app", "project")

    class Meta:
        ordering = ("name", "id")
        constraints = [
            models.UniqueConstraint(
                fields=["team", "name"], condition=Q(level="team"), name="variable_unique_team_level"
            ),
            models.UniqueConstraint(
                fields=["project", "name"], condition=Q(level="project"), name="variable_unique_project_level"
            ),
            models.UniqueConstraint(fields=["app", "name"], condition=Q(level="app"), name="variable_unique_app_level"),
        ]

    def __str__(self) -> str:
        return f"{self.level}:{self.name}"


class VariableVersion(models.Model):
    """One value of a variable, encrypted with the current key. A version with `deleted` set
    records an unset. Versions are never changed (only re-encrypted by key rotation)."""

    variable = models.ForeignKey(Variable, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    secret = models.BooleanField(default=False)
    deleted = models.BooleanField(default=False)
    value_encrypted = EncryptedTextField(blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_label = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("variable", "number")
        constraints = [models.UniqueConstraint(fields=["variable", "number"], name="variable_version_unique")]

    def __str__(self) -> str:
        # Never the value.
        return f"{self.variable_id} v{self.number}"
