"""The permission matrix, checked twice: unit level (TeamContext.can for every role x capability)
and end to end through the API for every role, signed in and through an all-scopes token."""

from dataclasses import dataclass, field
from typing import Any

import pytest

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.core.capabilities import MATRIX, Capability, Role
from apps.teams.models import Membership, Project, ProjectUserObjectPermission, Team, TeamGroup
from tests.conftest import ALL_SCOPES, assert_error, make_token, token_client

ROLES = [r.value for r in Role]


# --- unit level ---------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("capability", list(Capability))
def test_team_context_can_follows_the_matrix(team_a, role, capability):
    ctx = resolve_team(Actor(user=team_a.user(role)), "alpha")
    assert ctx.role == role
    assert ctx.can(capability) is (Role(role) in MATRIX[capability].roles)


def test_matrix_covers_every_capability():
    assert set(MATRIX) == set(Capability)


# --- end to end ---------------------------------------------------------------------------------
# Written out by hand (not derived from MATRIX) so that a change to the matrix shows up here.
ALLOWED_ROLES = {
    Capability.VIEW: {"owner", "admin", "developer", "viewer"},
    Capability.MANAGE_APPS: {"owner", "admin", "developer"},
    Capability.DELETE: {"owner", "admin"},
    Capability.MANAGE_MEMBERS: {"owner", "admin"},
    Capability.MANAGE_TEAM: {"owner"},
}
PEOPLE_ONLY = {Capability.MANAGE_TEAM}


@dataclass(frozen=True)
class Call:
    """One API request; `path` and `body` may name members as {owner}, {admin}, {viewer}..."""

    capability: Capability
    method: str
    path: str
    ok: int
    body: dict[str, Any] = field(default_factory=dict)

    def send(self, client: Any, world: Any) -> Any:
        ids = {role: user.pk for role, user in world.users.items()}
        body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in self.body.items()}
        if "user" in body:
            body["user"] = int(body["user"])
        url = f"/api/v1/teams/{world.team.slug}/{self.path.format(**ids)}"
        return getattr(client, self.method)(url, body or None)


CALLS = {
    "get-project": Call(Capability.VIEW, "get", "projects/web/", 200),
    "list-members": Call(Capability.VIEW, "get", "members/", 200),
    "create-project": Call(Capability.MANAGE_APPS, "post", "projects/", 201, {"slug": "api"}),
    "update-project": Call(Capability.MANAGE_APPS, "patch", "projects/web/", 200, {"name": "Renamed"}),
    "delete-project": Call(Capability.DELETE, "delete", "projects/web/", 204, {"confirm": "web"}),
    "add-member": Call(
        Capability.MANAGE_MEMBERS, "post", "members/", 201, {"email": "new@example.com", "role": "viewer"}
    ),
    "change-role": Call(Capability.MANAGE_MEMBERS, "patch", "members/{viewer}/", 200, {"role": "developer"}),
    "grant": Call(
        Capability.MANAGE_MEMBERS,
        "post",
        "projects/web/grants/",
        201,
        {"capability": "deploy", "user": "{viewer}"},
    ),
    "create-group": Call(Capability.MANAGE_MEMBERS, "post", "groups/", 201, {"slug": "ops"}),
    "audit-log": Call(Capability.MANAGE_MEMBERS, "get", "audit-events/", 200),
    "rename-team": Call(Capability.MANAGE_TEAM, "patch", "", 200, {"name": "Renamed"}),
    "transfer": Call(Capability.MANAGE_TEAM, "post", "transfer/", 200, {"user": "{admin}"}),
    "delete-team": Call(Capability.MANAGE_TEAM, "delete", "", 204, {"confirm": "alpha"}),
}


def db_state() -> dict[str, Any]:
    """Everything the calls above could change."""
    return {
        "teams": list(Team.objects.order_by("id").values_list("slug", "name")),
        "projects": list(Project.objects.order_by("id").values_list("team_id", "slug", "name")),
        "memberships": list(Membership.objects.order_by("id").values_list("team_id", "user_id", "role")),
        "users": User.objects.count(),
        "grants": ProjectUserObjectPermission.objects.count(),
        "groups": TeamGroup.objects.count(),
        "audit_events": AuditEvent.objects.count(),
    }


def expected_allowed(capability: Capability, role: str, via: str) -> bool:
    if via == "token" and capability in PEOPLE_ONLY:
        return False
    return role in ALLOWED_ROLES[capability]


@pytest.mark.parametrize("call_name", list(CALLS))
@pytest.mark.parametrize("via", ["session", "token"])
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_through_the_api(team_a, client_for, role, via, call_name):
    call = CALLS[call_name]
    client = client_for(team_a, role, via=via)  # a token gets every scope
    before = db_state()

    response = call.send(client, team_a)

    if expected_allowed(call.capability, role, via):
        assert response.status_code == call.ok, (response.status_code, response.content)
        if call.method != "get":
            assert db_state() != before
    else:
        assert_error(response, 403, "permission_denied")
        assert db_state() == before


# --- token scopes x capability --------------------------------------------------------------------
SCOPE_CASES = [
    ("get-project", "read"),
    ("list-members", "read"),
    ("create-project", "deploy"),
    ("update-project", "deploy"),
    ("delete-project", "infra"),
    ("add-member", "admin"),
    ("change-role", "admin"),
    ("grant", "admin"),
    ("create-group", "admin"),
    ("audit-log", "admin"),
]


@pytest.mark.parametrize(("call_name", "scope"), SCOPE_CASES)
def test_owner_token_with_only_the_needed_scope_can(team_a, call_name, scope):
    call = CALLS[call_name]
    assert MATRIX[call.capability].scope == scope
    _, raw = make_token(team_a.team, team_a.user("owner"), scopes=[scope])

    response = call.send(token_client(raw), team_a)

    assert response.status_code == call.ok, (response.status_code, response.content)


@pytest.mark.parametrize(("call_name", "scope"), [c for c in SCOPE_CASES if c[1] != "read"])
def test_owner_token_without_the_needed_scope_cannot(team_a, call_name, scope):
    call = CALLS[call_name]
    _, raw = make_token(team_a.team, team_a.user("owner"), scopes=[s for s in ALL_SCOPES if s != scope])
    before = db_state()

    response = call.send(token_client(raw), team_a)

    error = assert_error(response, 403, "permission_denied")
    assert f"'{scope}' scope" in error["message"]
    assert db_state() == before


@pytest.mark.parametrize("call_name", [name for name, c in CALLS.items() if c.capability in PEOPLE_ONLY])
def test_people_only_capability_is_refused_to_an_owner_token_with_every_scope(team_a, call_name):
    _, raw = make_token(team_a.team, team_a.user("owner"), scopes=ALL_SCOPES)
    before = db_state()

    response = CALLS[call_name].send(token_client(raw), team_a)

    error = assert_error(response, 403, "permission_denied")
    assert "only be done by a person" in error["message"]
    assert db_state() == before
