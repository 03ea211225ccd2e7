"""Attacks on API tokens through the real API with real tokens (issue 11, item 6): tokens cannot
outlive or outrank the people who make them.

- Nobody mints a token that acts as another person, not even an owner or admin: only a service
  account's tokens are made by someone else.
- A read-only, project-limited or otherwise narrower token cannot revoke the team's CI token
  (revoking someone else's token, or a wider sibling, takes the admin capability).
- Removing a member revokes their tokens and the tokens they minted at once; tokens they made for
  service accounts are kept for CI but listed in the response and the audit log (or revoked on
  request), so whoever removes a departing admin knows what that admin could still hold.

Before the fix: the admin minted tokens for other members (201), a service account's read-only
token revoked the same account's CI token (200, CI dead), and a removal answered 204 with nothing
listed anywhere."""

from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.tokens.models import ApiToken
from tests.conftest import TeamWorld, assert_error, make_token, session_client, token_client

TEAM = "/api/v1/teams/alpha"
TOKENS = f"{TEAM}/tokens/"
PROJECTS = f"{TEAM}/projects/"


def _service_account(world: TeamWorld, slug: str = "ci", role: str = "developer") -> dict[str, Any]:
    response = session_client(world.user("admin")).post(f"{TEAM}/service-accounts/", {"slug": slug, "role": role})
    assert response.status_code == 201, response.json()
    return response.json()


def _mint(client: Any, **body: Any) -> dict[str, Any]:
    response = client.post(TOKENS, {"name": "t", **body}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _assert_works(raw: str) -> None:
    response = token_client(raw).get(PROJECTS)
    assert response.status_code == 200, response.json()


@pytest.fixture
def ci(team_a: TeamWorld) -> dict[str, Any]:
    """A service account "ci" with the team's CI token (deploy), made by the owner."""
    account = _service_account(team_a)
    token = _mint(session_client(team_a.user("owner")), name="github-actions", scopes=["deploy"],
                  user=account["user_id"])  # fmt: skip
    _assert_works(token["token"])
    return {"account": account, "token": token}


# --- revoking the team's CI token ------------------------------------------------------------------
def _read_only_token_of_the_same_service_account(world: TeamWorld, ci: dict[str, Any]) -> str:
    # E.g. a dashboard's token: read-only, for the same robot.
    return _mint(session_client(world.user("admin")), name="dashboard", user=ci["account"]["user_id"])["token"]


def _viewers_token(world: TeamWorld, ci: dict[str, Any]) -> str:
    return make_token(world.team, world.user("viewer"))[1]


def _admins_read_only_token(world: TeamWorld, ci: dict[str, Any]) -> str:
    return make_token(world.team, world.user("admin"), scopes=["read"])[1]


def _admins_project_limited_admin_token(world: TeamWorld, ci: dict[str, Any]) -> str:
    return make_token(world.team, world.user("admin"), scopes=["admin"], projects=["web"])[1]


def _developers_token(world: TeamWorld, ci: dict[str, Any]) -> str:
    return make_token(world.team, world.user("developer"))[1]


@pytest.mark.parametrize(
    "attacker",
    [
        _read_only_token_of_the_same_service_account,
        _viewers_token,
        _admins_read_only_token,
        _admins_project_limited_admin_token,
        _developers_token,
    ],
    ids=["sa-read-only", "viewer", "admin-read-only", "admin-project-limited", "developer"],
)
@pytest.mark.parametrize("method", ["post", "delete"])
def test_a_narrower_token_cannot_revoke_the_teams_ci_token(team_a, ci, attacker, method):
    raw = attacker(team_a, ci)
    target = ci["token"]["id"]
    path = f"{TOKENS}{target}/revoke/" if method == "post" else f"{TOKENS}{target}/"
    before = AuditEvent.objects.filter(action="token.revoke").count()

    response = getattr(token_client(raw), method)(path)

    # 403 when the attacker can see the token (the same robot's), 404 when it cannot even see it.
    assert response.status_code in (403, 404), response.json()
    assert_error(response, response.status_code)
    assert ApiToken.objects.get(pk=target).revoked_at is None
    assert AuditEvent.objects.filter(action="token.revoke").count() == before
    _assert_works(ci["token"]["token"])


def test_a_token_may_still_revoke_itself_and_an_admin_token_may_revoke_ci(team_a, ci):
    dashboard = _read_only_token_of_the_same_service_account(team_a, ci)
    me = ApiToken.objects.get(prefix=dashboard[:12])

    assert token_client(dashboard).post(f"{TOKENS}{me.pk}/revoke/").status_code == 200
    assert_error(token_client(dashboard).get(PROJECTS), 401, "not_authenticated")

    _, admin_raw = make_token(team_a.team, team_a.user("admin"), scopes=["admin"])
    response = token_client(admin_raw).post(f"{TOKENS}{ci['token']['id']}/revoke/")
    assert response.status_code == 200, response.json()
    assert_error(token_client(ci["token"]["token"]).get(PROJECTS), 401, "not_authenticated")


# --- minting tokens for others ---------------------------------------------------------------------
@pytest.mark.parametrize(("maker", "victim"), [("admin", "developer"), ("admin", "owner"), ("owner", "admin")])
@pytest.mark.parametrize("via", ["session", "admin-token"])
def test_nobody_mints_a_token_for_another_person(team_a, maker, victim, via):
    if via == "session":
        client = session_client(team_a.user(maker))
    else:
        client = token_client(make_token(team_a.team, team_a.user(maker), scopes=["admin", "deploy"])[1])
    victim_user = team_a.user(victim)
    before = ApiToken.objects.filter(user=victim_user).count()

    response = client.post(TOKENS, {"name": "impersonate", "scopes": ["deploy"], "user": victim_user.pk}, format="json")

    error = assert_error(response, 403, "permission_denied")
    assert "user" in error["fields"]
    assert ApiToken.objects.filter(user=victim_user).count() == before
    assert not AuditEvent.objects.filter(action="token.create", data__user=victim_user.pk).exists()


def test_a_token_minted_for_a_service_account_is_no_wider_than_its_maker(team_a, ci):
    parent, raw = make_token(team_a.team, team_a.user("admin"), scopes=["admin", "deploy"], expires_in_days=3)
    _, limited = make_token(team_a.team, team_a.user("admin"), scopes=["admin", "deploy"], projects=["web"])
    account = ci["account"]["user_id"]
    before = ApiToken.objects.count()

    wider = token_client(raw).post(TOKENS, {"name": "x", "scopes": ["infra"], "user": account}, format="json")
    from_limited = token_client(limited).post(
        TOKENS, {"name": "x", "scopes": ["deploy"], "projects": ["web"], "user": account}, format="json"
    )

    assert_error(wider, 403, "permission_denied")
    assert_error(from_limited, 403, "permission_denied")  # a robot's tokens are a team-wide matter
    assert ApiToken.objects.count() == before
    child = _mint(token_client(raw), scopes=["deploy"], expires_in_days=90, user=account)
    stored = ApiToken.objects.get(pk=child["id"])
    assert stored.expires_at == parent.expires_at
    assert stored.scope_set == {"read", "deploy"}


# --- removal ------------------------------------------------------------------------------------------
@pytest.fixture
def departing_admin(team_a: TeamWorld, ci: dict[str, Any]) -> dict[str, Any]:
    """An admin about to be removed, holding their own token, a token they minted for the CI robot
    (kept in a drawer), and one minted (before the fix) for another person."""
    admin = team_a.user("admin")
    own = make_token(team_a.team, admin, name="laptop")[1]
    drawer = _mint(session_client(admin), name="drawer", scopes=["deploy"], user=ci["account"]["user_id"])
    legacy, legacy_raw = make_token(team_a.team, team_a.user("developer"), name="minted-for-dev")
    ApiToken.objects.filter(pk=legacy.pk).update(created_by=admin)
    for raw in (own, drawer["token"], legacy_raw):
        _assert_works(raw)
    return {"user": admin, "own": own, "drawer": drawer, "legacy": legacy_raw, "ci": ci["token"]}


def test_removing_a_member_revokes_their_tokens_at_once_and_lists_the_robot_tokens_they_made(
    team_a, departing_admin
):
    admin = departing_admin["user"]

    response = session_client(team_a.user("owner")).delete(f"{TEAM}/members/{admin.pk}/")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert sorted(t["prefix"] for t in body["tokens_revoked"]) == sorted(
        [departing_admin["own"][:12], departing_admin["legacy"][:12]]
    )
    assert [t["prefix"] for t in body["service_account_tokens_kept"]] == [departing_admin["drawer"]["prefix"]]
    assert_error(token_client(departing_admin["own"]).get(PROJECTS), 401, "not_authenticated")
    assert_error(token_client(departing_admin["legacy"]).get(PROJECTS), 401, "not_authenticated")
    _assert_works(departing_admin["drawer"]["token"])  # kept for CI, and listed:
    _assert_works(departing_admin["ci"]["token"])  # made by someone else: untouched
    event = AuditEvent.objects.get(action="member.remove", data__user=admin.pk)
    assert event.data["service_account_tokens_kept"] == body["service_account_tokens_kept"]
    assert event.data["tokens_revoked"] == body["tokens_revoked"]


def test_removal_can_revoke_the_robot_tokens_the_member_made_too(team_a, departing_admin):
    admin = departing_admin["user"]

    response = session_client(team_a.user("owner")).delete(
        f"{TEAM}/members/{admin.pk}/", {"revoke_service_account_tokens": True}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert response.json()["service_account_tokens_kept"] == []
    for raw in (departing_admin["own"], departing_admin["legacy"], departing_admin["drawer"]["token"]):
        assert_error(token_client(raw).get(PROJECTS), 401, "not_authenticated")
    assert not ApiToken.objects.filter(created_by=admin, revoked_at=None).exists()
    _assert_works(departing_admin["ci"]["token"])  # made by the owner: untouched
