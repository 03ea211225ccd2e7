"""At rest, no value is readable: the raw rows and a `dumpdata` of the tables hold ciphertext only,
and the operators' admin shows name, level and version, never a value."""

import io
import re

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse

from apps.accounts.models import User
from apps.secrets.models import Variable, VariableVersion
from apps.secrets.services import variables_set
from tests.secrets.conftest import ctx_of, scope_of

# Values of several shapes; a value that is a substring of a Fernet token's alphabet would be
# found by accident, so each is long and distinctive.
VALUES = {
    ("team", "TEAM_PLAIN", False): "team-plain-sentinel-7c1e",
    ("project", "PROJECT_SECRET", True): "postgres://user:project-secret-sentinel-4b2a@db/x",
    ("app", "APP_SECRET", True): "app secret sentinel with spaces 93fd",
    ("app", "APP_PLAIN", False): "app-plain-sentinel-11aa",
}
OLD_VALUE = "superseded-secret-sentinel-0e0e"


@pytest.fixture
def stored(team_a, app) -> dict[str, str]:
    """Every value of VALUES set through the service, plus an older version of one secret."""
    ctx = ctx_of(team_a)
    variables_set(ctx=ctx, scope=scope_of("app", team_a, app), values={"APP_SECRET": OLD_VALUE}, secret=True)
    for (level, name, secret), value in VALUES.items():
        variables_set(ctx=ctx, scope=scope_of(level, team_a, app), values={name: value}, secret=secret, restart=False)
    return {name: value for (_, name, _), value in VALUES.items()} | {"OLD": OLD_VALUE}


def raw_rows(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        return repr(cursor.fetchall())


def assert_no_value(text: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        assert value not in text, f"the value of {name} is readable"
        # Nor any long piece of it (a value cut or re-quoted by a serializer).
        assert value[:12] not in text, f"a piece of the value of {name} is readable"


def test_the_database_columns_hold_no_plaintext(stored):
    for table in ("secrets_variable", "secrets_variableversion", "deployments_deployment", "audit_auditevent"):
        assert_no_value(raw_rows(table), stored)
    # The column holds the value, encrypted with the configured key (a Fernet token per version).
    fernet = Fernet(settings.PANDASTACK_SECRET_KEYS[0])
    with connection.cursor() as cursor:
        cursor.execute("SELECT value_encrypted FROM secrets_variableversion WHERE deleted = false ORDER BY id")
        tokens = [row[0] for row in cursor.fetchall()]
    assert len(tokens) == 5
    assert all(re.fullmatch(r"gAAAAA[A-Za-z0-9_=-]+", token) for token in tokens)
    assert sorted(fernet.decrypt(token.encode()).decode() for token in tokens) == sorted(stored.values())


def test_a_dumpdata_of_the_tables_holds_no_plaintext(stored):
    out = io.StringIO()
    call_command("dumpdata", "secrets", stdout=out)
    dump = out.getvalue()
    assert '"model": "secrets.variableversion"' in dump and '"model": "secrets.variable"' in dump
    assert dump.count('"value_encrypted": "gAAAAA') == 5
    assert_no_value(dump, stored)
    everything = io.StringIO()
    call_command("dumpdata", "secrets", "audit", "deployments", "--indent", "2", stdout=everything)
    assert_no_value(everything.getvalue(), stored)


def test_str_of_variables_and_versions_never_shows_a_value(stored):
    text = " ".join(map(str, [*Variable.objects.all(), *VariableVersion.objects.all()]))
    assert_no_value(text, stored)


@pytest.fixture
def admin_client(db) -> Client:
    operator = User.objects.create_superuser(username="root", email="root@example.com", password="pw-not-used-1")
    client = Client()
    client.force_login(operator)
    return client


def test_the_admin_shows_name_level_and_version_never_a_value(stored, admin_client):
    listing = admin_client.get(reverse("admin:secrets_variable_changelist"))
    assert listing.status_code == 200
    assert_no_value(listing.content.decode(), stored)
    for name in ("APP_SECRET", "APP_PLAIN", "PROJECT_SECRET", "TEAM_PLAIN"):
        assert name in listing.content.decode()

    variable = Variable.objects.get(name="APP_SECRET")
    page = admin_client.get(reverse("admin:secrets_variable_change", args=[variable.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert_no_value(html, stored)
    assert "APP_SECRET" in html
    assert re.search(r'field-level">.*?class="readonly">App<', html, re.S), "the level is shown"
    assert re.search(r'field-version">.*?class="readonly">2<', html, re.S), "the current version (2) is shown"
    assert "gAAAAA" not in html  # not even the ciphertext
    plain = Variable.objects.get(name="APP_PLAIN")
    assert_no_value(
        admin_client.get(reverse("admin:secrets_variable_change", args=[plain.pk])).content.decode(), stored
    )


def test_the_admin_cannot_add_or_edit_variables(stored, admin_client):
    assert admin_client.get(reverse("admin:secrets_variable_add")).status_code == 403
    variable = Variable.objects.get(name="TEAM_PLAIN")
    before = (variable.name, variable.current_id)
    admin_client.post(reverse("admin:secrets_variable_change", args=[variable.pk]), {"name": "HIJACKED"})
    variable.refresh_from_db()
    assert (variable.name, variable.current_id) == before
