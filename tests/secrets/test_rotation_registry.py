"""`rotate_secret_keys` walks every registered encrypted field, and says `Done` only when no stored
value needs an old key: a value it could not move (a dedicated database's password left in a volume
label under a key that is gone) or a value still under the old key after its pass (a process still
writing with the old key list first) makes it fail with `Not done`, naming fields, never values."""

import io
import uuid

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command

from apps.alerts.services import channel_create
from apps.databases import dedicated
from apps.databases.models import Database, DatabaseServer, Placement
from apps.registries.services import registry_credential_create
from apps.runtime.engine import DockerEngine
from apps.secrets import crypto
from apps.secrets.services import variables_set
from tests.secrets.conftest import ctx_of, scope_of
from tests.support import TEST_RUN_LABEL, remove_test_run

K1 = Fernet.generate_key().decode()
K2 = Fernet.generate_key().decode()


def use_keys(settings, *keys: str) -> None:
    settings.PANDASTACK_SECRET_KEYS = list(keys)
    crypto.reset_keys()


def rotate() -> str:
    out = io.StringIO()
    call_command("rotate_secret_keys", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def tokens() -> dict[str, list[str]]:
    return {
        f"{model._meta.label}.{name}": list(model._base_manager.exclude(**{name: ""}).values_list(name, flat=True))
        for model, name in crypto.encrypted_fields()
    }


def opens(key: str, token: str) -> bool:
    try:
        Fernet(key).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


@pytest.fixture
def every_kind_under_k1(settings, team_a, app) -> None:
    use_keys(settings, K1)
    settings.PANDASTACK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    ctx = ctx_of(team_a)
    variables_set(ctx=ctx, scope=scope_of("app", team_a, app), values={"S": "value-1"}, secret=True, restart=False)
    channel_create(ctx=ctx, name="hooks", kind="webhook", target="http://127.0.0.1:9/hook")
    registry_credential_create(ctx=ctx, registry="registry.example.com", username="ci", password="registry-pw")
    server = DatabaseServer.objects.create(
        name="reg", engine="postgres", admin_url_encrypted=crypto.encrypt("postgres://a:b@127.0.0.1/postgres")
    )
    Database.objects.create(
        team=team_a.team, project=team_a.project, name="d", engine="postgres", server=server, db_name="d",
        username="d", password_encrypted=crypto.encrypt("pw"), admin_password_encrypted=crypto.encrypt("su"),
    )  # fmt: skip


def test_every_registered_field_is_rotated(settings, every_kind_under_k1):
    before = tokens()
    assert all(before.values()), before  # every registered field holds a value here
    use_keys(settings, K2, K1)
    out = rotate()
    assert out.startswith("Done: 6 value(s) re-encrypted"), out
    after = tokens()
    assert all(opens(K2, t) and not opens(K1, t) for values in after.values() for t in values)
    use_keys(settings, K2)
    assert crypto.decrypt(Database.objects.get().admin_password_encrypted) == "su"
    assert crypto.decrypt(DatabaseServer.objects.get().admin_url_encrypted).startswith("postgres://")


def test_a_value_left_under_the_old_key_means_not_done(settings, every_kind_under_k1, monkeypatch):
    use_keys(settings, K2, K1)
    # As if a value were missed by its pass (or rewritten meanwhile by a process still configured
    # with K1 first): the verification after the passes finds it.
    monkeypatch.setattr(
        "apps.secrets.management.commands.rotate_secret_keys.Command._rotate_field",
        _skipping("alerts.NotificationChannel"),
    )
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"Not done: .*alerts\.NotificationChannel\.signing_secret_encrypted: 1"):
        call_command("rotate_secret_keys", stdout=out, stderr=io.StringIO())
    assert "Done" not in out.getvalue()


def _skipping(label: str):
    from apps.secrets.management.commands.rotate_secret_keys import Command

    real = Command._rotate_field

    def rotate_field(self, model, name, batch_size):
        if model._meta.label == label:
            return 0, 0  # this field's pass "missed" its value
        return real(self, model, name, batch_size)

    return rotate_field


def test_a_legacy_label_password_whose_key_is_gone_means_not_done(settings, team_a, docker_engine):
    run_id = uuid.uuid4().hex[:12]
    settings.PANDASTACK_EXTRA_LABELS = {TEST_RUN_LABEL: run_id}
    use_keys(settings, K1)
    label_token = crypto.encrypt("legacy-su")  # what an older PandaStack put in the volume's label
    use_keys(settings, K2)  # K1 dropped before the label's password was moved into the row
    database = Database.objects.create(
        team=team_a.team, project=team_a.project, name="old", engine="redis", placement=Placement.DEDICATED,
        db_name=f"old_{run_id}", username="old", password_encrypted=crypto.encrypt("pw"),
    )  # fmt: skip
    engine: DockerEngine = docker_engine
    try:
        engine.ensure_volume(
            dedicated.volume_name_for(database),
            {**dedicated.labels_for_database(database), dedicated.ADMIN_PASSWORD_LABEL: label_token},
        )
        with pytest.raises(CommandError, match="Not done") as raised:
            rotate()
        assert "legacy-su" not in str(raised.value)

        use_keys(settings, K2, K1)  # with the old key back, it moves it and is done
        assert rotate().startswith("Done")
        database.refresh_from_db()
        assert opens(K2, database.admin_password_encrypted)
        use_keys(settings, K2)
        assert dedicated.admin_password(database) == "legacy-su"
    finally:
        assert not remove_test_run(engine.client, run_id)
