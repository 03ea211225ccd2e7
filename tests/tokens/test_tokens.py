"""API tokens over the REST API: stored hashed, refused alike when unusable, narrowed by scopes and
projects, never stronger than their user or their parent token, visible to their owner (and to
admins), and revoked when their user leaves the team."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.audit.models import AuditEvent
from apps.teams.models import Membership, Project, Team
from apps.tokens.models import ApiToken
from tests.conftest import assert_error, make_token, session_client, token_client

TEAM = "/api/v1/teams/alpha"
TOKENS = f"{TEAM}/tokens/"
PROJECTS = f"{TEAM}/projects/"
AUTH_MESSAGE = "Invalid or expired token."


def _results(response) -> list[dict]:
    assert response.status_code == 200, response.json()
    return response.json()["results"]


def _assert_refused(response) -> None:
    error = assert_error(response, 401, "not_authenticated")
    assert error["message"] == AUTH_MESSAGE
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


# --- stored hashed, shown once --------------------------------------------------------------------
def test_only_the_hash_is_stored_and_the_raw_token_is_shown_once(team_a):
    client = session_client(team_a.user("developer"))
    response = client.post(TOKENS, {"name": "ci", "scopes": ["deploy"]})

    assert response.status_code == 201, response.json()
    raw = response.json()["token"]
    assert raw.startswith("pst_")
    row = ApiToken.objects.get(pk=response.json()["id"])
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert row.prefix == raw[:12]
    stored = ApiToken.objects.filter(pk=row.pk).values().get()
    assert not any(raw in str(value) for value in stored.values())

    listed = client.get(TOKENS)
    detail = client.get(f"{TOKENS}{row.pk}/")
    for response in (listed, detail):
        assert response.status_code == 200
        assert raw not in response.content.decode()
        assert row.token_hash not in response.content.decode()
    assert "token" not in _results(listed)[0]
    assert "token" not in detail.json()
    assert detail.json()["prefix"] == raw[:12]


# --- unusable tokens: 401, one message ----------------------------------------------------------------
def _expired(world) -> str:
    token, raw = make_token(world.team, world.user("developer"))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return raw


def _revoked_with(method: str):
    def build(world) -> str:
        token, raw = make_token(world.team, world.user("developer"))
        path = f"{TOKENS}{token.pk}/revoke/" if method == "post" else f"{TOKENS}{token.pk}/"
        response = getattr(session_client(world.user("developer")), method)(path)
        assert response.status_code == 200, response.json()
        return raw

    return build


def _inactive_user(world) -> str:
    user = world.user("developer")
    _, raw = make_token(world.team, user)
    user.is_active = False
    user.save(update_fields=["is_active"])
    return raw


@pytest.mark.parametrize(
    "make_header",
    [
        pytest.param(lambda w: f"Bearer {_expired(w)}", id="expired"),
        pytest.param(lambda w: f"Bearer {_revoked_with('post')(w)}", id="revoked-post"),
        pytest.param(lambda w: f"Bearer {_revoked_with('delete')(w)}", id="revoked-delete"),
        pytest.param(lambda w: f"Bearer {_inactive_user(w)}", id="inactive-user"),
        pytest.param(lambda w: "Bearer pst_" + "x" * 40, id="unknown"),
        pytest.param(lambda w: "Bearer", id="malformed-no-token"),
        pytest.param(lambda w: "Bearer abc123", id="malformed-no-prefix"),
        pytest.param(lambda w: "Bearer pst_a pst_b", id="malformed-two-parts"),
    ],
)
def test_unusable_tokens_are_refused_with_401_and_the_same_message(team_a, make_header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=make_header(team_a))

    _assert_refused(client.get(PROJECTS))
    _assert_refused(client.get("/api/v1/me/"))


# --- scopes -----------------------------------------------------------------------------------
def test_read_only_token_cannot_create_a_project(team_a):
    _, raw = make_token(team_a.team, team_a.user("owner"), scopes=["read"])

    response = token_client(raw).post(PROJECTS, {"slug": "api"})

    assert_error(response, 403, "permission_denied")
    assert not Project.objects.filter(slug="api").exists()
    assert not AuditEvent.objects.filter(action="project.create").exists()


def test_deploy_scope_token_can_create_a_project(team_a):
    _, raw = make_token(team_a.team, team_a.user("developer"), scopes=["deploy"])

    response = token_client(raw).post(PROJECTS, {"slug": "api"})

    assert response.status_code == 201, response.json()
    assert Project.objects.filter(team=team_a.team, slug="api").exists()


def test_token_without_admin_scope_cannot_create_tokens(team_a):
    scopes = ["read", "deploy", "logs", "secrets", "infra"]
    _, raw = make_token(team_a.team, team_a.user("owner"), scopes=scopes)
    before = ApiToken.objects.count()

    response = token_client(raw).post(TOKENS, {"name": "child", "scopes": ["read"]})

    assert_error(response, 403, "permission_denied")
    assert ApiToken.objects.count() == before


# --- projects -------------------------------------------------------------------------------------
def test_project_limited_token_sees_and_changes_only_its_projects(team_a):
    Project.objects.create(team=team_a.team, slug="api", name="API")
    _, raw = make_token(team_a.team, team_a.user("owner"), projects=["web"])
    client = token_client(raw)

    assert [p["slug"] for p in _results(client.get(PROJECTS))] == ["web"]
    assert client.get(f"{PROJECTS}web/").status_code == 200
    assert_error(client.get(f"{PROJECTS}api/"), 404, "not_found")
    assert client.patch(f"{PROJECTS}web/", {"name": "Website"}).status_code == 200
    assert_error(client.patch(f"{PROJECTS}api/", {"name": "X"}), 404, "not_found")
    assert_error(client.post(PROJECTS, {"slug": "new"}), 403, "permission_denied")
    assert not Project.objects.filter(slug="new").exists()


# --- a token is never stronger than its user ------------------------------------------------------
def test_viewer_token_with_all_scopes_cannot_create_a_project(team_a):
    _, raw = make_token(team_a.team, team_a.user("viewer"))

    assert_error(token_client(raw).post(PROJECTS, {"slug": "api"}), 403, "permission_denied")
    assert not Project.objects.filter(slug="api").exists()


def test_developer_token_with_admin_scope_cannot_add_members(team_a):
    _, raw = make_token(team_a.team, team_a.user("developer"), scopes=["admin"])

    response = token_client(raw).post(f"{TEAM}/members/", {"email": "new@example.com", "role": "viewer"})

    assert_error(response, 403, "permission_denied")
    assert not Membership.objects.filter(user__email="new@example.com").exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("delete", "/", lambda w: {"confirm": "alpha"}),
        ("patch", "/", lambda w: {"name": "Renamed"}),
        ("post", "/transfer/", lambda w: {"user": w.user("admin").pk}),
    ],
    ids=["delete-team", "rename-team", "transfer-ownership"],
)
def test_manage_team_is_impossible_with_any_token_even_the_owners(team_a, method, path, body):
    _, raw = make_token(team_a.team, team_a.user("owner"))

    response = getattr(token_client(raw), method)(f"{TEAM}{path}", body(team_a))

    assert_error(response, 403, "permission_denied")
    team = Team.objects.get(slug="alpha")
    assert team.name == "Alpha"
    roles = dict(Membership.objects.filter(team=team).values_list("user_id", "role"))
    assert roles[team_a.user("owner").pk] == "owner"
    assert roles[team_a.user("admin").pk] == "admin"


# --- tokens made with tokens ----------------------------------------------------------------------
def test_token_cannot_create_a_token_with_scopes_it_lacks(team_a):
    _, raw = make_token(team_a.team, team_a.user("owner"), scopes=["admin", "deploy"])
    before = ApiToken.objects.count()

    response = token_client(raw).post(TOKENS, {"name": "child", "scopes": ["infra"]})

    assert_error(response, 403, "permission_denied")
    assert ApiToken.objects.count() == before


@pytest.mark.parametrize("child_projects", [[], ["api"], ["web", "api"]], ids=["team-wide", "other", "wider"])
def test_project_limited_token_cannot_create_a_token_beyond_its_projects(team_a, child_projects):
    Project.objects.create(team=team_a.team, slug="api", name="API")
    _, raw = make_token(team_a.team, team_a.user("owner"), scopes=["admin"], projects=["web"])
    before = ApiToken.objects.count()

    response = token_client(raw).post(TOKENS, {"name": "child", "projects": child_projects})

    assert_error(response, 403, "permission_denied")
    assert ApiToken.objects.count() == before


def test_token_can_create_a_narrower_token_that_does_not_outlive_it(team_a):
    parent, raw = make_token(
        team_a.team, team_a.user("owner"), scopes=["admin", "deploy"], projects=["web"], expires_in_days=5
    )

    response = token_client(raw).post(
        TOKENS, {"name": "child", "scopes": ["deploy"], "projects": ["web"], "expires_in_days": 90}
    )

    assert response.status_code == 201, response.json()
    child = ApiToken.objects.get(pk=response.json()["id"])
    assert child.expires_at == parent.expires_at
    assert child.scopes == ["read", "deploy"]
    assert child.project_ids == {team_a.project.pk}


# --- who sees and revokes which tokens ------------------------------------------------------------
@pytest.fixture
def tokens_by_role(team_a, team_b) -> dict[str, ApiToken]:
    make_token(team_b.team, team_b.user("owner"), name="other team")
    return {role: make_token(team_a.team, user, name=role)[0] for role, user in team_a.users.items()}


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_members_list_only_their_own_tokens(team_a, tokens_by_role, role):
    listed = _results(session_client(team_a.user(role)).get(TOKENS))

    assert [t["id"] for t in listed] == [tokens_by_role[role].pk]


@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_list_all_the_teams_tokens(team_a, tokens_by_role, role):
    listed = _results(session_client(team_a.user(role)).get(TOKENS))

    assert sorted(t["id"] for t in listed) == sorted(t.pk for t in tokens_by_role.values())


def test_admin_token_without_admin_scope_lists_only_its_users_tokens(team_a, tokens_by_role):
    token, raw = make_token(team_a.team, team_a.user("admin"), scopes=["deploy"])

    listed = _results(token_client(raw).get(TOKENS))

    assert sorted(t["id"] for t in listed) == sorted([tokens_by_role["admin"].pk, token.pk])


@pytest.mark.parametrize("method", ["post", "delete"])
def test_developer_cannot_see_or_revoke_another_members_token(team_a, tokens_by_role, method):
    target = tokens_by_role["viewer"]
    client = session_client(team_a.user("developer"))
    path = f"{TOKENS}{target.pk}/revoke/" if method == "post" else f"{TOKENS}{target.pk}/"

    assert_error(getattr(client, method)(path), 404, "not_found")
    assert_error(client.get(f"{TOKENS}{target.pk}/"), 404, "not_found")
    target.refresh_from_db()
    assert target.revoked_at is None


def test_admin_can_revoke_anyones_token(team_a, tokens_by_role):
    target = tokens_by_role["owner"]

    response = session_client(team_a.user("admin")).post(f"{TOKENS}{target.pk}/revoke/")

    assert response.status_code == 200, response.json()
    assert response.json()["active"] is False
    target.refresh_from_db()
    assert target.revoked_at is not None


# --- input validation -----------------------------------------------------------------------------
def test_expiry_defaults_to_90_days(team_a):
    response = session_client(team_a.user("developer")).post(TOKENS, {"name": "ci"})

    assert response.status_code == 201, response.json()
    expires_at = ApiToken.objects.get(pk=response.json()["id"]).expires_at
    assert abs(expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)


@pytest.mark.parametrize("days", [1, 365])
def test_expiry_bounds_are_accepted(team_a, days):
    response = session_client(team_a.user("developer")).post(TOKENS, {"name": "ci", "expires_in_days": days})

    assert response.status_code == 201, response.json()
    expires_at = ApiToken.objects.get(pk=response.json()["id"]).expires_at
    assert abs(expires_at - (timezone.now() + timedelta(days=days))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 366}, "expires_in_days"),
        ({"scopes": ["read", "root"]}, "scopes"),
    ],
    ids=["expiry-0", "expiry-366", "unknown-scope"],
)
def test_invalid_token_input_is_a_400_naming_the_field(team_a, body, field):
    before = ApiToken.objects.count()

    response = session_client(team_a.user("developer")).post(TOKENS, {"name": "ci", **body})

    error = assert_error(response, 400, "invalid")
    assert field in error["fields"]
    assert ApiToken.objects.count() == before


# --- usage and membership -------------------------------------------------------------------------
def test_last_used_time_and_address_are_recorded_on_use(team_a):
    token, raw = make_token(team_a.team, team_a.user("developer"))
    assert token.last_used_at is None and token.last_used_ip is None

    assert token_client(raw).get(PROJECTS).status_code == 200

    token.refresh_from_db()
    assert abs(timezone.now() - token.last_used_at) < timedelta(minutes=1)
    assert token.last_used_ip == "127.0.0.1"


def test_removing_a_member_revokes_their_tokens_in_that_team_only(team_a, team_b):
    leaver = team_a.user("developer")
    Membership.objects.create(team=team_b.team, user=leaver, role="developer")
    _, raw_a = make_token(team_a.team, leaver)
    _, raw_b = make_token(team_b.team, leaver)

    response = session_client(team_a.user("admin")).delete(f"{TEAM}/members/{leaver.pk}/")

    assert response.status_code == 200, response.json()
    assert [t["prefix"] for t in response.json()["tokens_revoked"]] == [raw_a[:12]]
    assert not ApiToken.objects.filter(team=team_a.team, user=leaver, revoked_at=None).exists()
    _assert_refused(token_client(raw_a).get(PROJECTS))
    assert token_client(raw_b).get("/api/v1/teams/bravo/projects/").status_code == 200


# --- a token revoking its user's other tokens ------------------------------------------------------
def test_a_token_revokes_its_users_narrower_tokens_but_not_wider_ones(team_a):
    developer = team_a.user("developer")
    wide, wide_raw = make_token(team_a.team, developer, scopes=["deploy", "logs"], name="wide")
    narrow, narrow_raw = make_token(team_a.team, developer, scopes=["read"], name="narrow")

    refused = token_client(narrow_raw).post(f"{TOKENS}{wide.pk}/revoke/")
    allowed = token_client(wide_raw).post(f"{TOKENS}{narrow.pk}/revoke/")

    assert_error(refused, 403, "permission_denied")
    assert allowed.status_code == 200, allowed.json()
    wide.refresh_from_db()
    narrow.refresh_from_db()
    assert wide.revoked_at is None
    assert narrow.revoked_at is not None


def test_a_person_signed_in_revokes_any_of_their_own_tokens(team_a):
    token, _ = make_token(team_a.team, team_a.user("viewer"))

    response = session_client(team_a.user("viewer")).post(f"{TOKENS}{token.pk}/revoke/")

    assert response.status_code == 200, response.json()
