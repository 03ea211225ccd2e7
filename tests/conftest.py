"""Shared fixtures: teams with members of every role, tokens, and API clients that authenticate
the way real callers do (a Bearer token, or a signed-in session)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.core.actors import Actor
from apps.core.capabilities import Role
from apps.teams.models import Membership, Project, Team
from apps.teams.services import team_create
from apps.tokens.models import ApiToken
from apps.tokens.services import token_create

# The real services (Docker Engine, the platform's HAProxy and Celery worker, the tests' own database
# servers) are session fixtures defined once, here, for every directory. A session fixture imported
# into a test module or a directory's conftest becomes a second, separate fixture there: a second
# worker on the same queue with another router's settings. So tests use them by name, never by import.
pytest_plugins = [
    "tests.support.engine_fixtures",
    "tests.support.platform_fixtures",
    "tests.support.database_fixtures",
    "tests.support.registry_fixtures",
]

ALL_SCOPES = ["read", "deploy", "logs", "secrets", "infra", "admin"]


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    # Throttle counters live in the cache (Redis in CI); each test starts with a fresh budget.
    cache.clear()


@dataclass
class TeamWorld:
    team: Team
    users: dict[str, User]  # role -> user
    project: Project

    def user(self, role: str = "owner") -> User:
        return self.users[role]


def make_user(email: str) -> User:
    return User.objects.create_user(username=email, email=email, password="pw-not-used-1")


def add_member(team: Team, role: str, email: str | None = None) -> User:
    user = make_user(email or f"{role}-{team.slug}-{User.objects.count()}@example.com")
    Membership.objects.create(team=team, user=user, role=role)
    return user


def make_team(slug: str) -> TeamWorld:
    owner = make_user(f"owner@{slug}.example.com")
    team = team_create(actor=Actor.system("test"), slug=slug, name=slug.title(), owner=owner)
    users = {"owner": owner}
    for role in (Role.ADMIN, Role.DEVELOPER, Role.VIEWER):
        users[role.value] = add_member(team, role.value, f"{role.value}@{slug}.example.com")
    project = Project.objects.create(team=team, slug="web", name="Web")
    return TeamWorld(team=team, users=users, project=project)


def make_token(
    team: Team, user: User, scopes: list[str] | None = None, projects: list[str] | None = None, **kw: Any
) -> tuple[ApiToken, str]:
    return token_create(
        actor=Actor.system("test"),
        team=team,
        user=user,
        name=kw.pop("name", "test"),
        scopes=ALL_SCOPES if scopes is None else scopes,
        project_slugs=projects,
        **kw,
    )


def token_client(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def session_client(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def team_a(db: Any) -> TeamWorld:
    return make_team("alpha")


@pytest.fixture
def team_b(db: Any) -> TeamWorld:
    return make_team("bravo")


@pytest.fixture
def client_for() -> Callable[..., APIClient]:
    """client_for(world, role, via="token"|"session", scopes=[...], projects=[...])"""

    def build(world: TeamWorld, role: str = "owner", via: str = "token", **token_kw: Any) -> APIClient:
        user = world.user(role)
        if via == "session":
            return session_client(user)
        _, raw = make_token(world.team, user, **token_kw)
        return token_client(raw)

    return build


def assert_error(response: Any, status: int, code: str | None = None) -> dict:
    """The one JSON error shape: {"error": {"code", "message", "fields", "request_id"}}."""
    assert response.status_code == status, (response.status_code, getattr(response, "data", response.content))
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"code", "message", "fields", "request_id"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    assert error["request_id"] == response["X-Request-ID"]
    if code is not None:
        assert error["code"] == code, error
    return error
