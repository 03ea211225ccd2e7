"""Input and output of the databases API. No output here ever carries a password or a connection
URL: credentials leave only through the audited reveal action (CredentialsOutput)."""

from rest_framework import serializers

from apps.databases.models import Backup, Database, DatabaseAttachment, DatabaseEngine, Placement
from apps.secrets.services import validate_name
from apps.teams.api.serializers import StrictCharField, slug_field
from apps.teams.models import SLUG_MAX_LENGTH


# --- output -----------------------------------------------------------------------------------------
class AttachmentBriefOutput(serializers.Serializer):
    app = serializers.CharField(source="app.name")
    env_name = serializers.CharField()


class DatabaseOutput(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    database = serializers.CharField(source="db_name", help_text="The database name (the key prefix for Redis).")
    attachments = AttachmentBriefOutput(many=True, read_only=True, help_text="Apps that receive its URL.")

    class Meta:
        model = Database
        fields = (
            "name", "project", "engine", "version", "placement", "status", "status_reason", "host", "port",
            "database", "username", "size_bytes", "connections", "usage_at", "attachments", "created_at",
            "credentials_rotated_at", "deleted_at", "purge_after",
        )  # fmt: skip
        extra_kwargs = {
            "deleted_at": {"help_text": "When it was deleted (null unless it is)."},
            "purge_after": {"help_text": "A deleted database can be undeleted until then; then it and its backups go."},
        }


class AttachmentOutput(serializers.ModelSerializer):
    app = serializers.CharField(source="app.name")

    class Meta:
        model = DatabaseAttachment
        fields = ("app", "env_name", "created_at")


class BackupOutput(serializers.ModelSerializer):
    class Meta:
        model = Backup
        fields = (
            "number", "trigger", "reason", "status", "size_bytes", "sha256", "error", "started_at", "finished_at",
            "restored_at", "created_at",
        )  # fmt: skip


class CredentialsOutput(serializers.Serializer):
    url = serializers.CharField(help_text="The connection URL apps receive (it contains the password).")
    host = serializers.CharField()
    port = serializers.IntegerField()
    database = serializers.CharField()
    username = serializers.CharField()
    password = serializers.CharField()


# --- input ------------------------------------------------------------------------------------------
class DatabaseCreateInput(serializers.Serializer):
    name = slug_field(help_text="Unique in the team, deleted databases included until they are purged.")
    project = StrictCharField(max_length=SLUG_MAX_LENGTH, help_text="The project's slug.")
    engine = serializers.ChoiceField(choices=DatabaseEngine.choices)
    placement = serializers.ChoiceField(
        choices=Placement.choices,
        default=Placement.SHARED,
        help_text="shared: a database and user on a server operators run; dedicated: a container of its own.",
    )
    version = StrictCharField(
        max_length=50,
        required=False,
        allow_blank=True,
        help_text="The engine version (the dedicated placement's image tag); empty: the default.",
    )


class DatabaseConfirmInput(serializers.Serializer):
    confirm = StrictCharField(max_length=SLUG_MAX_LENGTH + 10, help_text="Repeat the database's name to confirm.")


class AttachInput(serializers.Serializer):
    app = StrictCharField(max_length=SLUG_MAX_LENGTH, help_text="The app's name.")
    env_name = StrictCharField(
        max_length=128,
        required=False,
        trim_whitespace=False,  # "DB\n" is a bad name, not "DB"
        help_text="The variable the app receives the URL in (default: DATABASE_URL, REDIS_URL or MONGODB_URL).",
    )

    def validate_env_name(self, value: str) -> str:
        if problem := validate_name(value):
            raise serializers.ValidationError(problem)
        return value
