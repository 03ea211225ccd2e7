"""Managed databases: servers operators register (the shared placement), the databases teams ask
for, their attachments to apps and their backups."""

from django.db import models
from django.db.models import Q

from apps.core.models import TeamOwnedModel, TimeStampedModel
from apps.secrets.crypto import EncryptedTextField
from apps.teams.models import SLUG_MAX_LENGTH, slug_validator


class DatabaseEngine(models.TextChoices):
    POSTGRES = "postgres", "PostgreSQL"
    MYSQL = "mysql", "MySQL / MariaDB"
    REDIS = "redis", "Redis"
    MONGODB = "mongodb", "MongoDB"


# The environment variable an attached app receives unless another name is given.
DEFAULT_ENV_NAME = {
    DatabaseEngine.POSTGRES: "DATABASE_URL",
    DatabaseEngine.MYSQL: "DATABASE_URL",
    DatabaseEngine.REDIS: "REDIS_URL",
    DatabaseEngine.MONGODB: "MONGODB_URL",
}


class Placement(models.TextChoices):
    SHARED = "shared"  # a database and its own user on a server operators registered
    DEDICATED = "dedicated"  # a container of its own from the engine's image, with a volume


class DatabaseServer(TimeStampedModel):
    """A database server operators registered for the shared placement (admin screen or
    `manage.py registerserver`). Its admin URL holds credentials: stored encrypted."""

    name = models.CharField(max_length=SLUG_MAX_LENGTH, unique=True, validators=[slug_validator])
    engine = models.CharField(max_length=10, choices=DatabaseEngine.choices)
    admin_url_encrypted = EncryptedTextField(editable=False)
    host_for_apps = models.CharField(
        max_length=255, blank=True, help_text="The host apps connect to (default: the admin URL's host)."
    )
    port_for_apps = models.PositiveIntegerField(null=True, blank=True, help_text="Default: the admin URL's port.")
    version = models.CharField(max_length=50, blank=True, help_text="As the server reported it when registered.")
    enabled = models.BooleanField(default=True, help_text="New databases are placed only on enabled servers.")

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"{self.name} ({self.engine})"


class DatabaseStatus(models.TextChoices):
    """`deleted` is recoverable: the data and backups are kept, the credentials refused, until
    `purge_after`; `deleting` is the purge under way (the row goes once the purge is done)."""

    PROVISIONING = "provisioning"
    AVAILABLE = "available"
    BACKING_UP = "backing_up"
    RESTORING = "restoring"
    DELETING = "deleting"
    DELETED = "deleted"
    FAILED = "failed"


class Database(TeamOwnedModel):
    """A team's managed database. Its password is stored encrypted; the connection URL is built
    from the parts and shown only to those allowed (audited)."""

    project = models.ForeignKey("teams.Project", on_delete=models.PROTECT, related_name="databases")
    name = models.CharField(max_length=SLUG_MAX_LENGTH, validators=[slug_validator])
    engine = models.CharField(max_length=10, choices=DatabaseEngine.choices)
    version = models.CharField(max_length=50, blank=True)
    placement = models.CharField(max_length=10, choices=Placement.choices, default=Placement.SHARED)
    server = models.ForeignKey(
        DatabaseServer, null=True, blank=True, on_delete=models.PROTECT, related_name="databases"
    )
    status = models.CharField(max_length=15, choices=DatabaseStatus.choices, default=DatabaseStatus.PROVISIONING)
    status_reason = models.TextField(blank=True, help_text="Why it failed, in words an operator can act on.")
    # Where and as whom apps connect (the database name doubles as the key prefix for Redis).
    db_name = models.CharField(max_length=63, editable=False)
    username = models.CharField(max_length=63, editable=False)
    password_encrypted = EncryptedTextField(editable=False)
    host = models.CharField(max_length=255, blank=True, editable=False)
    port = models.PositiveIntegerField(null=True, blank=True, editable=False)
    # The dedicated placement's container and volume.
    container_name = models.CharField(max_length=200, blank=True, editable=False)
    volume_name = models.CharField(max_length=200, blank=True, editable=False)
    # The dedicated server's superuser password (a database field, not a volume label: key rotation
    # must be able to re-encrypt it).
    admin_password_encrypted = EncryptedTextField(blank=True, editable=False)
    # Usage, as last measured.
    size_bytes = models.BigIntegerField(null=True, blank=True, editable=False)
    connections = models.PositiveIntegerField(null=True, blank=True, editable=False)
    usage_at = models.DateTimeField(null=True, blank=True, editable=False)
    credentials_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    deleted_at = models.DateTimeField(null=True, blank=True, editable=False)
    purge_after = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="A deleted database can be undeleted until then."
    )

    project_lookup = "project"
    grant_paths = ("project",)

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(
                fields=["team", "name"], condition=~Q(status="deleted"), name="database_name_unique_in_team"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DatabaseAttachment(TeamOwnedModel):
    """A database's URL given to an app as an environment variable (a platform-managed secret of
    the app: its next deploy receives it)."""

    database = models.ForeignKey(Database, on_delete=models.CASCADE, related_name="attachments")
    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="database_attachments")
    env_name = models.CharField(max_length=128)

    project_lookup = "database__project"
    grant_paths = ("database__project",)

    class Meta:
        ordering = ("id",)
        constraints = [
            models.UniqueConstraint(fields=["app", "env_name"], name="one_attachment_per_app_variable"),
            models.UniqueConstraint(fields=["database", "app"], name="database_attached_once_per_app"),
        ]

    def __str__(self) -> str:
        return f"{self.database_id} -> {self.app_id} as {self.env_name}"


class BackupStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class BackupTrigger(models.TextChoices):
    MANUAL = "manual"
    SCHEDULED = "scheduled"
    SAFETY = "safety"  # taken automatically before a restore replaces the data


class Backup(TeamOwnedModel):
    """One backup of a database, stored through Django's storage API with its size and checksum."""

    database = models.ForeignKey(Database, on_delete=models.CASCADE, related_name="backups")
    number = models.PositiveIntegerField(help_text="1, 2, 3… per database; the id people use.")
    trigger = models.CharField(max_length=10, choices=BackupTrigger.choices, default=BackupTrigger.MANUAL)
    status = models.CharField(max_length=10, choices=BackupStatus.choices, default=BackupStatus.PENDING)
    file_name = models.CharField(max_length=500, blank=True, editable=False)
    size_bytes = models.BigIntegerField(null=True, blank=True, editable=False)
    sha256 = models.CharField(max_length=64, blank=True, editable=False)
    error = models.TextField(blank=True, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    restored_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="Last restored from.")
    created_by_label = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why an automatic backup was taken.")

    project_lookup = "database__project"
    grant_paths = ("database__project",)

    class Meta:
        ordering = ("-id",)
        constraints = [models.UniqueConstraint(fields=["database", "number"], name="backup_number_unique")]

    def __str__(self) -> str:
        return f"{self.database_id} backup #{self.number}"
