"""Attack (on the operator's trust): the operator rotates PANDASTACK_SECRET_KEYS because the old key
may have leaked, runs `rotate_secret_keys`, sees `Done`, drops the old key and restarts. Every value
the platform keeps encrypted must then be under the new key only — or the platform breaks (the old
key cannot be dropped) or, worse, the "retired" key still opens data an attacker may hold a copy of.

Before the fix only variables were rotated: server admin URLs, database passwords, dedicated
databases' superuser passwords (kept in immutable volume labels) and webhook signing secrets stayed
under the old key, so after dropping it provisioning, reveal, rotation, backups, dedicated databases
and signed webhooks all failed.

Real PostgreSQL (the tests' password-protected cluster), MariaDB and Redis (tests/support/database_fixtures.py),
the real Docker Engine and HAProxy (a real deploy; a dedicated Redis from the tests' image) and a real
webhook receiver. The worker's tasks run in this process (Celery's eager mode), so that the "restart"
with the new key only is this process's, and no worker of another test module, started with the
session's key, can pick them up."""

import hashlib
import hmac
import io
import uuid

import psycopg
import pytest
import redis
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.management import call_command

from apps.alerts.models import Delivery
from apps.alerts.services import SIGNATURE_HEADER, channel_create, notify
from apps.databases import dedicated, services
from apps.databases.backups import backup_capture, backup_restore
from apps.databases.models import Backup, Database, Placement
from apps.deployments.models import App
from apps.registries.selectors import image_pull_for
from apps.registries.services import registry_credential_create
from apps.secrets import crypto
from pandastack.celery import app as celery_app
from tests.conftest import make_team
from tests.e2e.test_deploy import create_app, deploy, owner_client
from tests.e2e.test_secrets_e2e import container_env, set_variables
from tests.secrets.test_encrypted_fields import assert_every_encrypted_column_is_registered
from tests.support.database_fixtures import ctx_of
from tests.support.platform_fixtures import wait_for
from tests.support.receiver import Receiver

NEW = Fernet.generate_key().decode()
API_SECRET = "rotated-api-secret-5e6f7a8b"
REGISTRY_PASSWORD = "registry-token-9a8b7c6d"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def keys(settings, transactional_db, platform_settings, monkeypatch):
    """Runs the platform's tasks here (eagerly) and switches this process's keys; `use(...)` is the
    operator's new PANDASTACK_SECRET_KEYS and restart (the key cache is rebuilt from it)."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)

    def use(*values: str) -> None:
        settings.PANDASTACK_SECRET_KEYS = list(values)
        crypto.reset_keys()

    yield use
    crypto.reset_keys()


def wait_available(database: Database, *, what: str) -> Database:
    def ready() -> Database | None:
        database.refresh_from_db()
        assert database.status != "failed", database.status_reason
        return database if database.status == "available" else None

    return wait_for(ready, timeout=90, what=what)


def create_database(world, name: str, engine: str = "postgres") -> Database:
    database = services.database_create(ctx=ctx_of(world), project=world.project, name=name, engine=engine)
    return wait_available(database, what=f"{name} to be provisioned")


def pg_connect(credentials: dict) -> psycopg.Connection:
    return psycopg.connect(
        host=credentials["host"], port=credentials["port"], user=credentials["username"],
        password=credentials["password"], dbname=credentials["database"], connect_timeout=5, autocommit=True,
    )  # fmt: skip


def stored_tokens() -> dict[str, list[str]]:
    """Every encrypted value in every registered field."""
    found: dict[str, list[str]] = {}
    for model, name in crypto.encrypted_fields():
        values = model._base_manager.exclude(**{name: ""}).values_list(name, flat=True)
        found[f"{model._meta.label}.{name}"] = list(values)
    return found


def opens(key: str, token: str) -> bool:
    try:
        Fernet(key).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def test_after_rotation_the_old_key_is_dropped_and_everything_still_works(
    keys, servers, receiver, web_image, redis_image, docker_engine
):
    old = settings.PANDASTACK_SECRET_KEYS[0]
    world = make_team("alpha")
    world.team.plan.max_databases = 20
    world.team.plan.save()
    ctx = ctx_of(world)
    client = owner_client(world)

    # --- everything is written under the old key ------------------------------------------------------
    before = create_database(world, "pg-before")
    create_app(client, "web")
    app = App.objects.get(name="web")
    set_variables(client, "apps/web/", {"API_TOKEN": API_SECRET}, secret=True, restart=False)
    services.database_attach(ctx=ctx, database=before, app=app)
    channel, signing_secret = channel_create(ctx=ctx, name="hooks", kind="webhook", target=receiver.url)
    registry_credential_create(ctx=ctx, registry="registry.example.com", username="ci", password=REGISTRY_PASSWORD)
    # A dedicated Redis: its superuser password is in its row.
    cache = Database.objects.create(
        team=world.team, project=world.project, name="cache", engine="redis", placement=Placement.DEDICATED,
        db_name=f"cache_{uuid.uuid4().hex[:6]}", username="cache", password_encrypted=crypto.encrypt("x" * 20),
    )  # fmt: skip
    first_start = dedicated.ensure_container(cache, image=redis_image)
    # One made before passwords moved out of volume labels: its password only in the label.
    legacy = Database.objects.create(
        team=world.team, project=world.project, name="legacy", engine="redis", placement=Placement.DEDICATED,
        db_name="legacy", username="legacy", password_encrypted=crypto.encrypt("y" * 20),
    )  # fmt: skip
    legacy_password = "legacy-superuser-password-0c0c"
    docker_engine.ensure_volume(
        dedicated.volume_name_for(legacy),
        {**dedicated.labels_for_database(legacy), dedicated.ADMIN_PASSWORD_LABEL: crypto.encrypt(legacy_password)},
    )

    tokens = stored_tokens()
    assert all(tokens.values()), f"every registered field must be exercised here: {tokens}"
    assert_every_encrypted_column_is_registered()  # no Fernet token anywhere else in the database
    assert all(opens(old, t) for values in tokens.values() for t in values)

    # --- rotate under [new, old], then drop the old key and restart -------------------------------------
    keys(NEW, old)  # through the `settings` fixture: restored after the test, not leaked into the next
    out = io.StringIO()
    call_command("rotate_secret_keys", stdout=out, stderr=io.StringIO())
    assert out.getvalue().startswith("Done"), out.getvalue()
    keys(NEW)

    tokens = stored_tokens()
    under_old = {field: [t for t in values if opens(old, t)] for field, values in tokens.items()}
    assert not any(under_old.values()), under_old
    assert all(opens(NEW, t) for values in tokens.values() for t in values)

    # --- and everything works with the new key alone ----------------------------------------------------
    # provision (the server's admin URL) and attach
    after = create_database(world, "pg-after")
    services.database_attach(ctx=ctx, database=after, app=app, env_name="SECOND_DATABASE_URL")

    # reveal (the tenant's password)
    before.refresh_from_db()  # re-read after the rotation, as any new request would
    credentials = services.database_reveal(ctx=ctx, database=before)
    with pg_connect(credentials) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('kept')")

    # rotate credentials: the old password is refused, the new one works
    services.database_rotate(ctx=ctx, database=before)
    wait_for(
        lambda: Database.objects.get(pk=before.pk).credentials_rotated_at is not None
        and Database.objects.get(pk=before.pk).status == "available",
        timeout=60,
        what="the credential rotation",
    )
    rotated = services.database_reveal(ctx=ctx, database=Database.objects.get(pk=before.pk))
    assert rotated["password"] != credentials["password"]
    with pytest.raises(psycopg.OperationalError):
        pg_connect(credentials).close()

    # back up, change, restore
    backup = backup_capture(ctx=ctx, database=Database.objects.get(pk=before.pk))
    wait_for(lambda: Backup.objects.get(pk=backup.pk).status in ("succeeded", "failed"), timeout=60, what="backup")
    backup.refresh_from_db()
    assert backup.status == "succeeded", backup.error
    wait_available(before, what="the database after its backup")
    with pg_connect(rotated) as conn:
        conn.execute("UPDATE notes SET body = 'changed'")
    backup_restore(ctx=ctx, database=before, backup=backup, confirm=before.name)
    wait_for(lambda: Backup.objects.get(pk=backup.pk).restored_at is not None, timeout=90, what="the restore")
    wait_available(before, what="the database after its restore")
    with pg_connect(services.database_reveal(ctx=ctx, database=before)) as conn:
        assert conn.execute("SELECT body FROM notes").fetchone() == ("kept",)

    # deploy with secrets (the worker decrypts the variables and both database URLs)
    live = deploy(client, web_image)
    env = container_env(live)
    assert env["API_TOKEN"] == API_SECRET
    assert env["DATABASE_URL"].startswith("postgres") and env["SECOND_DATABASE_URL"].startswith("postgres")

    # a signed webhook (the channel's signing secret)
    notify(channel=channel, trigger="test", subject="after rotation", payload={"rotated": True})
    wait_for(lambda: receiver.requests, timeout=30, what="the webhook delivery")
    (request,) = receiver.requests[:1]
    headers = request["headers"]
    expected = hmac.new(
        signing_secret.encode(), headers["X-PandaStack-Timestamp"].encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}"
    delivered = Delivery.objects.filter(channel=channel, status="delivered")
    wait_for(delivered.exists, timeout=30, what="the delivery to be recorded as delivered")

    # the team's registry login (what the worker pulls private images with)
    pull = image_pull_for(team=world.team, image="registry.example.com/shop/web:1")
    assert (pull.auth.username, pull.auth.password) == ("ci", REGISTRY_PASSWORD)

    # the dedicated Redis comes back with its (re-encrypted) superuser password, the legacy one too
    docker_engine.remove(first_start.container_name)
    again = dedicated.ensure_container(Database.objects.get(pk=cache.pk), image=redis_image)
    with redis.Redis.from_url(again.admin_url, socket_timeout=5) as admin:
        assert admin.ping()
    assert dedicated.admin_password(Database.objects.get(pk=legacy.pk)) == legacy_password

    dedicated.remove_container(cache)
    dedicated.remove_container(legacy)
