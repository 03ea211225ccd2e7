"""Another team gets 404 on every variables route (read from the URL conf, so a new one is covered
without being listed), by token and by session, for the victim's URLs and for the victim's
variable asked under the attacker's own team, and nothing changes."""

import pytest

from apps.audit.models import AuditEvent
from apps.deployments.models import Deployment
from apps.secrets.models import Variable, VariableVersion
from apps.secrets.services import variables_set
from apps.teams.models import Project
from tests.conftest import assert_error, make_team, make_token, session_client, token_client
from tests.core.routes import Route, team_routes
from tests.secrets.conftest import ctx_of, make_app, scope_of

VARIABLE_ROUTES = [route for route in team_routes() if "variable" in route.name]
VICTIM_VALUES = {"team": "alpha", "project": "web", "app": "api", "variable": "ALPHA_ONLY"}
# The attacker's own project and app, with other names than the victim's.
OWN_VALUES = {"team": "bravo", "project": "bravo-web", "app": "bravo-app", "variable": "ALPHA_ONLY"}
HOSTILE_BODY = {"variables": {"ALPHA_ONLY": "pwned"}, "names": ["ALPHA_ONLY"], "secret": False, "restart": True}


def test_the_variables_routes_are_found():
    # 4 routes (list/create, unset, reveal, versions) at the team, project and app level.
    assert len(VARIABLE_ROUTES) == 12
    assert {route.params[-1] for route in VARIABLE_ROUTES} >= {"team", "project", "app", "variable"}


@pytest.fixture
def victim(team_a):
    app = make_app(team_a)
    ctx = ctx_of(team_a)
    for level in ("team", "project", "app"):
        variables_set(ctx=ctx, scope=scope_of(level, team_a, app), values={"ALPHA_ONLY": "victim-value"}, secret=True)
    return team_a


@pytest.fixture
def attacker(db):
    world = make_team("bravo")
    world.project.slug = "bravo-web"
    world.project.save(update_fields=["slug"])
    make_app(world, "bravo-app")
    return world


def fingerprint():
    return [
        sorted(map(repr, model.objects.values_list())) for model in (Variable, VariableVersion, AuditEvent, Deployment)
    ]


@pytest.mark.parametrize(
    ("route", "method"),
    [(route, method) for route in VARIABLE_ROUTES for method in route.methods],
    ids=lambda v: v.name if isinstance(v, Route) else v,
)
def test_another_team_gets_404_on_every_variables_route(route, method, victim, attacker):
    urls = {route.url(**VICTIM_VALUES)}
    if "variable" in route.params:
        urls.add(route.url(**OWN_VALUES))  # the victim's variable under the attacker's own parents
    _, raw = make_token(attacker.team, attacker.user("owner"))
    clients = {"token": token_client(raw), "session": session_client(attacker.user("owner"))}
    before = fingerprint()
    for via, client in clients.items():
        for url in sorted(urls):
            response = getattr(client, method)(url, HOSTILE_BODY, format="json")
            assert response.status_code == 404, f"{method.upper()} {url} via {via}: {response.status_code}"
            error = assert_error(response, 404, "not_found")
            assert "victim-value" not in str(error)
    assert fingerprint() == before


@pytest.mark.parametrize("route", [r for r in VARIABLE_ROUTES if "get" in r.methods], ids=lambda r: r.name)
def test_the_victims_owner_reads_the_same_urls(route, victim):
    """The ids above are real: the 404s come from tenancy, not from a wrong name."""
    _, raw = make_token(victim.team, victim.user("owner"))
    response = token_client(raw).get(route.url(**VICTIM_VALUES))
    assert response.status_code == 200, (route.name, response.content[:300])


def test_a_token_limited_to_another_project_cannot_reach_the_apps_or_projects_variables(victim, client_for):
    Project.objects.create(team=victim.team, slug="other", name="Other")
    client = client_for(victim, "owner", projects=["other"])
    for url in (
        "/api/v1/teams/alpha/apps/api/variables/",
        "/api/v1/teams/alpha/projects/web/variables/ALPHA_ONLY/versions/",
    ):
        assert_error(client.get(url), 404, "not_found")
    reveal = client.post("/api/v1/teams/alpha/apps/api/variables/ALPHA_ONLY/reveal/")
    assert_error(reveal, 404, "not_found")
