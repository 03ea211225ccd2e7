"""What every API response shares: a request id, one JSON error shape for every 4xx, per-token
throttling, closed-by-default views, suspension of a team, the OpenAPI schema and docs, cursor
pagination and the health check."""

import json
import re
from typing import Any

import pytest
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.alerts.models import AlertRule, Delivery, Incident, NotificationChannel
from apps.audit.models import AuditEvent
from apps.core.actors import Actor
from apps.cron.models import CronJob, CronRun
from apps.databases.models import Backup, Database, DatabaseAttachment
from apps.deployments.models import App
from apps.secrets.models import VariableVersion
from apps.teams.services import team_set_suspended
from tests.conftest import TeamWorld, assert_error, make_token, session_client, token_client
from tests.core.bulk import LIST_PARAMS, LISTS
from tests.core.routes import api_routes, one_of_everything, team_routes

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def owner_token(world: TeamWorld) -> APIClient:
    return token_client(make_token(world.team, world.user("owner"))[1])


# --- request ids ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/api/v1/teams/",
        "/api/v1/teams/alpha/",
        "/api/v1/teams/alpha/projects/nope/",
        "/api/v1/no-such-endpoint/",
        "/api/schema/",
        "/admin/login/",
    ],
)
def test_every_response_carries_a_generated_request_id(team_a: TeamWorld, path: str) -> None:
    response = owner_token(team_a).get(path)
    assert GENERATED_ID.match(response["X-Request-ID"])


def test_a_sane_incoming_request_id_is_echoed_in_header_and_error(team_a: TeamWorld) -> None:
    response = owner_token(team_a).get("/api/v1/teams/alpha/projects/nope/", HTTP_X_REQUEST_ID="ci-run_42.7")
    assert response["X-Request-ID"] == "ci-run_42.7"
    assert assert_error(response, 404, "not_found")["request_id"] == "ci-run_42.7"


@pytest.mark.parametrize(
    "incoming",
    ["short", "has spaces in it", "<script>alert(1)</script>", "a" * 129, "id;rm -rf /", "ünïcödé-id"],
)
def test_an_unsafe_incoming_request_id_is_replaced(team_a: TeamWorld, incoming: str) -> None:
    response = owner_token(team_a).get("/api/v1/teams/alpha/", HTTP_X_REQUEST_ID=incoming)
    assert response.status_code == 200
    assert GENERATED_ID.match(response["X-Request-ID"])


# --- the error shape --------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/teams/", "/api/v1/teams/alpha/", "/api/v1/me/"])
def test_no_credentials_is_401_not_authenticated_with_www_authenticate(team_a: TeamWorld, path: str) -> None:
    response = APIClient().get(path)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("header", ["Bearer pst_not-a-real-token", "Bearer nonsense", "Bearer a b"])
def test_a_bad_token_is_401_not_authenticated(team_a: TeamWorld, header: str) -> None:
    response = APIClient().get("/api/v1/teams/", HTTP_AUTHORIZATION=header)
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_missing_object_is_404_not_found(team_a: TeamWorld) -> None:
    assert_error(owner_token(team_a).get("/api/v1/teams/alpha/projects/nope/"), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/teams/"),
        ("delete", "/api/v1/me/"),
        ("put", "/api/v1/teams/alpha/"),
        ("post", "/api/v1/teams/alpha/projects/web/"),
        ("patch", "/api/v1/teams/alpha/audit-events/"),
    ],
)
def test_unsupported_method_is_405_method_not_allowed(team_a: TeamWorld, method: str, path: str) -> None:
    response = getattr(owner_token(team_a), method)(path, {}, format="json")
    assert_error(response, 405, "method_not_allowed")


def test_non_json_body_is_415_unsupported_media_type(team_a: TeamWorld) -> None:
    response = owner_token(team_a).post("/api/v1/teams/alpha/projects/", "slug=api", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


# --- throttling -------------------------------------------------------------------------------------
def test_throttling_counts_per_token_in_redis(team_a: TeamWorld, settings: Any) -> None:
    settings.PANDASTACK_API_THROTTLE_RATE = "3/min"
    assert isinstance(caches["default"], RedisCache)  # the budget lives in the real Redis, shared by all workers
    first, raw_first = make_token(team_a.team, team_a.user("developer"), name="first")
    _, raw_second = make_token(team_a.team, team_a.user("developer"), name="second")
    client = token_client(raw_first)
    for _ in range(3):
        assert client.get("/api/v1/teams/alpha/").status_code == 200

    response = client.get("/api/v1/teams/alpha/")
    error = assert_error(response, 429, "throttled")
    assert 0 < error["retry_after"] <= 60
    assert response["Retry-After"] == str(error["retry_after"])
    assert len(cache.get(f"throttle:api:token:{first.pk}")) == 3
    # Another token of the same person has its own budget.
    assert token_client(raw_second).get("/api/v1/teams/alpha/").status_code == 200


# --- closed by default ------------------------------------------------------------------------------
@pytest.mark.urls("tests.core.urls_closed")
@pytest.mark.parametrize("via", ["token", "session"])
def test_team_scoped_view_without_capability_map_is_closed(
    team_a: TeamWorld, team_b: TeamWorld, client_for: Any, via: str
) -> None:
    error = assert_error(client_for(team_a, "owner", via=via).get("/api/v1/teams/alpha/forgetful/"), 403)
    assert error["code"] == "permission_denied"
    assert_error(client_for(team_b, "owner", via=via).get("/api/v1/teams/alpha/forgetful/"), 404, "not_found")


@pytest.mark.urls("tests.core.urls_closed")
def test_plain_api_view_without_permission_classes_denies_everybody(team_a: TeamWorld, client_for: Any) -> None:
    for via in ("token", "session"):
        assert_error(client_for(team_a, "owner", via=via).get("/plain/"), 403, "permission_denied")
    assert_error(APIClient().get("/plain/"), 401, "not_authenticated")


# --- suspended teams --------------------------------------------------------------------------------
@pytest.fixture
def filled(team_a: TeamWorld, team_b: TeamWorld) -> dict[str, Any]:
    """team_a with one of everything a team route can name, and the URL parameters naming them."""
    return one_of_everything(team_a)


def team_state(world: TeamWorld) -> dict[str, Any]:
    """What a write through any team route would change: members, the apps with their releases,
    containers and grants, the variables' versions, the cron jobs and their runs, the notification
    channels and their deliveries, the alert rules, the incidents and their alerts, the databases
    with their attachments and backups, and the audit log (a reveal writes only there)."""
    return {
        "memberships": world.team.memberships.count(),
        "variable versions": sorted(
            VariableVersion.objects.filter(variable__team=world.team).values_list("variable__name", "number")
        ),
        "audit events": AuditEvent.objects.filter(team=world.team).count(),
        "apps": [
            (
                (app.name, app.replicas, app.desired_running, app.live_deployment_id, app.updated_at),
                app.deployments.count(),
                app.containers.count(),
                app.user_grants.count(),
                app.group_grants.count(),
            )
            for app in App.objects.filter(team=world.team)
        ],
        "cron jobs": sorted(CronJob.objects.filter(team=world.team).values_list("name", "suspended", "updated_at")),
        "cron runs": CronRun.objects.filter(team=world.team).count(),
        "channels": sorted(
            NotificationChannel.objects.filter(team=world.team).values_list("name", "target", "enabled", "updated_at")
        ),
        "deliveries": Delivery.objects.filter(team=world.team).count(),
        "alert rules": sorted(
            AlertRule.objects.filter(team=world.team).values_list("name", "state", "threshold", "enabled", "updated_at")
        ),
        "incidents": sorted(
            Incident.objects.filter(team=world.team).values_list(
                "number", "status", "title", "postmortem", "updated_at", "alerts__resolved_at"
            )
        ),
        "databases": sorted(
            Database.objects.filter(team=world.team).values_list(
                "name", "status", "password_encrypted", "credentials_rotated_at", "updated_at"
            )
        ),
        "database attachments": sorted(
            DatabaseAttachment.objects.filter(team=world.team).values_list("database__name", "app__name", "env_name")
        ),
        "backups": sorted(
            Backup.objects.filter(team=world.team).values_list("database__name", "number", "status", "restored_at")
        ),
    }


TEAM_ROUTE_METHODS = [
    pytest.param(route, method, id=f"{method} {route.name}") for route in team_routes() for method in route.methods
]


@pytest.mark.parametrize(("route", "method"), TEAM_ROUTE_METHODS)
def test_suspended_team_answers_every_route_with_403_team_suspended(
    team_a: TeamWorld, filled: dict[str, Any], route: Any, method: str
) -> None:
    clients = {"token": owner_token(team_a), "session": session_client(team_a.user("owner"))}
    team_set_suspended(actor=Actor.system("test"), team=team_a.team, suspended=True, reason="unpaid")
    before = team_state(team_a)
    url = route.url(**filled)
    for via, client in clients.items():
        response = getattr(client, method)(url, {"confirm": "alpha"}, format="json")
        assert response.status_code == 403, (via, response.content)
        assert_error(response, 403, "team_suspended")
    assert team_state(team_a) == before  # nothing happened (a leave, a removal or a scale included)


@pytest.mark.parametrize(
    "route", [route for route in team_routes() if "get" in route.methods], ids=lambda route: route.name
)
def test_every_team_get_route_answers_the_owner_with_the_filled_values(
    team_a: TeamWorld, filled: dict[str, Any], route: Any
) -> None:
    # The values name real objects of the right parent (an app grant under apps/<app>/), so the
    # suspension test above walks routes that would otherwise answer.
    response = owner_token(team_a).get(route.url(**filled))
    assert response.status_code == 200, response.content if not response.streaming else route.name
    response.close()  # a log stream is not read: no engine is asked


def test_suspension_blocks_only_that_team_and_resume_restores(
    team_a: TeamWorld, team_b: TeamWorld, client_for: Any
) -> None:
    alpha = {via: client_for(team_a, "viewer", via=via) for via in ("token", "session")}
    bravo = client_for(team_b, "viewer")
    team_set_suspended(actor=Actor.system("test"), team=team_a.team, suspended=True, reason="abuse")

    for client in alpha.values():
        assert_error(client.get("/api/v1/teams/alpha/projects/"), 403, "team_suspended")
    assert bravo.get("/api/v1/teams/bravo/projects/").status_code == 200
    # Outsiders still cannot tell the team exists.
    assert_error(client_for(team_b, "owner", via="session").get("/api/v1/teams/alpha/"), 404, "not_found")

    team_set_suspended(actor=Actor.system("test"), team=team_a.team, suspended=False)
    for client in alpha.values():
        assert client.get("/api/v1/teams/alpha/projects/").status_code == 200


# --- OpenAPI schema and docs ------------------------------------------------------------------------
def test_schema_is_openapi_3_with_every_api_path_and_method(db: Any) -> None:
    response = APIClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    missing = [
        f"{method.upper()} {route.openapi_path}"
        for route in api_routes()
        for method in route.methods
        if method not in schema["paths"].get(route.openapi_path, {})
    ]
    assert missing == []


def test_docs_load_swagger_ui_from_local_static_files_not_a_cdn(db: Any) -> None:
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "swagger-ui" in html
    # Checked on the page's URLs, not its whole text: a random CSRF token can spell "cdn".
    for url in re.findall(r"""https?://[^\s"'<>]+""", html):
        assert not any(cdn in url.lower() for cdn in ("cdn", "jsdelivr", "unpkg")), url
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert any("swagger-ui-bundle.js" in a for a in assets), assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        served = APIClient().get(asset)
        assert served.status_code == 200, asset
        served.close()


def test_spectacular_validates_the_schema_without_warnings(db: Any, tmp_path: Any) -> None:
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert out.read_text().startswith("openapi: 3.")


# --- pagination -------------------------------------------------------------------------------------
LIST_ROUTES = [route for route in api_routes() if route.is_list]


def test_every_list_route_is_covered_by_the_bulk_factories() -> None:
    assert {route.url(**LIST_PARAMS) for route in LIST_ROUTES} == {p for p, _, _ in LISTS.values()}


@pytest.mark.parametrize("route", LIST_ROUTES, ids=lambda r: r.name)
def test_every_list_is_a_cursor_page(team_a: TeamWorld, filled: dict[str, Any], route: Any) -> None:
    response = owner_token(team_a).get(route.url(**filled))
    assert response.status_code == 200
    assert set(response.json()) == {"next", "previous", "results"}


@pytest.mark.parametrize("endpoint", [name for name in LISTS if name != "teams (token)"])
def test_limit_is_capped_at_200(team_a: TeamWorld, endpoint: str, client_for: Any) -> None:
    path, grow, via = LISTS[endpoint]
    grow(team_a, 0, 201)
    body = client_for(team_a, "owner", via=via).get(f"{path}?limit=500").json()
    assert len(body["results"]) == 200
    assert body["next"] is not None


# --- health -----------------------------------------------------------------------------------------
def test_healthz_answers_200(db: Any) -> None:
    response = APIClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
