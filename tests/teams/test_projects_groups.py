"""Projects and team groups through the API: create, list (cursor pages), read, change, delete."""

import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from apps.teams.models import Project, TeamGroup
from tests.conftest import assert_error, session_client

PROJECTS = "/api/v1/teams/alpha/projects/"
GROUPS = "/api/v1/teams/alpha/groups/"


@pytest.fixture
def owner(team_a) -> APIClient:
    return session_client(team_a.user("owner"))


# --- projects ----------------------------------------------------------------------------------
def test_create_project(team_a, owner):
    response = owner.post(PROJECTS, {"slug": "api", "name": "API", "description": "The backend"})

    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("slug", "name", "description")} == {
        "slug": "api",
        "name": "API",
        "description": "The backend",
    }
    assert Project.objects.get(team=team_a.team, slug="api").name == "API"


def test_create_project_name_defaults_to_slug(owner):
    response = owner.post(PROJECTS, {"slug": "api"})

    assert response.status_code == 201
    assert response.json()["name"] == "api"


@pytest.mark.parametrize("slug", ["Bad_Slug", "-api", "a" * 41, ""])
def test_create_project_rejects_invalid_slug(team_a, owner, slug):
    error = assert_error(owner.post(PROJECTS, {"slug": slug}), 400, "invalid")

    assert "slug" in error["fields"]
    assert Project.objects.filter(team=team_a.team).count() == 1


def test_list_projects_is_cursor_paginated_without_duplicates(team_a, team_b, owner):
    # Created directly: the free plan's quota would stop the API at 3 projects.
    for slug in ("p1", "p2", "p3", "p4"):
        Project.objects.create(team=team_a.team, slug=slug, name=slug)
    Project.objects.create(team=team_b.team, slug="elsewhere", name="Not alpha's")

    pages, url = [], f"{PROJECTS}?limit=2"
    while url:
        response = owner.get(url)
        assert response.status_code == 200
        pages.append([p["slug"] for p in response.json()["results"]])
        url = response.json()["next"]

    assert pages == [["web", "p1"], ["p2", "p3"], ["p4"]]


def test_project_detail(team_a, owner):
    response = owner.get(f"{PROJECTS}web/")

    assert response.status_code == 200
    assert response.json()["slug"] == "web"
    assert response.json()["name"] == "Web"


def test_missing_project_is_404(owner):
    assert_error(owner.get(f"{PROJECTS}nope/"), 404, "not_found")


def test_update_project(team_a, owner):
    response = owner.patch(f"{PROJECTS}web/", {"name": "Website", "description": "Marketing site"})

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Website"
    project = Project.objects.get(pk=team_a.project.pk)
    assert (project.name, project.description, project.slug) == ("Website", "Marketing site", "web")


def test_delete_project_with_confirmation(team_a, owner):
    assert owner.delete(f"{PROJECTS}web/", {"confirm": "web"}).status_code == 204

    assert not Project.objects.filter(pk=team_a.project.pk).exists()
    assert_error(owner.get(f"{PROJECTS}web/"), 404, "not_found")


@pytest.mark.parametrize("body", [{"confirm": "wrong"}, {"confirm": "WEB"}, None])
def test_delete_project_needs_the_right_confirmation(team_a, owner, body):
    error = assert_error(owner.delete(f"{PROJECTS}web/", body), 400, "invalid")

    assert "confirm" in error["fields"]
    assert Project.objects.filter(pk=team_a.project.pk).exists()


def test_duplicate_project_slug_in_the_same_team_is_rejected(team_a, owner):
    error = assert_error(owner.post(PROJECTS, {"slug": "web"}), 400, "invalid")

    assert "slug" in error["fields"]
    assert Project.objects.filter(team=team_a.team, slug="web").count() == 1


def test_same_project_slug_in_another_team_is_fine(team_a, team_b, owner):
    bravo = session_client(team_b.user("owner"))

    assert owner.post(PROJECTS, {"slug": "api"}).status_code == 201
    assert bravo.post("/api/v1/teams/bravo/projects/", {"slug": "api"}).status_code == 201
    assert Project.objects.filter(slug="api").count() == 2


# --- groups ------------------------------------------------------------------------------------
def test_group_crud_with_members(team_a, owner):
    developer, viewer, admin = (team_a.user(r) for r in ("developer", "viewer", "admin"))

    created = owner.post(GROUPS, {"slug": "data", "name": "Data team", "members": [viewer.pk, developer.pk]})
    assert created.status_code == 201, created.content
    assert created.json()["members"] == sorted([viewer.pk, developer.pk])
    assert created.json()["name"] == "Data team"

    listed = owner.get(GROUPS)
    assert [g["slug"] for g in listed.json()["results"]] == ["data"]
    assert owner.get(f"{GROUPS}data/").json()["members"] == sorted([viewer.pk, developer.pk])

    updated = owner.patch(f"{GROUPS}data/", {"name": "Analytics", "members": [admin.pk]})
    assert updated.status_code == 200, updated.content
    assert (updated.json()["name"], updated.json()["members"]) == ("Analytics", [admin.pk])
    auth_group = TeamGroup.objects.get(team=team_a.team, slug="data").group
    assert list(auth_group.user_set.values_list("pk", flat=True)) == [admin.pk]

    assert owner.delete(f"{GROUPS}data/").status_code == 204
    assert not TeamGroup.objects.filter(team=team_a.team).exists()
    assert not Group.objects.filter(pk=auth_group.pk).exists()
    assert_error(owner.get(f"{GROUPS}data/"), 404, "not_found")


def test_group_rename_keeps_members(team_a, owner):
    viewer = team_a.user("viewer")
    owner.post(GROUPS, {"slug": "data", "members": [viewer.pk]})

    response = owner.patch(f"{GROUPS}data/", {"name": "Renamed"})

    assert response.status_code == 200
    assert response.json()["members"] == [viewer.pk]


def test_group_create_rejects_non_members(team_a, team_b, owner):
    stranger = team_b.user("viewer")

    error = assert_error(
        owner.post(GROUPS, {"slug": "data", "members": [team_a.user("viewer").pk, stranger.pk]}), 400, "invalid"
    )

    assert "members" in error["fields"]
    assert not TeamGroup.objects.filter(team=team_a.team).exists()
    assert not Group.objects.exists()


def test_group_update_rejects_non_members(team_a, team_b, owner):
    viewer = team_a.user("viewer")
    owner.post(GROUPS, {"slug": "data", "members": [viewer.pk]})

    error = assert_error(owner.patch(f"{GROUPS}data/", {"members": [team_b.user("viewer").pk]}), 400, "invalid")

    assert "members" in error["fields"]
    assert list(TeamGroup.objects.get(slug="data").group.user_set.values_list("pk", flat=True)) == [viewer.pk]


def test_duplicate_group_slug_in_the_same_team_is_rejected(team_a, owner):
    assert owner.post(GROUPS, {"slug": "data"}).status_code == 201

    error = assert_error(owner.post(GROUPS, {"slug": "data"}), 400, "invalid")

    assert "slug" in error["fields"]
    assert TeamGroup.objects.filter(team=team_a.team).count() == 1
    assert Group.objects.count() == 1


def test_groups_of_another_team_are_invisible(team_a, team_b, owner):
    bravo = session_client(team_b.user("owner"))
    assert bravo.post("/api/v1/teams/bravo/groups/", {"slug": "secret"}).status_code == 201

    assert owner.get(GROUPS).json()["results"] == []
    assert_error(owner.get(f"{GROUPS}secret/"), 404, "not_found")
