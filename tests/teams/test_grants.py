"""Object grants: a member or a team group gets one capability on one project, beyond their role."""

import pytest
from rest_framework.test import APIClient

from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.core.capabilities import Capability
from apps.core.errors import ValidationFailed
from apps.teams.models import (
    Membership,
    Project,
    ProjectGroupObjectPermission,
    ProjectUserObjectPermission,
)
from apps.teams.services import grant_create
from tests.conftest import ALL_SCOPES, add_member, assert_error, make_token, session_client, token_client

GRANTS = "/api/v1/teams/alpha/projects/{project}/grants/"


@pytest.fixture
def api_project(team_a) -> Project:
    return Project.objects.create(team=team_a.team, slug="api", name="API")


@pytest.fixture
def owner(team_a) -> APIClient:
    return session_client(team_a.user("owner"))


def grant(owner: APIClient, project: str = "web", **body: object) -> dict:
    response = owner.post(GRANTS.format(project=project), body)
    assert response.status_code == 201, response.content
    return response.json()


def client_get(client: APIClient, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200, response.content
    return response.json()


def rename(client: APIClient, project: str, team: str = "alpha") -> int:
    return client.patch(f"/api/v1/teams/{team}/projects/{project}/", {"name": "Renamed"}).status_code


def test_user_grant_of_manage_apps_covers_that_project_only_until_revoked(team_a, owner, api_project):
    viewer = team_a.user("viewer")
    client = session_client(viewer)
    assert rename(client, "web") == 403

    row = grant(owner, capability="manage_apps", user=viewer.pk)
    assert row["id"].startswith("user-")

    assert rename(client, "web") == 200
    assert_error(client.patch("/api/v1/teams/alpha/projects/api/", {"name": "X"}), 403, "permission_denied")

    assert owner.delete(GRANTS.format(project="web") + f"{row['id']}/").status_code == 204
    assert rename(client, "web") == 403
    assert not ProjectUserObjectPermission.objects.filter(user=viewer).exists()


def test_group_grant_covers_members_until_they_leave_the_group(team_a, owner, api_project):
    viewer = team_a.user("viewer")
    client = session_client(viewer)
    assert owner.post("/api/v1/teams/alpha/groups/", {"slug": "web-team", "members": [viewer.pk]}).status_code == 201

    row = grant(owner, capability="manage_apps", group="web-team")
    assert row["id"].startswith("group-")
    assert row["group"] == "web-team"

    assert rename(client, "web") == 200
    assert rename(client, "api") == 403

    assert owner.patch("/api/v1/teams/alpha/groups/web-team/", {"members": []}).status_code == 200
    assert rename(client, "web") == 403
    # The grant itself stays on the group.
    assert ProjectGroupObjectPermission.objects.filter(content_object=team_a.project).count() == 1


def test_grant_list_shows_user_and_group_grants(team_a, owner):
    viewer, developer = team_a.user("viewer"), team_a.user("developer")
    owner.post("/api/v1/teams/alpha/groups/", {"slug": "data", "members": [developer.pk]})
    user_grant = grant(owner, capability="deploy", user=viewer.pk)
    group_grant = grant(owner, capability="delete", group="data")

    response = client_get(owner, GRANTS.format(project="web"))

    user_row = ProjectUserObjectPermission.objects.get()
    group_row = ProjectGroupObjectPermission.objects.get()
    assert [r["id"] for r in response["results"]] == [f"user-{user_row.pk}", f"group-{group_row.pk}"]
    assert [user_grant["id"], group_grant["id"]] == [f"user-{user_row.pk}", f"group-{group_row.pk}"]
    by_id = {r["id"]: r for r in response["results"]}
    assert by_id[user_grant["id"]]["user"]["id"] == viewer.pk
    assert by_id[user_grant["id"]]["group"] is None
    assert by_id[user_grant["id"]]["capability"] == "deploy"
    assert by_id[group_grant["id"]]["user"] is None
    assert by_id[group_grant["id"]]["group"] == "data"
    assert by_id[group_grant["id"]]["capability"] == "delete"
    # A single grant reads back the same, also for a viewer (grants are visible to the team).
    viewer_view = client_get(session_client(viewer), GRANTS.format(project="web") + f"{group_grant['id']}/")
    assert viewer_view == by_id[group_grant["id"]]


def test_delete_grant_lets_a_developer_delete_exactly_that_project(team_a, owner, api_project):
    client = session_client(team_a.user("developer"))
    grant(owner, capability="delete", user=team_a.user("developer").pk)

    assert_error(client.delete("/api/v1/teams/alpha/projects/api/", {"confirm": "api"}), 403, "permission_denied")
    assert client.delete("/api/v1/teams/alpha/projects/web/", {"confirm": "web"}).status_code == 204
    assert list(Project.objects.filter(team=team_a.team).values_list("slug", flat=True)) == ["api"]


def test_grant_to_a_non_member_is_rejected(team_a, team_b, owner):
    error = assert_error(
        owner.post(GRANTS.format(project="web"), {"capability": "deploy", "user": team_b.user("viewer").pk}),
        400,
        "invalid",
    )
    assert "user" in error["fields"]
    assert not ProjectUserObjectPermission.objects.exists()


def test_grant_to_a_group_of_another_team_is_rejected(team_a, team_b, owner):
    bravo_owner = session_client(team_b.user("owner"))
    assert bravo_owner.post("/api/v1/teams/bravo/groups/", {"slug": "ops"}).status_code == 201

    error = assert_error(owner.post(GRANTS.format(project="web"), {"capability": "deploy", "group": "ops"}), 400)
    assert "group" in error["fields"]
    assert not ProjectGroupObjectPermission.objects.exists()


@pytest.mark.parametrize("capability", ["manage_members", "manage_team"])
def test_non_grantable_capability_is_rejected(team_a, owner, capability):
    error = assert_error(
        owner.post(GRANTS.format(project="web"), {"capability": capability, "user": team_a.user("viewer").pk}),
        400,
        "invalid",
    )
    assert "capability" in error["fields"]
    assert not ProjectUserObjectPermission.objects.exists()


@pytest.mark.parametrize("capability", [Capability.MANAGE_MEMBERS, Capability.MANAGE_TEAM])
def test_grant_service_refuses_non_grantable_capability(team_a, capability):
    ctx = resolve_team(Actor(user=team_a.user("owner")), "alpha")
    with pytest.raises(ValidationFailed, match="cannot be granted"):
        grant_create(
            ctx=ctx, obj=team_a.project, capability=capability, user_id=team_a.user("viewer").pk, group_slug=None
        )
    assert not ProjectUserObjectPermission.objects.exists()


def test_granting_twice_is_idempotent(team_a, owner):
    body = {"capability": "deploy", "user": team_a.user("viewer").pk}
    first = owner.post(GRANTS.format(project="web"), body)
    second = owner.post(GRANTS.format(project="web"), body)

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert ProjectUserObjectPermission.objects.count() == 1


def test_grant_in_team_a_does_nothing_for_team_b(team_a, team_b, owner):
    person = add_member(team_a.team, "viewer", "both@example.com")
    Membership.objects.create(team=team_b.team, user=person, role="viewer")
    grant(owner, capability="manage_apps", user=person.pk)
    client = session_client(person)

    assert rename(client, "web", team="alpha") == 200
    assert rename(client, "web", team="bravo") == 403
    bravo = resolve_team(Actor(user=person), "bravo")
    assert not bravo.restrict(Project.objects.all(), Capability.MANAGE_APPS).exists()


def test_removing_the_member_deletes_their_grants(team_a, owner, api_project):
    viewer = team_a.user("viewer")
    grant(owner, capability="deploy", user=viewer.pk)
    grant(owner, project="api", capability="manage_apps", user=viewer.pk)
    grant(owner, capability="deploy", user=team_a.user("developer").pk)

    assert owner.delete(f"/api/v1/teams/alpha/members/{viewer.pk}/").status_code == 200

    assert not ProjectUserObjectPermission.objects.filter(user=viewer).exists()
    assert ProjectUserObjectPermission.objects.filter(user=team_a.user("developer")).count() == 1


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        (["deploy"], 200),
        ([s for s in ALL_SCOPES if s != "deploy"], 403),
    ],
)
def test_token_scopes_still_bound_a_grant(team_a, owner, scopes, status):
    viewer = team_a.user("viewer")
    grant(owner, capability="manage_apps", user=viewer.pk)
    _, raw = make_token(team_a.team, viewer, scopes=scopes)

    assert rename(token_client(raw), "web") == status


def test_project_limited_token_cannot_use_a_grant_outside_its_projects(team_a, owner, api_project):
    viewer = team_a.user("viewer")
    grant(owner, capability="manage_apps", user=viewer.pk)
    grant(owner, project="api", capability="manage_apps", user=viewer.pk)
    _, raw = make_token(team_a.team, viewer, scopes=ALL_SCOPES, projects=["api"])
    client = token_client(raw)

    assert rename(client, "api") == 200
    assert rename(client, "web") == 404  # outside the token's projects: not even visible


def test_restrict_returns_exactly_the_granted_projects_for_a_viewer(team_a, owner, api_project):
    Project.objects.create(team=team_a.team, slug="db", name="DB")
    viewer = team_a.user("viewer")
    grant(owner, capability="manage_apps", user=viewer.pk)
    owner.post("/api/v1/teams/alpha/groups/", {"slug": "dbas", "members": [viewer.pk]})
    grant(owner, project="db", capability="manage_apps", group="dbas")
    grant(owner, project="api", capability="deploy", user=viewer.pk)  # another capability

    ctx = resolve_team(Actor(user=viewer), "alpha")
    restricted = ctx.restrict(Project.objects.all(), Capability.MANAGE_APPS)

    assert sorted(restricted.values_list("slug", flat=True)) == ["db", "web"]
    assert sorted(ctx.restrict(Project.objects.all()).values_list("slug", flat=True)) == ["api", "db", "web"]
