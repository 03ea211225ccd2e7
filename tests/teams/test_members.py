"""Members: adding people by e-mail, roles, the owner rules, ownership transfer and removal."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.teams.models import Membership, ProjectUserObjectPermission
from apps.tokens.models import ApiToken
from tests.conftest import add_member, assert_error, make_token, session_client, token_client

MEMBERS = "/api/v1/teams/alpha/members/"


@pytest.fixture
def owner(team_a) -> APIClient:
    return session_client(team_a.user("owner"))


@pytest.fixture
def admin(team_a) -> APIClient:
    return session_client(team_a.user("admin"))


def roles(team_a) -> dict[int, str]:
    return dict(Membership.objects.filter(team=team_a.team).values_list("user_id", "role"))


def owners(team_a) -> set[int]:
    return {user_id for user_id, role in roles(team_a).items() if role == "owner"}


# --- adding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("email", ["developer@bravo.example.com", "Developer@BRAVO.example.com"])
def test_add_existing_user_by_email_creates_only_a_membership(team_a, team_b, owner, email):
    existing = team_b.user("developer")
    users_before = User.objects.count()

    response = owner.post(MEMBERS, {"email": email, "role": "developer"})

    assert response.status_code == 201, response.content
    assert response.json()["user"]["id"] == existing.pk
    assert response.json()["role"] == "developer"
    assert User.objects.count() == users_before
    assert Membership.objects.get(team=team_a.team, user=existing).role == "developer"


def test_add_unknown_email_creates_an_account_without_usable_password(team_a, owner):
    response = owner.post(MEMBERS, {"email": "newcomer@example.com", "role": "viewer"})

    assert response.status_code == 201, response.content
    user = User.objects.get(email="newcomer@example.com")
    assert response.json()["user"]["id"] == user.pk
    assert not user.has_usable_password()
    assert not user.is_service_account
    assert Membership.objects.get(team=team_a.team, user=user).role == "viewer"


def test_adding_an_existing_member_again_is_a_conflict(team_a, owner):
    before = roles(team_a)

    error = assert_error(owner.post(MEMBERS, {"email": "viewer@alpha.example.com", "role": "admin"}), 409, "conflict")

    assert error["fields"] == {"email": ["Already a member."]}
    assert roles(team_a) == before


def test_change_role(team_a, owner):
    viewer = team_a.user("viewer")

    response = owner.patch(f"{MEMBERS}{viewer.pk}/", {"role": "developer"})

    assert response.status_code == 200, response.content
    assert response.json()["role"] == "developer"
    assert roles(team_a)[viewer.pk] == "developer"


# --- only owners make or unmake owners -----------------------------------------------------------
# (method, path given the user ids, body): what an admin may not do.
OWNER_CHANGES = {
    "add-owner": ("post", "", {"email": "boss@example.com", "role": "owner"}),
    "promote-to-owner": ("patch", "{viewer}/", {"role": "owner"}),
    "demote-owner": ("patch", "{owner}/", {"role": "admin"}),
    "remove-owner": ("delete", "{owner}/", None),
}


@pytest.mark.parametrize("change", list(OWNER_CHANGES))
def test_admin_cannot_make_or_unmake_owners(team_a, admin, change):
    # A second owner exists, so "last owner" is not what stops the admin.
    add_member(team_a.team, "owner", "second-owner@example.com")
    method, path, body = OWNER_CHANGES[change]
    ids = {role: user.pk for role, user in team_a.users.items()}
    before, users_before = roles(team_a), User.objects.count()

    response = getattr(admin, method)(MEMBERS + path.format(**ids), body)

    assert_error(response, 403, "permission_denied")
    assert roles(team_a) == before
    assert User.objects.count() == users_before


@pytest.mark.parametrize("change", list(OWNER_CHANGES))
def test_owner_can_make_and_unmake_owners(team_a, owner, change):
    add_member(team_a.team, "owner", "second-owner@example.com")
    method, path, body = OWNER_CHANGES[change]
    ids = {role: user.pk for role, user in team_a.users.items()}
    owners_before = owners(team_a)

    response = getattr(owner, method)(MEMBERS + path.format(**ids), body)

    assert response.status_code in (200, 201, 204), response.content
    assert len(owners(team_a)) == len(owners_before) + (1 if change in ("add-owner", "promote-to-owner") else -1)


def test_owner_token_cannot_make_owners(team_a):
    _, raw = make_token(team_a.team, team_a.user("owner"))
    viewer = team_a.user("viewer")

    response = token_client(raw).patch(f"{MEMBERS}{viewer.pk}/", {"role": "owner"})

    assert_error(response, 403, "permission_denied")
    assert roles(team_a)[viewer.pk] == "viewer"


# --- the last owner ------------------------------------------------------------------------------
LAST_OWNER_CHANGES = {"demote": ("patch", {"role": "admin"}), "remove": ("delete", None)}


@pytest.mark.parametrize("change", list(LAST_OWNER_CHANGES))
def test_last_owner_cannot_be_demoted_or_removed(team_a, owner, change):
    method, body = LAST_OWNER_CHANGES[change]
    before = roles(team_a)

    response = getattr(owner, method)(f"{MEMBERS}{team_a.user('owner').pk}/", body)

    error = assert_error(response, 409, "last_owner")
    assert "owner" in error["message"]
    assert roles(team_a) == before


@pytest.mark.parametrize("change", list(LAST_OWNER_CHANGES))
def test_owner_can_step_down_once_another_owner_exists(team_a, owner, change):
    method, body = LAST_OWNER_CHANGES[change]
    admin_user, owner_user = team_a.user("admin"), team_a.user("owner")
    assert owner.patch(f"{MEMBERS}{admin_user.pk}/", {"role": "owner"}).status_code == 200

    response = getattr(owner, method)(f"{MEMBERS}{owner_user.pk}/", body)

    assert response.status_code in (200, 204), response.content
    after = roles(team_a)
    assert after[admin_user.pk] == "owner"
    assert after.get(owner_user.pk) == ("admin" if change == "demote" else None)


# --- transfer ------------------------------------------------------------------------------------
def test_transfer_makes_target_owner_and_caller_admin(team_a, owner):
    developer, owner_user = team_a.user("developer"), team_a.user("owner")

    response = owner.post("/api/v1/teams/alpha/transfer/", {"user": developer.pk})

    assert response.status_code == 200, response.content
    assert response.json()["user"]["id"] == developer.pk
    assert response.json()["role"] == "owner"
    after = roles(team_a)
    assert after[developer.pk] == "owner"
    assert after[owner_user.pk] == "admin"


def test_transfer_to_a_non_member_is_rejected(team_a, team_b, owner):
    before = roles(team_a)

    error = assert_error(owner.post("/api/v1/teams/alpha/transfer/", {"user": team_b.user("owner").pk}), 400, "invalid")

    assert "user" in error["fields"]
    assert roles(team_a) == before


# --- removal -------------------------------------------------------------------------------------
def test_removing_a_member_removes_their_groups_grants_and_tokens_in_this_team(team_a, team_b, owner):
    person = add_member(team_a.team, "developer", "leaver@example.com")
    Membership.objects.create(team=team_b.team, user=person, role="developer")
    assert owner.post("/api/v1/teams/alpha/groups/", {"slug": "ops", "members": [person.pk]}).status_code == 201
    bravo_owner = session_client(team_b.user("owner"))
    assert bravo_owner.post("/api/v1/teams/bravo/groups/", {"slug": "ops", "members": [person.pk]}).status_code == 201
    grants = "/api/v1/teams/{team}/projects/web/grants/"
    assert owner.post(grants.format(team="alpha"), {"capability": "delete", "user": person.pk}).status_code == 201
    assert bravo_owner.post(grants.format(team="bravo"), {"capability": "delete", "user": person.pk}).status_code == 201
    alpha_token, _ = make_token(team_a.team, person)
    bravo_token, _ = make_token(team_b.team, person)

    assert owner.delete(f"{MEMBERS}{person.pk}/").status_code == 200

    assert not Membership.objects.filter(team=team_a.team, user=person).exists()
    assert list(person.groups.values_list("team_group__team__slug", flat=True)) == ["bravo"]
    assert list(
        ProjectUserObjectPermission.objects.filter(user=person).values_list("content_object__team__slug", flat=True)
    ) == ["bravo"]
    alpha_token.refresh_from_db()
    bravo_token.refresh_from_db()
    assert alpha_token.revoked_at is not None
    assert bravo_token.revoked_at is None
    assert Group.objects.filter(team_group__team=team_a.team, user=person).count() == 0
    assert ApiToken.objects.filter(user=person, revoked_at=None).count() == 1


# --- service accounts ----------------------------------------------------------------------------
def test_service_accounts_are_not_listed_as_members(team_a, owner):
    response = owner.post("/api/v1/teams/alpha/service-accounts/", {"slug": "ci", "role": "developer"})
    assert response.status_code == 201, response.content
    robot_id = response.json()["user_id"]
    assert Membership.objects.filter(team=team_a.team, user_id=robot_id).exists()

    listed = owner.get(MEMBERS)

    assert listed.status_code == 200
    assert sorted(m["user"]["id"] for m in listed.json()["results"]) == sorted(u.pk for u in team_a.users.values())
    assert_error(owner.get(f"{MEMBERS}{robot_id}/"), 404, "not_found")
