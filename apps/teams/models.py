from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core.capabilities import GRANTABLE, MATRIX, Role
from apps.core.models import TeamOwnedModel, TimeStampedModel

# A DNS label: apps are served at <app>.<team>.<domain>, so team and app slugs must be one.
slug_validator = RegexValidator(
    r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$",
    "Use 1-40 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
    code="invalid_slug",
)
SLUG_MAX_LENGTH = 40


class Plan(models.Model):
    """Limits for a team. Operators change a team's plan in the admin."""

    slug = models.SlugField(unique=True, max_length=40)
    name = models.CharField(max_length=100)
    is_default = models.BooleanField(default=False, help_text="New teams start on the default plan.")
    max_projects = models.PositiveIntegerField(default=3)
    max_apps = models.PositiveIntegerField(default=3)
    max_replicas_per_app = models.PositiveIntegerField(default=2)
    max_memory_mb_per_app = models.PositiveIntegerField(
        default=512, help_text="Per container: each replica of an app, each cron run."
    )
    max_cpus_per_app = models.DecimalField(
        max_digits=4,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("0.05"))],
        help_text="CPUs per container: each replica of an app, each cron run.",
    )
    max_pids_per_container = models.PositiveIntegerField(
        default=256,
        validators=[MinValueValidator(16)],
        help_text="Processes and threads per container (apps, cron runs, dedicated databases): a fork bomb "
        "stops there.",
    )
    max_databases = models.PositiveIntegerField(default=1)
    max_database_size_mb = models.PositiveIntegerField(default=256, help_text="Per database (checked on usage).")
    max_database_connections = models.PositiveIntegerField(default=10, help_text="Per database (shared servers).")
    allow_dedicated_databases = models.BooleanField(default=False, help_text="A container of its own per database.")
    dedicated_database_memory_mb = models.PositiveIntegerField(default=256)
    dedicated_database_cpus = models.DecimalField(
        max_digits=4, decimal_places=2, default=Decimal("1.00"), validators=[MinValueValidator(Decimal("0.05"))]
    )
    backup_interval_hours = models.PositiveIntegerField(default=24, help_text="Scheduled backups; 0: none.")
    backups_kept = models.PositiveIntegerField(default=7, help_text="Backups kept per database (oldest pruned).")
    database_delete_grace_hours = models.PositiveIntegerField(
        default=72, help_text="A deleted database can be undeleted for this long, then it and its backups are purged."
    )
    max_cron_jobs = models.PositiveIntegerField(default=3)
    cron_history_runs = models.PositiveIntegerField(default=50, help_text="Runs kept per cron job.")
    max_concurrent_cron_runs = models.PositiveIntegerField(
        default=2,
        help_text="Cron run containers running at once for the team; a due run waits (up to its job's "
        "starting deadline) for a free slot, then is skipped.",
    )
    cron_run_now_per_minute = models.PositiveIntegerField(
        default=10, help_text="Manual runs ('run now') the team may queue per minute, all jobs together."
    )

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True), name="one_default_plan")
        ]

    def __str__(self) -> str:
        return self.name


class Team(TimeStampedModel):
    slug = models.CharField(max_length=SLUG_MAX_LENGTH, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=100)
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="teams")
    suspended_at = models.DateTimeField(null=True, blank=True)
    suspended_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ("slug",)

    def __str__(self) -> str:
        return self.slug

    @property
    def is_suspended(self) -> bool:
        return self.suspended_at is not None


class Membership(TimeStampedModel):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=[(r.value, r.value) for r in Role])

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_user")]
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class Project(TeamOwnedModel):
    """A group of apps, databases, cron jobs inside a team; the usual unit of object grants."""

    slug = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)

    project_lookup = "pk"
    grant_paths = ("",)

    class Meta:
        ordering = ("id",)
        default_permissions = ()
        permissions = [(c.value, MATRIX[c].description) for c in GRANTABLE]
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="project_slug_unique_in_team")]

    def __str__(self) -> str:
        return f"{self.team_id}/{self.slug}"


class ProjectUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="user_grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(UserObjectPermissionBase.Meta):
        ordering = ("id",)


class ProjectGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="group_grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(GroupObjectPermissionBase.Meta):
        ordering = ("id",)


class TeamGroup(TeamOwnedModel):
    """A named group of a team's members (e.g. "data"), the subject of object grants. Backed by a
    Django auth group so django-guardian's group permissions apply."""

    slug = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    name = models.CharField(max_length=100)
    group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="team_group")

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="group_slug_unique_in_team")]

    def __str__(self) -> str:
        return self.slug


class ServiceAccount(TeamOwnedModel):
    """A team's robot: a user that holds a membership and tokens, so CI keeps working when the
    person who set it up leaves."""

    slug = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    description = models.CharField(max_length=500, blank=True)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=["team", "slug"], name="service_account_slug_unique_in_team")]

    def __str__(self) -> str:
        return self.slug
