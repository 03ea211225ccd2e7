"""Service accounts: a team's robots, whose tokens keep working when the people who made them
leave, and stop at once when the account is deleted."""

import pytest

from apps.accounts.models import User
from apps.teams.models import Membership, ServiceAccount
from apps.tokens.models import ApiToken
from tests.conftest import assert_error, session_client, token_client

TEAM = "/api/v1/teams/alpha"
ACCOUNTS = f"{TEAM}/service-accounts/"


def _create_account(client, role: str = "developer") -> dict:
    response = client.post(ACCOUNTS, {"slug": "ci", "role": role, "description": "GitHub Actions"})
    assert response.status_code == 201, response.json()
    return response.json()


def _create_token_for(client, account: dict) -> str:
    response = client.post(f"{TEAM}/tokens/", {"name": "ci", "scopes": ["deploy"], "user": account["user_id"]})
    assert response.status_code == 201, response.json()
    assert response.json()["user_id"] == account["user_id"]
    return response.json()["token"]


@pytest.mark.parametrize("role", ["viewer", "developer", "admin"])
def test_admin_creates_a_service_account_with_a_role_up_to_admin(team_a, role):
    body = _create_account(session_client(team_a.user("admin")), role)

    assert body["slug"] == "ci" and body["role"] == role
    account = ServiceAccount.objects.get(team=team_a.team, slug="ci")
    assert account.user_id == body["user_id"]
    assert account.user.is_service_account and not account.user.has_usable_password()
    assert account.created_by == team_a.user("admin")
    assert Membership.objects.get(team=team_a.team, user=account.user).role == role


def test_a_service_account_cannot_be_owner(team_a):
    users_before = User.objects.count()

    response = session_client(team_a.user("owner")).post(ACCOUNTS, {"slug": "ci", "role": "owner"})

    assert "role" in assert_error(response, 400, "invalid")["fields"]
    assert not ServiceAccount.objects.exists()
    assert User.objects.count() == users_before


def test_developer_cannot_create_a_service_account(team_a):
    response = session_client(team_a.user("developer")).post(ACCOUNTS, {"slug": "ci", "role": "viewer"})

    assert_error(response, 403, "permission_denied")
    assert not ServiceAccount.objects.exists()


def test_developer_cannot_create_a_token_for_a_service_account(team_a):
    account = _create_account(session_client(team_a.user("admin")))

    response = session_client(team_a.user("developer")).post(
        f"{TEAM}/tokens/", {"name": "ci", "user": account["user_id"]}
    )

    assert_error(response, 403, "permission_denied")
    assert not ApiToken.objects.filter(user_id=account["user_id"]).exists()


def test_service_account_token_acts_as_the_account(team_a):
    admin = session_client(team_a.user("admin"))
    raw = _create_token_for(admin, _create_account(admin, "developer"))
    robot = token_client(raw)

    me = robot.get("/api/v1/me/")
    assert me.status_code == 200 and me.json()["is_service_account"] is True
    assert robot.post(f"{TEAM}/projects/", {"slug": "api"}).status_code == 201
    assert_error(robot.post(f"{TEAM}/members/", {"email": "x@example.com", "role": "viewer"}), 403)


def test_service_accounts_are_not_listed_as_members(team_a):
    admin = session_client(team_a.user("admin"))
    account = _create_account(admin)

    members = admin.get(f"{TEAM}/members/").json()["results"]

    assert account["user_id"] not in [m["user"]["id"] for m in members]
    assert len(members) == len(team_a.users)
    assert_error(admin.get(f"{TEAM}/members/{account['user_id']}/"), 404, "not_found")
    assert [a["slug"] for a in admin.get(ACCOUNTS).json()["results"]] == ["ci"]


def test_service_account_token_survives_its_creator_leaving(team_a):
    creator = team_a.user("admin")
    client = session_client(creator)
    raw = _create_token_for(client, _create_account(client))

    response = client.delete(f"{TEAM}/members/{creator.pk}/")

    assert response.status_code == 200, response.json()
    assert [t["prefix"] for t in response.json()["service_account_tokens_kept"]] == [raw[:12]]

    assert not Membership.objects.filter(team=team_a.team, user=creator).exists()
    response = token_client(raw).get(f"{TEAM}/projects/")
    assert response.status_code == 200, response.json()


def test_deleting_the_service_account_kills_its_token(team_a):
    admin = session_client(team_a.user("admin"))
    account = _create_account(admin)
    raw = _create_token_for(admin, account)
    assert token_client(raw).get(f"{TEAM}/projects/").status_code == 200

    assert admin.delete(f"{ACCOUNTS}ci/").status_code == 204

    assert_error(token_client(raw).get(f"{TEAM}/projects/"), 401, "not_authenticated")
    assert not User.objects.filter(pk=account["user_id"]).exists()
    assert not ApiToken.objects.filter(user_id=account["user_id"]).exists()
