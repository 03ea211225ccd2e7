"""The operator commands `createteam` and `createtoken`."""

import hashlib
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.accounts.models import User
from apps.teams.models import Membership, Team
from apps.tokens.models import ApiToken
from tests.conftest import make_user, token_client


def _counts() -> tuple[int, int, int]:
    return User.objects.count(), Team.objects.count(), Membership.objects.count()


def _createtoken(*args: str) -> str:
    out = StringIO()
    call_command("createtoken", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


# --- createteam -------------------------------------------------------------------------------------
def test_createteam_creates_the_owner_account_the_team_and_the_membership(db):
    call_command("createteam", "acme", "--owner", "x@example.com", stdout=StringIO(), stderr=StringIO())

    owner = User.objects.get(email="x@example.com")
    team = Team.objects.get(slug="acme")
    assert Membership.objects.get(team=team).user == owner
    assert Membership.objects.get(team=team).role == "owner"
    assert not owner.has_usable_password()


def test_createteam_reuses_an_existing_account(db):
    existing = make_user("x@example.com")

    call_command("createteam", "acme", "--owner", "X@example.com", stdout=StringIO(), stderr=StringIO())

    assert User.objects.filter(email__iexact="x@example.com").count() == 1
    assert Membership.objects.get(team__slug="acme", role="owner").user == existing


@pytest.mark.parametrize("slug", ["alpha", "Bad_Slug", "edge-", "x" * 41])
def test_createteam_refuses_a_taken_or_invalid_slug_and_writes_nothing(team_a, slug):
    before = _counts()

    with pytest.raises(CommandError):
        call_command("createteam", slug, "--owner", "new@example.com", stdout=StringIO(), stderr=StringIO())

    assert _counts() == before
    assert not User.objects.filter(email="new@example.com").exists()


# --- createtoken -------------------------------------------------------------------------------------
def test_createtoken_prints_only_a_working_token_that_is_stored_hashed(team_a):
    out = _createtoken(
        "--team", "alpha", "--user", "developer@alpha.example.com", "--name", "ci", "--scopes", "deploy,logs"
    )

    lines = out.splitlines()
    assert len(lines) == 1 and out == lines[0] + "\n"
    raw = lines[0]
    assert raw.startswith("pst_")
    token = ApiToken.objects.get(token_hash=hashlib.sha256(raw.encode()).hexdigest())
    assert token.prefix == raw[:12]
    assert token.user == team_a.user("developer")
    assert token.name == "ci"
    assert token.scopes == ["read", "deploy", "logs"]
    assert not any(raw in str(v) for v in ApiToken.objects.filter(pk=token.pk).values().get().values())

    me = token_client(raw).get("/api/v1/me/")
    assert me.status_code == 200, me.json()
    assert me.json()["id"] == team_a.user("developer").pk
    assert me.json()["token"]["team"] == "alpha"


def test_createtoken_defaults_to_read_scope_and_honours_expires_in(team_a):
    raw = _createtoken(
        "--team", "alpha", "--user", "owner@alpha.example.com", "--name", "cli", "--expires-in", "7"
    ).strip()

    token = ApiToken.objects.get(token_hash=hashlib.sha256(raw.encode()).hexdigest())
    assert token.scopes == ["read"]
    assert abs(token.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "args",
    [
        ["--team", "nope", "--user", "owner@alpha.example.com"],
        ["--team", "alpha", "--user", "nobody@example.com"],
        ["--team", "alpha", "--user", "owner@bravo.example.com"],
        ["--team", "alpha", "--user", "owner@alpha.example.com", "--scopes", "read,root"],
        ["--team", "alpha", "--user", "owner@alpha.example.com", "--expires-in", "0"],
        ["--team", "alpha", "--user", "owner@alpha.example.com", "--projects", "missing"],
    ],
    ids=["unknown-team", "unknown-user", "not-a-member", "unknown-scope", "bad-expiry", "unknown-project"],
)
def test_createtoken_refuses_bad_input_and_writes_nothing(team_a, team_b, args):
    before = ApiToken.objects.count()
    out = StringIO()

    with pytest.raises(CommandError):
        call_command("createtoken", *args, "--name", "ci", stdout=out, stderr=StringIO())

    assert out.getvalue() == ""
    assert ApiToken.objects.count() == before
