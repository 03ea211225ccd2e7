from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core.capabilities import GRANTABLE, MATRIX
from apps.core.models import TeamOwnedModel
from apps.teams.models import SLUG_MAX_LENGTH, slug_validator


class AppStatus(models.TextChoices):
    NEW = "new"  # never deployed
    DEPLOYING = "deploying"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"  # its last deployment failed and nothing is live


class App(TeamOwnedModel):
    """A web service of a team: runs the image of its live deployment as `replicas` containers
    behind the router at http://<name>.<team>.<apps domain>."""

    project = models.ForeignKey("teams.Project", on_delete=models.PROTECT, related_name="apps")
    name = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    port = models.PositiveIntegerField(
        default=8080,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text="The port the app listens on.",
    )
    health_check_path = models.CharField(
        max_length=200, blank=True, help_text="HTTP path answering 2xx/3xx when healthy; empty: a TCP connect."
    )
    replicas = models.PositiveIntegerField(default=1, validators=[MaxValueValidator(50)])
    memory_mb = models.PositiveIntegerField(default=256, validators=[MinValueValidator(16)])
    cpus = models.DecimalField(
        max_digits=4, decimal_places=2, default=0.5, validators=[MinValueValidator(0.05), MaxValueValidator(16)]
    )
    command = models.JSONField(null=True, blank=True, help_text="Overrides the image's command (a list).")
    # Whether the platform should keep it running (stop/start flip this; the reconciler follows it).
    desired_running = models.BooleanField(default=True)
    live_deployment = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    project_lookup = "project"
    grant_paths = ("", "project")

    class Meta:
        ordering = ("id",)
        default_permissions = ()
        permissions = [(c.value, MATRIX[c].description) for c in GRANTABLE]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="app_name_unique_in_team")]

    def __str__(self) -> str:
        return self.name

    ROUTER_BACKEND_PREFIX = "app_"

    @property
    def router_backend(self) -> str:
        return self.router_backend_of(self.pk)

    @classmethod
    def router_backend_of(cls, app_id: int) -> str:
        return f"{cls.ROUTER_BACKEND_PREFIX}{app_id}"

    @classmethod
    def id_of_router_backend(cls, name: str) -> int | None:
        """The app id of a router backend name ("app_17" -> 17); None for the router's own backends."""
        digits = name.removeprefix(cls.ROUTER_BACKEND_PREFIX)
        return int(digits) if digits != name and digits.isdigit() else None


class DeploymentStatus(models.TextChoices):
    PENDING = "pending"
    PULLING = "pulling"
    STARTING = "starting"
    HEALTH_CHECKING = "health_checking"
    LIVE = "live"
    FAILED = "failed"
    # Replaced by a newer deployment: the live one a newer release took over from, or one still in
    # progress when a newer deploy, rollback or restart came (then it never got traffic).
    SUPERSEDED = "superseded"
    ROLLED_BACK = "rolled_back"
    # Stopped before it went live by an explicit cancel, or by stopping the app; never got traffic.
    CANCELLED = "cancelled"


IN_PROGRESS = (
    DeploymentStatus.PENDING,
    DeploymentStatus.PULLING,
    DeploymentStatus.STARTING,
    DeploymentStatus.HEALTH_CHECKING,
)


class Deployment(TeamOwnedModel):
    """One release of an app: an image and the configuration it runs with (a snapshot, so a
    rollback runs exactly what ran before)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="deployments")
    number = models.PositiveIntegerField(help_text="1, 2, 3… per app; the id people use.")
    image = models.CharField(max_length=500)
    image_digest = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING)
    reason = models.TextField(blank=True, help_text="Why it failed (with the tail of the container log).")
    config = models.JSONField(default=dict, help_text="port, replicas, limits, command, health check path.")
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_label = models.CharField(max_length=200, blank=True)
    token_prefix = models.CharField(max_length=20, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The newer deployment that took over from this one.",
    )
    cancelled_by = models.CharField(
        max_length=200, blank=True, help_text="Who stopped it before it went live (by a newer action or a cancel)."
    )
    # Set when it was stopped while still in progress: it never ran, so it is nothing to roll back to.
    cancelled_at = models.DateTimeField(null=True, blank=True)

    project_lookup = "app__project"
    grant_paths = ("app", "app__project")

    class Meta:
        ordering = ("-id",)
        constraints = [models.UniqueConstraint(fields=["app", "number"], name="deployment_number_unique_in_app")]

    def __str__(self) -> str:
        return f"{self.app_id}#{self.number} {self.image}"

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS


class DeploymentEvent(models.Model):
    """A timestamped line of a deployment's progress, for the API and the CLI's progress."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=10, default="info")
    message = models.TextField()

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return self.message[:80]


class AppUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(App, on_delete=models.CASCADE, related_name="user_grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(UserObjectPermissionBase.Meta):
        ordering = ("id",)


class AppGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(App, on_delete=models.CASCADE, related_name="group_grants")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(GroupObjectPermissionBase.Meta):
        ordering = ("id",)


class Container(TeamOwnedModel):
    """A container the platform started for a deployment (desired state: it should exist and be
    in the router while its deployment is live)."""

    app = models.ForeignKey(App, on_delete=models.CASCADE, related_name="containers")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="containers")
    replica = models.PositiveIntegerField()
    name = models.CharField(max_length=200, unique=True)
    docker_id = models.CharField(max_length=100, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    in_router = models.BooleanField(default=False)

    project_lookup = "app__project"
    grant_paths = ("app", "app__project")

    class Meta:
        ordering = ("id",)
        constraints = [models.UniqueConstraint(fields=["deployment", "replica"], name="one_container_per_replica")]

    def __str__(self) -> str:
        return self.name

    @property
    def router_server(self) -> str:
        return self.router_server_of(self.pk)

    @staticmethod
    def router_server_of(container_id: int) -> str:
        return f"c{container_id}"
