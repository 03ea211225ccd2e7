"""Key rotation: values set under K1 are re-encrypted under K2 by `rotate_secret_keys` (in
batches, resumable after an interruption), after which K1 can be removed and everything still
decrypts. A value no key can decrypt stops the command with a clear error that names no value.
And production settings refuse to start without keys."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command

from apps.secrets import crypto
from apps.secrets.models import VariableVersion
from apps.secrets.selectors import environment_from_versions, version_ids_for_app
from apps.secrets.services import variables_set, variables_unset
from tests.secrets.conftest import LEVEL_URLS, ctx_of, scope_of

ROOT = Path(__file__).resolve().parent.parent.parent
K1 = Fernet.generate_key().decode()
K2 = Fernet.generate_key().decode()
EXPECTED_ENV = {
    "APP_SECRET": "rot-app-secret-v2",
    "PROJECT_SECRET": "rot-project-secret",
    "TEAM_PLAIN": "rot-team-plain",
}
OLD_APP_SECRET = "rot-app-secret-v1"


def use_keys(settings, *keys: str) -> None:
    settings.PANDASTACK_SECRET_KEYS = list(keys)
    crypto.reset_keys()


@pytest.fixture
def values_under_k1(settings, team_a, app) -> None:
    """Six encrypted versions (one superseded) and one unset version, all written under K1."""
    use_keys(settings, K1)
    ctx = ctx_of(team_a)
    app_scope = scope_of("app", team_a, app)
    variables_set(ctx=ctx, scope=app_scope, values={"APP_SECRET": OLD_APP_SECRET}, secret=True, restart=False)
    variables_set(ctx=ctx, scope=app_scope, values={"APP_SECRET": EXPECTED_ENV["APP_SECRET"]}, secret=True)
    variables_set(ctx=ctx, scope=app_scope, values={"GONE": "rot-gone"}, restart=False)
    variables_unset(ctx=ctx, scope=app_scope, names=["GONE"], restart=False)
    variables_set(
        ctx=ctx,
        scope=scope_of("project", team_a),
        values={"PROJECT_SECRET": EXPECTED_ENV["PROJECT_SECRET"]},
        secret=True,
        restart=False,
    )
    variables_set(
        ctx=ctx, scope=scope_of("team", team_a), values={"TEAM_PLAIN": EXPECTED_ENV["TEAM_PLAIN"]}, restart=False
    )


def encrypted_tokens() -> list[str]:
    return list(
        VariableVersion.objects.exclude(value_encrypted="").order_by("pk").values_list("value_encrypted", flat=True)
    )


def under(key: str) -> int:
    """How many stored values `key` alone decrypts."""
    count = 0
    for token in encrypted_tokens():
        try:
            Fernet(key).decrypt(token.encode())
        except InvalidToken:
            continue
        count += 1
    return count


def rotate(batch_size: int = 2) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_secret_keys", "--batch-size", str(batch_size), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def all_values() -> list[str]:
    return sorted(crypto.decrypt(token) for token in encrypted_tokens())


def test_rotation_with_two_keys_then_the_old_key_removed(settings, values_under_k1, team_a, app, client_for):
    assert (len(encrypted_tokens()), under(K1), under(K2)) == (5, 5, 0)
    use_keys(settings, K2, K1)
    out, err = rotate(batch_size=2)
    assert "Done: 5 value(s) re-encrypted, 0 already under the first key." in out
    assert err.count("re-encrypted") == 3  # batches of 2, 2 and 1
    assert (under(K1), under(K2)) == (0, 5)
    assert VariableVersion.objects.get(variable__name="GONE", deleted=True).value_encrypted == ""

    # The old key goes: every value, current and past, still decrypts.
    use_keys(settings, K2)
    assert all_values() == sorted([*EXPECTED_ENV.values(), OLD_APP_SECRET, "rot-gone"])
    assert environment_from_versions(version_ids_for_app(app)) == EXPECTED_ENV
    revealed = client_for(team_a, "owner").post(f"{LEVEL_URLS['app']}APP_SECRET/reveal/")
    assert revealed.status_code == 200 and revealed.json()["value"] == EXPECTED_ENV["APP_SECRET"]
    listed = client_for(team_a, "viewer").get(f"{LEVEL_URLS['app']}?effective=1").json()["results"]
    assert {r["name"]: r["value"] for r in listed}["TEAM_PLAIN"] == EXPECTED_ENV["TEAM_PLAIN"]
    # A deployment recorded before the rotation still gets its values (its version ids did not move).
    restart = app.deployments.order_by("-number").first()
    assert restart.number == 2
    assert environment_from_versions(restart.config["variables"]) == {"APP_SECRET": EXPECTED_ENV["APP_SECRET"]}

    # Running it again changes nothing.
    before = encrypted_tokens()
    out, _ = rotate()
    assert "Done: 0 value(s) re-encrypted, 5 already under the first key." in out
    assert encrypted_tokens() == before
    assert not any(value in out + err for value in [*EXPECTED_ENV.values(), OLD_APP_SECRET])


def test_an_interrupted_rotation_resumes_where_it_stopped(settings, values_under_k1, monkeypatch):
    use_keys(settings, K2, K1)
    real_rotate = crypto.rotate
    calls = []

    def dies_on_the_fourth_value(token: str) -> str:
        calls.append(token)
        if len(calls) == 4:
            raise RuntimeError("worker killed")
        return real_rotate(token)

    monkeypatch.setattr(crypto, "rotate", dies_on_the_fourth_value)
    with pytest.raises(RuntimeError, match="worker killed"):
        rotate(batch_size=2)
    # The first batch (2 values) committed; the second rolled back whole (its first value too).
    assert (under(K2), under(K1)) == (2, 3)

    monkeypatch.setattr(crypto, "rotate", real_rotate)
    out, _ = rotate(batch_size=2)
    assert "Done: 3 value(s) re-encrypted, 2 already under the first key." in out
    assert (under(K2), under(K1)) == (5, 0)
    use_keys(settings, K2)
    assert all_values() == sorted([*EXPECTED_ENV.values(), OLD_APP_SECRET, "rot-gone"])


def test_a_value_no_key_can_decrypt_stops_rotation_with_a_clear_error(settings, values_under_k1):
    use_keys(settings, K2)  # K1 removed before rotating: nothing can be read
    before = encrypted_tokens()
    with pytest.raises(CommandError) as raised:
        rotate()
    message = str(raised.value)
    first = VariableVersion.objects.exclude(value_encrypted="").order_by("pk").first()
    field = "secrets.VariableVersion.value_encrypted"
    assert f"{field} of row {first.pk} cannot be decrypted with any configured key" in message
    assert "PANDASTACK_SECRET_KEYS" in message
    for secret in [*EXPECTED_ENV.values(), OLD_APP_SECRET, K1, K2, first.value_encrypted]:
        assert secret not in message
    assert encrypted_tokens() == before


def test_decrypting_with_the_wrong_keys_fails_without_naming_the_value(settings, values_under_k1):
    use_keys(settings, K2)
    token = encrypted_tokens()[0]
    with pytest.raises(crypto.DecryptionFailed) as raised:
        crypto.decrypt(token)
    assert str(raised.value) == "a stored value cannot be decrypted with the configured keys"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_batch_size_below_one_is_refused(db):
    with pytest.raises(CommandError, match="at least 1"):
        rotate(batch_size=0)


def test_the_first_key_encrypts_and_every_key_decrypts(settings, db):
    use_keys(settings, K1)
    old = crypto.encrypt("x")
    use_keys(settings, K2, K1)
    new = crypto.encrypt("y")
    assert Fernet(K2).decrypt(new.encode()) == b"y"
    assert (crypto.decrypt(old), crypto.is_current(old), crypto.is_current(new)) == ("x", False, True)
    assert crypto.is_current(crypto.rotate(old))


# --- settings ------------------------------------------------------------------------------------
def start_production(**extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PANDASTACK_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="pandastack.settings.production",
        DJANGO_SECRET_KEY="a-production-like-secret-key-for-this-test",
        DJANGO_ALLOWED_HOSTS="panda.example.com",
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/not_used_by_this_test",
        **extra,
    )
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("keys", [None, ""], ids=["unset", "empty"])
def test_production_settings_refuse_to_start_without_keys(keys):
    result = start_production(**({} if keys is None else {"PANDASTACK_SECRET_KEYS": keys}))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "PANDASTACK_SECRET_KEYS is not set: production refuses to start" in result.stderr
    assert "started" not in result.stdout


def test_production_settings_start_with_keys():
    result = start_production(PANDASTACK_SECRET_KEYS=f"{K2},{K1}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started"
