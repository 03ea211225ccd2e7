"""The registry of encrypted fields (`EncryptedTextField`, walked by `rotate_secret_keys`) misses
nothing: every column that is named like ciphertext or holds binary data is registered, and a scan
of every text column of every table in the database, after the platform has written one of each
kind of encrypted value, finds Fernet tokens only in registered columns. A new encrypted column
declared as a plain TextField fails here, before a key rotation silently leaves it behind."""

import re

import pytest
from django.apps import apps
from django.db import connection, models

from apps.alerts.services import channel_create
from apps.databases.models import Database, DatabaseServer, Placement
from apps.registries.services import registry_credential_create
from apps.secrets import crypto
from apps.secrets.crypto import EncryptedTextField
from apps.secrets.services import variables_set
from tests.secrets.conftest import ctx_of, scope_of

# A Fernet token is url-safe base64 of the version byte 0x80 and a 64-bit timestamp whose high bytes
# are zero for any date this code will see: it starts with "gAAAAA".
FERNET_PREFIX = "gAAAAA"
NAMED_LIKE_CIPHERTEXT = re.compile(r"encrypt|cipher|fernet|ciphertext", re.IGNORECASE)
TEXT_TYPES = ("text", "character varying", "json", "jsonb")


def registered_columns() -> set[tuple[str, str]]:
    return {(model._meta.db_table, model._meta.get_field(name).column) for model, name in crypto.encrypted_fields()}


def columns_holding_fernet_tokens() -> set[tuple[str, str]]:
    """(table, column) of every text column, in every table of the database, in which some value
    contains something shaped like a Fernet token that the configured keys decrypt."""
    found: set[tuple[str, str]] = set()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = ANY(%s)",
            [list(TEXT_TYPES)],
        )
        columns = cursor.fetchall()
        for table, column in columns:
            quoted = f"{connection.ops.quote_name(table)}.{connection.ops.quote_name(column)}"
            cursor.execute(
                f"SELECT {quoted}::text FROM {connection.ops.quote_name(table)} "
                f"WHERE {quoted}::text LIKE %s LIMIT 20",
                [f"%{FERNET_PREFIX}%"],
            )
            for (text,) in cursor.fetchall():
                for candidate in re.findall(rf"{FERNET_PREFIX}[A-Za-z0-9_=-]+", text):
                    try:
                        crypto.decrypt(candidate)
                    except crypto.DecryptionFailed:
                        continue
                    found.add((table, column))
    return found


def assert_every_encrypted_column_is_registered() -> None:
    unregistered = columns_holding_fernet_tokens() - registered_columns()
    assert not unregistered, (
        f"columns holding Fernet tokens that rotate_secret_keys would not rotate: {sorted(unregistered)}; "
        "declare them as apps.secrets.crypto.EncryptedTextField"
    )


def test_fields_named_like_ciphertext_or_binary_are_registered():
    suspicious = [
        f"{model._meta.label}.{field.name}"
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if (NAMED_LIKE_CIPHERTEXT.search(field.name) or isinstance(field, models.BinaryField))
        and not isinstance(field, EncryptedTextField)
    ]
    assert suspicious == []


def test_the_registry_holds_every_known_encrypted_value():
    labels = {f"{model._meta.label}.{name}" for model, name in crypto.encrypted_fields()}
    assert {
        "secrets.VariableVersion.value_encrypted",
        "databases.DatabaseServer.admin_url_encrypted",
        "databases.Database.password_encrypted",
        "databases.Database.admin_password_encrypted",
        "alerts.NotificationChannel.signing_secret_encrypted",
        "registries.RegistryCredential.password_encrypted",
    } <= labels


def test_registering_a_column_needs_no_migration():
    # EncryptedTextField deconstructs as a TextField: the registry lives in code only.
    field = Database._meta.get_field("password_encrypted")
    assert field.deconstruct()[1] == "django.db.models.TextField"


@pytest.fixture
def one_of_each(settings, team_a, app) -> None:
    """One value of every kind the platform encrypts, written the way the platform writes it."""
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    ctx = ctx_of(team_a)
    variables_set(ctx=ctx, scope=scope_of("app", team_a, app), values={"TOKEN": "scan-secret"}, secret=True,
                  restart=False)  # fmt: skip
    channel_create(ctx=ctx, name="hooks", kind="webhook", target="http://127.0.0.1:9/hook")
    registry_credential_create(ctx=ctx, registry="registry.example.com", username="ci", password="registry-pw")
    server = DatabaseServer.objects.create(
        name="scan", engine="postgres", admin_url_encrypted=crypto.encrypt("postgres://admin:pw@127.0.0.1/postgres")
    )
    Database.objects.create(
        team=team_a.team, project=team_a.project, name="scan", engine="redis", placement=Placement.DEDICATED,
        server=server, db_name="scan", username="scan", password_encrypted=crypto.encrypt("tenant-pw"),
        admin_password_encrypted=crypto.encrypt("superuser-pw"),
    )  # fmt: skip


def test_a_scan_of_every_table_finds_fernet_tokens_only_in_registered_columns(one_of_each):
    found = columns_holding_fernet_tokens()
    assert found >= {("secrets_variableversion", "value_encrypted"), ("alerts_notificationchannel",
                     "signing_secret_encrypted"), ("databases_database", "password_encrypted"),
                     ("registries_registrycredential", "password_encrypted")}  # fmt: skip
    assert_every_encrypted_column_is_registered()


def test_the_scan_catches_an_unregistered_column(one_of_each):
    # A token where no registered field is (here: a deployment's failure reason) is reported.
    from apps.deployments.models import App, Deployment

    app = App.objects.first()
    Deployment.objects.create(team=app.team, app=app, number=99, image="x", reason=crypto.encrypt("oops"), config={})
    assert ("deployments_deployment", "reason") in columns_holding_fernet_tokens() - registered_columns()
