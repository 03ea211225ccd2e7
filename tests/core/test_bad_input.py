"""Every write endpoint refuses bad input with the one error shape, names the bad field, and writes
nothing at all; no body, however odd, makes it answer 500.

Calls are made by the owner with a signed-in session, so permissions never decide the outcome
(POST /teams/ needs a person: tokens cannot create teams)."""

import json
from typing import Any

import pytest
from django.apps import apps

from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.teams.services import group_create, service_account_create
from tests.conftest import TeamWorld, assert_error, session_client
from tests.core.routes import api_routes

SNAPSHOT_APPS = {"teams", "tokens", "audit", "accounts", "guardian", "auth"}


def row_counts() -> dict[str, int]:
    """Rows of every model (through tables included) of the apps an API write could touch."""
    return {
        model._meta.label: model._default_manager.count()
        for model in apps.get_models(include_auto_created=True)
        if model._meta.app_label in SNAPSHOT_APPS
    }


@pytest.fixture
def world(team_a: TeamWorld, team_b: TeamWorld) -> dict[str, Any]:
    """team_a with a group "ops" and a service account "ci"; ids used by paths and payloads."""
    ctx = resolve_team(Actor(user=team_a.user("owner"), via="test"), "alpha")
    group_create(ctx=ctx, slug="ops", name="Ops", members=[])
    service_account_create(ctx=ctx, slug="ci", role="developer")
    return {
        "viewer": team_a.user("viewer").pk,
        "owner": team_a.user("owner").pk,
        "sa_user": team_a.team.memberships.get(user__is_service_account=True).user_id,
        "stranger": team_b.user("owner").pk,
        "client": session_client(team_a.user("owner")),
    }


LONG_NAME = "n" * 101
LONG_SLUG = "s" * 41
BAD_SLUGS = ["Bad Slug", "-x", "x-"]

# Every write endpoint that takes a body: (method, URL name, URL parameters). "@name" values stand
# for ids from the `world` fixture.
A = {"team": "alpha"}
ENDPOINTS = {
    "team-create": ("post", "team-list", {}),
    "team-update": ("patch", "team-detail", A),
    "team-delete": ("delete", "team-detail", A),
    "team-transfer": ("post", "team-transfer", A),
    "member-add": ("post", "member-list", A),
    "member-update": ("patch", "member-detail", {**A, "user": "@viewer"}),
    "project-create": ("post", "project-list", A),
    "project-update": ("patch", "project-detail", {**A, "project": "web"}),
    "project-delete": ("delete", "project-detail", {**A, "project": "web"}),
    "grant-create": ("post", "grant-list", {**A, "project": "web"}),
    "group-create": ("post", "group-list", A),
    "group-update": ("patch", "group-detail", {**A, "group": "ops"}),
    "service-account-create": ("post", "service-account-list", A),
    "service-account-update": ("patch", "service-account-detail", {**A, "service_account": "ci"}),
    "token-create": ("post", "token-list", A),
}
# Writes that take no body: the URL says everything (leaving the team; DELETE of a member, grant,
# group, service account or token; revoking a token).
BODYLESS = {
    ("post", "team-leave"),
    ("delete", "member-detail"),
    ("delete", "grant-detail"),
    ("delete", "group-detail"),
    ("delete", "service-account-detail"),
    ("delete", "token-detail"),
    ("post", "token-revoke"),
}
ROUTES = {route.name: route for route in api_routes()}


def test_every_write_route_is_listed_here() -> None:
    writes = {(m, r.name) for r in ROUTES.values() for m in r.methods if m in ("post", "put", "patch", "delete")}
    assert writes - BODYLESS == {(method, name) for method, name, _ in ENDPOINTS.values()}


def case(endpoint: str, body: Any, field: str | None, *, status: int = 400, code: str = "invalid") -> Any:
    """One bad payload; "@name" strings in `body` stand for ids from the `world` fixture."""
    return pytest.param(endpoint, body, status, code, field, id=f"{endpoint}:{json.dumps(body)}")


def slug_cases(endpoint: str, valid: dict[str, Any], duplicate: str) -> list[Any]:
    """Missing, mistyped, too long, malformed and already taken slugs for a create endpoint."""
    without = {k: v for k, v in valid.items() if k != "slug"}
    return [
        case(endpoint, without, "slug"),
        case(endpoint, {**valid, "slug": 123}, "slug"),
        case(endpoint, {**valid, "slug": ["web"]}, "slug"),
        case(endpoint, {**valid, "slug": None}, "slug"),
        case(endpoint, {**valid, "slug": ""}, "slug"),
        case(endpoint, {**valid, "slug": LONG_SLUG}, "slug"),
        *(case(endpoint, {**valid, "slug": bad}, "slug") for bad in BAD_SLUGS),
        case(endpoint, {**valid, "slug": duplicate}, "slug"),
    ]


def resolve(body: Any, ids: dict[str, Any]) -> Any:
    """Replace "@name" placeholders with the world's ids (user ids are known only at run time)."""
    if isinstance(body, str) and body.startswith("@"):
        return ids[body[1:]]
    if isinstance(body, list):
        return [resolve(item, ids) for item in body]
    if isinstance(body, dict):
        return {key: resolve(value, ids) for key, value in body.items()}
    return body


BAD_PAYLOADS = [
    # --- teams --------------------------------------------------------------------------------
    *slug_cases("team-create", {"slug": "delta", "name": "Delta"}, duplicate="bravo"),
    case("team-create", {"slug": "delta", "name": LONG_NAME}, "name"),
    case("team-create", {"slug": "delta", "name": ["Delta"]}, "name"),
    case("team-update", {}, "name"),
    case("team-update", {"name": LONG_NAME}, "name"),
    case("team-update", {"name": ""}, "name"),
    case("team-update", {"name": {"en": "Alpha"}}, "name"),
    case("team-delete", {}, "confirm"),
    case("team-delete", {"confirm": "bravo"}, "confirm"),
    case("team-delete", {"confirm": ["alpha"]}, "confirm"),
    case("team-transfer", {}, "user"),
    case("team-transfer", {"user": "abc"}, "user"),
    case("team-transfer", {"user": [1]}, "user"),
    case("team-transfer", {"user": "@stranger"}, "user"),
    case("team-transfer", {"user": "@owner"}, "user"),
    case("team-transfer", {"user": "@sa_user"}, "user"),
    # --- members ------------------------------------------------------------------------------
    case("member-add", {"role": "viewer"}, "email"),
    case("member-add", {"email": "new@example.com"}, "role"),
    case("member-add", {"email": "not-an-email", "role": "viewer"}, "email"),
    case("member-add", {"email": ["new@example.com"], "role": "viewer"}, "email"),
    case("member-add", {"email": f"{'e' * 140}@example.com", "role": "viewer"}, "email"),
    case("member-add", {"email": "new@example.com", "role": "superuser"}, "role"),
    case("member-add", {"email": "new@example.com", "role": ["viewer"]}, "role"),
    case(
        "member-add",
        {"email": "viewer@alpha.example.com", "role": "viewer"},
        "email",
        status=409,
        code="conflict",
    ),
    case("member-update", {}, "role"),
    case("member-update", {"role": "god"}, "role"),
    case("member-update", {"role": 5}, "role"),
    # --- projects -----------------------------------------------------------------------------
    *slug_cases("project-create", {"slug": "api", "name": "API"}, duplicate="web"),
    case("project-create", {"slug": "api", "name": LONG_NAME}, "name"),
    case("project-create", {"slug": "api", "description": "d" * 501}, "description"),
    case("project-update", {"name": LONG_NAME}, "name"),
    case("project-update", {"name": ["Web"]}, "name"),
    case("project-update", {"name": ""}, "name"),
    case("project-update", {"description": "d" * 501}, "description"),
    case("project-delete", {}, "confirm"),
    case("project-delete", {"confirm": "api"}, "confirm"),
    # --- grants -------------------------------------------------------------------------------
    case("grant-create", {"group": "ops"}, "capability"),
    case("grant-create", {"capability": "fly", "group": "ops"}, "capability"),
    case("grant-create", {"capability": "manage_members", "group": "ops"}, "capability"),
    case("grant-create", {"capability": ["deploy"], "group": "ops"}, "capability"),
    case("grant-create", {"capability": "deploy"}, "non_field_errors"),
    case("grant-create", {"capability": "deploy", "group": "ops", "user": "@viewer"}, "non_field_errors"),
    case("grant-create", {"capability": "deploy", "group": "nope"}, "group"),
    case("grant-create", {"capability": "deploy", "user": "abc"}, "user"),
    case("grant-create", {"capability": "deploy", "user": "@stranger"}, "user"),
    # --- groups -------------------------------------------------------------------------------
    *slug_cases("group-create", {"slug": "data", "name": "Data"}, duplicate="ops"),
    case("group-create", {"slug": "data", "name": LONG_NAME}, "name"),
    case("group-create", {"slug": "data", "members": 5}, "members"),
    case("group-create", {"slug": "data", "members": "1,2"}, "members"),
    case("group-create", {"slug": "data", "members": ["x"]}, "members"),
    case("group-create", {"slug": "data", "members": ["@stranger"]}, "members"),
    case("group-update", {"name": LONG_NAME}, "name"),
    case("group-update", {"members": {"id": 1}}, "members"),
    case("group-update", {"members": ["@viewer", "@stranger"]}, "members"),
    # --- service accounts ---------------------------------------------------------------------
    *slug_cases("service-account-create", {"slug": "deployer", "role": "developer"}, duplicate="ci"),
    case("service-account-create", {"slug": "deployer"}, "role"),
    case("service-account-create", {"slug": "deployer", "role": "owner"}, "role"),
    case("service-account-create", {"slug": "deployer", "role": "root"}, "role"),
    case(
        "service-account-create",
        {"slug": "deployer", "role": "viewer", "description": 7 * [1]},
        "description",
    ),
    case(
        "service-account-create",
        {"slug": "deployer", "role": "viewer", "description": "d" * 501},
        "description",
    ),
    case("service-account-update", {"role": "owner"}, "role"),
    case("service-account-update", {"role": ["admin"]}, "role"),
    case("service-account-update", {"description": "d" * 501}, "description"),
    # --- tokens -------------------------------------------------------------------------------
    case("token-create", {"scopes": ["read"]}, "name"),
    case("token-create", {"name": LONG_NAME}, "name"),
    case("token-create", {"name": "ci", "scopes": "deploy"}, "scopes"),
    case("token-create", {"name": "ci", "scopes": ["fly"]}, "scopes"),
    case("token-create", {"name": "ci", "scopes": ["read"] * 7}, "scopes"),
    case("token-create", {"name": "ci", "projects": "web"}, "projects"),
    case("token-create", {"name": "ci", "projects": ["nope"]}, "projects"),
    case("token-create", {"name": "ci", "expires_in_days": 0}, "expires_in_days"),
    case("token-create", {"name": "ci", "expires_in_days": 100000}, "expires_in_days"),
    case("token-create", {"name": "ci", "expires_in_days": "soon"}, "expires_in_days"),
    case("token-create", {"name": "ci", "user": "abc"}, "user"),
    case("token-create", {"name": "ci", "user": "@stranger"}, "user"),
]


def test_every_write_endpoint_has_bad_payload_cases() -> None:
    covered = {param.values[0] for param in BAD_PAYLOADS}
    assert covered == set(ENDPOINTS)


def send(world: dict[str, Any], endpoint: str, body: Any, **kwargs: Any) -> Any:
    method, name, params = ENDPOINTS[endpoint]
    body = resolve(body, world)
    client = world["client"]
    url = ROUTES[name].url(**resolve(params, world))
    if "content_type" in kwargs:
        return getattr(client, method)(url, body, **kwargs)
    return getattr(client, method)(url, body, format="json")


@pytest.mark.parametrize(("endpoint", "body", "status", "code", "field"), BAD_PAYLOADS)
def test_bad_payload_is_refused_with_the_field_named_and_nothing_written(
    world: dict[str, Any], endpoint: str, body: Any, status: int, code: str, field: str | None
) -> None:
    before = row_counts()
    error = assert_error(send(world, endpoint, body), status, code)
    if field is not None:
        assert field in error["fields"], error
        assert all(isinstance(m, str) and m for m in error["fields"][field]), error
    assert row_counts() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_malformed_json_is_a_parse_error_and_writes_nothing(world: dict[str, Any], endpoint: str) -> None:
    before = row_counts()
    response = send(world, endpoint, '{"slug": "x", ', content_type="application/json")
    assert_error(response, 400, "parse_error")
    assert row_counts() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_non_json_content_type_is_415_and_writes_nothing(world: dict[str, Any], endpoint: str) -> None:
    before = row_counts()
    response = send(world, endpoint, "slug=x&name=y", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")
    assert row_counts() == before


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_empty_body_is_never_a_500(world: dict[str, Any], endpoint: str) -> None:
    # An empty body is {}: refused where a field is required, a no-op update where none is.
    response = send(world, endpoint, "", content_type="application/json")
    assert response.status_code < 500
    if response.status_code >= 400:
        assert_error(response, response.status_code, "invalid")


@pytest.mark.parametrize("body", ["[]", '[{"slug": "x", "name": "x"}]'], ids=["empty-array", "array"])
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_array_body_is_refused_and_writes_nothing(world: dict[str, Any], endpoint: str, body: str) -> None:
    before = row_counts()
    error = assert_error(send(world, endpoint, body, content_type="application/json"), 400, "invalid")
    assert "non_field_errors" in error["fields"]
    assert row_counts() == before
