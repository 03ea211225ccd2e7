"""The audit log: every change through the API writes one event saying who, through which token,
what, on what, in which team and from where; owners and admins read it."""

import pytest
from guardian.shortcuts import assign_perm

from apps.audit.models import AuditEvent
from apps.teams.models import ProjectUserObjectPermission
from tests.conftest import assert_error, make_token, session_client, token_client

TEAM = "/api/v1/teams/alpha"
AUDIT = f"{TEAM}/audit-events/"


@pytest.fixture
def world(team_a):
    """team_a plus what the revoke/remove cases act on: a grant and a spare token."""
    assign_perm("deploy", team_a.user("viewer"), team_a.project)
    team_a.grant = ProjectUserObjectPermission.objects.get(user=team_a.user("viewer"))
    team_a.spare_token, _ = make_token(team_a.team, team_a.user("developer"), name="spare")
    return team_a


# (action, method, path, body, target type); paths and bodies are filled in from the world.
CHANGES = [
    ("project.create", "post", "/projects/", {"slug": "api"}, "teams.project"),
    ("project.update", "patch", "/projects/web/", {"name": "Website"}, "teams.project"),
    ("project.delete", "delete", "/projects/web/", {"confirm": "web"}, "teams.project"),
    ("member.add", "post", "/members/", {"email": "new@example.com", "role": "viewer"}, "teams.membership"),
    ("member.change_role", "patch", "/members/{viewer}/", {"role": "developer"}, "teams.membership"),
    ("member.remove", "delete", "/members/{viewer}/", None, "teams.membership"),
    ("grant.create", "post", "/projects/web/grants/", {"capability": "view_logs", "user": "{viewer}"}, "teams.project"),
    ("grant.revoke", "delete", "/projects/web/grants/user-{grant}/", None, "teams.project"),
    ("token.create", "post", "/tokens/", {"name": "deploy-bot"}, "tokens.apitoken"),
    ("token.revoke", "post", "/tokens/{token}/revoke/", None, "tokens.apitoken"),
    ("group.create", "post", "/groups/", {"slug": "data", "members": ["{developer}"]}, "teams.teamgroup"),
    (
        "service_account.create",
        "post",
        "/service-accounts/",
        {"slug": "ci", "role": "developer"},
        "teams.serviceaccount",
    ),
]


def _fill(value, ids: dict[str, int]):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


@pytest.mark.parametrize(("action", "method", "path", "body", "target_type"), CHANGES, ids=[c[0] for c in CHANGES])
def test_each_change_writes_one_audit_event_with_who_what_where(world, action, method, path, body, target_type):
    owner = world.user("owner")
    token, raw = make_token(world.team, owner)
    ids = {
        "viewer": world.user("viewer").pk,
        "developer": world.user("developer").pk,
        "grant": world.grant.pk,
        "token": world.spare_token.pk,
    }
    last_id = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first()

    response = getattr(token_client(raw), method)(TEAM + path.format(**ids), _fill(body, ids))

    assert response.status_code in (200, 201, 204), response.content
    events = list(AuditEvent.objects.filter(id__gt=last_id))
    assert len(events) == 1, [e.action for e in events]
    event = events[0]
    assert event.action == action
    assert event.team == world.team
    assert event.actor == owner
    assert event.actor_label == owner.username
    assert event.token_id == token.pk
    assert event.token_prefix == token.prefix
    assert event.ip == "127.0.0.1"
    assert event.via == "api"
    assert event.target_type == target_type
    assert event.target_id.isdigit() and event.target_label


def test_session_changes_are_audited_without_a_token(team_a):
    session_client(team_a.user("admin")).patch(f"{TEAM}/projects/web/", {"name": "Website"})

    event = AuditEvent.objects.get(action="project.update")
    assert event.actor == team_a.user("admin")
    assert event.token is None and event.token_prefix == ""
    assert event.target_id == str(team_a.project.pk)
    assert event.data == {"name": "Website"}


# --- reading the log --------------------------------------------------------------------------------
@pytest.mark.parametrize("role", ["owner", "admin"])
def test_owners_and_admins_read_the_log_newest_first(team_a, team_b, role):
    client = session_client(team_a.user("owner"))
    assert client.post(f"{TEAM}/projects/", {"slug": "api"}).status_code == 201
    assert client.patch(f"{TEAM}/projects/web/", {"name": "Website"}).status_code == 200
    assert client.post(f"{TEAM}/groups/", {"slug": "data"}).status_code == 201

    response = session_client(team_a.user(role)).get(AUDIT)

    assert response.status_code == 200
    results = response.json()["results"]
    ids = [e["id"] for e in results]
    assert ids == sorted(ids, reverse=True)
    assert [e["action"] for e in results[:3]] == ["group.create", "project.update", "project.create"]
    team_b_ids = set(AuditEvent.objects.filter(team=team_b.team).values_list("id", flat=True))
    assert team_b_ids and not team_b_ids & set(ids)


@pytest.mark.parametrize("role", ["developer", "viewer"])
def test_developers_and_viewers_cannot_read_the_log(team_a, role):
    assert_error(session_client(team_a.user(role)).get(AUDIT), 403, "permission_denied")


def test_the_log_can_be_filtered_by_action(team_a):
    client = session_client(team_a.user("owner"))
    client.post(f"{TEAM}/projects/", {"slug": "api"})
    client.patch(f"{TEAM}/projects/web/", {"name": "Website"})

    results = client.get(AUDIT, {"action": "project.update"}).json()["results"]

    assert [(e["action"], e["target_id"]) for e in results] == [("project.update", str(team_a.project.pk))]


def test_the_log_never_shows_raw_tokens(team_a):
    _, caller_raw = make_token(team_a.team, team_a.user("owner"))
    client = token_client(caller_raw)
    created = client.post(f"{TEAM}/tokens/", {"name": "deploy-bot", "scopes": ["deploy"]})
    assert created.status_code == 201
    client.post(f"{TEAM}/tokens/{created.json()['id']}/revoke/")

    response = client.get(AUDIT)

    assert response.status_code == 200
    body = response.content.decode()
    assert {"token.create", "token.revoke"} <= {e["action"] for e in response.json()["results"]}
    assert created.json()["token"] not in body
    assert caller_raw not in body


# --- failed writes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/projects/", {"slug": "Not A Slug"}, "slug"),
        ("delete", "/projects/web/", {"confirm": "wrong"}, "confirm"),
        ("post", "/members/", {"email": "not-an-email", "role": "viewer"}, "email"),
        ("post", "/tokens/", {"name": "x", "expires_in_days": 366}, "expires_in_days"),
        ("post", "/service-accounts/", {"slug": "ci", "role": "owner"}, "role"),
        ("post", "/projects/web/grants/", {"capability": "manage_members", "user": 1}, "capability"),
    ],
    ids=["project-slug", "project-confirm", "member-email", "token-expiry", "sa-role", "grant-capability"],
)
def test_a_rejected_write_records_no_audit_event(team_a, method, path, body, field):
    before = AuditEvent.objects.count()

    response = getattr(session_client(team_a.user("owner")), method)(TEAM + path, body)

    assert field in assert_error(response, 400, "invalid")["fields"]
    assert AuditEvent.objects.count() == before
