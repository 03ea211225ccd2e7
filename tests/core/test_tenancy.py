"""Tenancy, proved for every route: walk the URL conf and, for every team-scoped route and every
method it answers, show that another team's member (by token and by session) gets 404 — exactly
like a missing object — and that nothing in the database changed.

A new route fails these tests until it is covered: every URL keyword must have a filler below,
and every /api/v1/ route outside /teams/{team}/ must be listed in NON_TEAM_ROUTES."""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from django.apps import apps as django_apps
from django.urls import URLPattern, URLResolver, get_resolver

from apps.alerts.models import Incident, IncidentAlert
from apps.alerts.rules import rule_create
from apps.alerts.services import channel_create
from apps.core.actors import Actor
from apps.cron.models import CronJob, CronRun
from apps.databases import services as database_services
from apps.deployments.models import App, Deployment
from apps.registries.services import registry_credential_create
from apps.secrets.models import Level
from apps.secrets.services import Scope, variables_set
from apps.teams import services as team_services
from apps.teams.models import Project
from tests.conftest import TeamWorld, assert_error, make_team, make_token, session_client, token_client
from tests.core.routes import available_database, stored_backup

API_PREFIX = "api/v1/"
# Routes under /api/v1/ that are not about one team, and the test that covers each.
NON_TEAM_ROUTES = {
    "api/v1/me/": "test_me_and_team_list_show_only_the_callers_teams",
    "api/v1/teams/": "test_me_and_team_list_show_only_the_callers_teams",
}


@dataclass(frozen=True)
class Route:
    pattern: str  # e.g. "api/v1/teams/<str:team>/projects/<str:project>/"
    kwargs: tuple[str, ...]
    methods: tuple[str, ...]

    def url(self, values: dict[str, str]) -> str:
        path = self.pattern
        for name in self.kwargs:
            key = "app_grant" if name == "grant" and "app" in self.kwargs else name
            path = path.replace(f"<str:{name}>", str(values[key]))
        return "/" + path


def _walk(patterns: list, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _methods(pattern: URLPattern) -> tuple[str, ...]:
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions:  # a viewset mounted with as_view({method: action})
        return tuple(sorted(m for m in actions if m not in ("options", "head")))
    view_class = callback.view_class
    return tuple(
        sorted(m for m in view_class.http_method_names if m not in ("options", "head") and hasattr(view_class, m))
    )


def api_routes() -> list[Route]:
    routes = []
    for path, pattern in _walk(get_resolver().url_patterns):
        if not path.startswith(API_PREFIX):
            continue
        names = tuple(re.findall(r"<(?:\w+:)?(\w+)>", path))
        routes.append(Route(pattern=path, kwargs=names, methods=_methods(pattern)))
    return routes


def team_routes() -> list[Route]:
    return [r for r in api_routes() if r.kwargs[:1] == ("team",)]


# --- the victim's objects, with identifiers the attacker's team does not also have ----------------
@dataclass
class Victim:
    world: TeamWorld
    values: dict[str, str]


def build_victim() -> Victim:
    world = make_team("alpha")
    ctx_actor = Actor.system("test", user=world.user("owner"))
    from apps.core.access import resolve_team

    ctx = resolve_team(ctx_actor, "alpha")
    project = Project.objects.create(team=world.team, slug="alpha-only", name="Alpha only")
    group = team_services.group_create(ctx=ctx, slug="alpha-ops", name="Ops", members=[world.user("developer").pk])
    grant, _ = team_services.grant_create(
        ctx=ctx, obj=project, capability="deploy", user_id=world.user("viewer").pk, group_slug=None
    )
    account = team_services.service_account_create(ctx=ctx, slug="alpha-ci", role="developer")
    token, _ = make_token(world.team, world.user("developer"))
    app = App.objects.create(team=world.team, project=project, name="alpha-app")
    Deployment.objects.create(team=world.team, app=app, number=1, image="busybox", status="failed")
    app_grant, _ = team_services.grant_create(
        ctx=ctx, obj=app, capability="deploy", user_id=world.user("viewer").pk, group_slug=None
    )
    for scope in (
        Scope(level=Level.TEAM),
        Scope(level=Level.PROJECT, project=project),
        Scope(level=Level.APP, app=app),
    ):
        variables_set(ctx=ctx, scope=scope, values={"ALPHA_VAR": "victim-secret"}, secret=True)
    job = CronJob.objects.create(
        team=world.team, project=project, name="alpha-cron", image="busybox", command=["true"], schedule="@hourly"
    )
    run = CronRun.objects.create(team=world.team, job=job, trigger="manual", status="succeeded")
    channel, _ = channel_create(ctx=ctx, name="alpha-hook", kind="webhook", target="http://127.0.0.1:9/hook")
    # Named like the team, so the hostile delete's {"confirm": "alpha"} would be right if it got through.
    rule = rule_create(
        ctx=ctx, name="alpha", scope="project", project=project, metric="event", event_kind="deployment.failed",
        threshold=0, channels=[channel],
    )  # fmt: skip
    incident = Incident.objects.create(team=world.team, project=project, number=1, title="Alpha is down")
    IncidentAlert.objects.create(
        incident=incident, rule=rule, rule_name=rule.name, value=1, fired_at=incident.created_at
    )
    # Named like the team too: the hostile delete's and restore's {"confirm": "alpha"} would be right.
    database = available_database(ctx, project, "alpha")
    database_services.database_attach(ctx=ctx, database=database, app=app)
    backup = stored_backup(database)
    registry_credential_create(ctx=ctx, registry="registry.alpha.example", username="alpha", password="alpha-pw")
    values = {
        "registry": "registry.alpha.example",
        "database": database.name,
        "backup": str(backup.number),
        "rule": rule.name,
        "incident": str(incident.number),
        "channel": channel.name,
        "cron_job": job.name,
        "run": str(run.pk),
        "variable": "ALPHA_VAR",
        "team": "alpha",
        "user": str(world.user("developer").pk),
        "project": project.slug,
        "grant": team_services.grant_id(grant),
        "group": group.slug,
        "service_account": account.slug,
        "token": str(token.pk),
        "app": app.name,
        "deployment": "1",
        # Grants are numbered per table: an app's grants have their own ids.
        "app_grant": team_services.grant_id(app_grant),
    }
    return Victim(world=world, values=values)


# A body that would succeed on each write if tenancy were not enforced.
HOSTILE_BODY = {
    "name": "pwned",
    "slug": "pwned",
    "description": "pwned",
    "confirm": "alpha",
    "role": "admin",
    "email": "attacker@example.com",
    "capability": "deploy",
    "members": [],
    "scopes": ["read", "admin"],
    "project": "alpha-only",
    "image": "busybox:latest",
    "replicas": 1,
    "to": 1,
    "variables": {"PWNED": "1"},
    "names": ["ALPHA_VAR"],
    "restart": False,
    "schedule": "* * * * *",
    "command": ["true"],
    "kind": "webhook",
    "target": "http://127.0.0.1:9/pwned",
    "scope": "project",
    "metric": "event",
    "event_kind": "deployment.failed",
    "threshold": 0,
    "enabled": False,
    "title": "pwned",
    "postmortem": "pwned",
    "engine": "postgres",
    "app": "alpha-app",
    "env_name": "PWNED_URL",
    "username": "pwned",
    "password": "pwned",
}


def database_fingerprint() -> list:
    """Every row of every model we own (plus guardian and auth groups), to prove nothing changed."""
    rows = []
    for model in django_apps.get_models():
        if model._meta.app_label in {
            "teams",
            "tokens",
            "audit",
            "accounts",
            "guardian",
            "auth",
            "deployments",
            "secrets",
            "cron",
            "alerts",
            "events",
            "databases",
            "registries",
        }:
            rows.append((model._meta.label, sorted(map(repr, model.objects.values_list()))))
    return rows


@pytest.fixture
def victim(db) -> Victim:
    return build_victim()


@pytest.fixture
def attacker(db) -> TeamWorld:
    world = make_team("bravo")
    project = Project.objects.create(team=world.team, slug="bravo-only", name="Bravo only")
    App.objects.create(team=world.team, project=project, name="bravo-app")
    return world


def attacker_clients(attacker: TeamWorld) -> dict[str, Callable]:
    _, raw = make_token(attacker.team, attacker.user("owner"))
    return {"token": token_client(raw), "session": session_client(attacker.user("owner"))}


def _cases() -> list[tuple[Route, str]]:
    return [(route, method) for route in team_routes() for method in route.methods]


FILLERS = {
    *("team", "user", "project", "grant", "group", "service_account", "token"),
    *("app", "deployment", "variable", "cron_job", "run", "channel", "rule", "incident"),
    *("database", "backup", "registry"),
}


def test_every_api_route_is_covered():
    routes = api_routes()
    assert routes, "the walker found no API routes"
    for route in routes:
        if route.kwargs[:1] == ("team",):
            missing = set(route.kwargs) - FILLERS
            assert not missing, f"{route.pattern}: no tenancy filler for {missing}; add one in build_victim()"
        else:
            assert route.pattern in NON_TEAM_ROUTES, (
                f"{route.pattern} is not under /teams/{{team}}/ and has no tenancy test; add it to NON_TEAM_ROUTES"
            )


def test_schema_paths_are_the_walked_routes(client, db):
    schema = client.get("/api/schema/?format=json").json()
    walked = {"/" + r.pattern.replace("<str:", "{").replace(">", "}") for r in api_routes()}
    documented = {p for p in schema["paths"] if p.startswith("/api/v1/")}
    assert documented == walked


@pytest.mark.parametrize(("route", "method"), _cases(), ids=lambda v: v.pattern if isinstance(v, Route) else v)
def test_another_teams_member_gets_404_and_changes_nothing(route, method, victim, attacker):
    values_in_victims_team = victim.values
    # The same ids, but asked through the attacker's own team.
    values_in_own_team = {**victim.values, "team": "bravo"}
    urls = {route.url(values_in_victims_team)}
    if len(route.kwargs) > 1:
        urls.add(route.url(values_in_own_team))
    if len(route.kwargs) > 2:
        # Parents from the attacker's team, the leaf from the victim's (e.g. a victim's grant id
        # under the attacker's own project).
        own_parents = {**values_in_own_team, "project": "bravo-only", "app": "bravo-app"}
        urls.add(route.url({**own_parents, route.kwargs[-1]: victim.values[route.kwargs[-1]]}))
    before = database_fingerprint()
    for via, client in attacker_clients(attacker).items():
        fingerprint = database_fingerprint()
        for url in sorted(urls):
            response = getattr(client, method)(url, HOSTILE_BODY, format="json")
            assert response.status_code == 404, f"{method.upper()} {url} via {via}: {response.status_code}"
            assert_error(response, 404, "not_found")
        assert database_fingerprint() == fingerprint
    assert len(before) > 0


@pytest.mark.parametrize("route", [r for r in team_routes() if "get" in r.methods], ids=lambda r: r.pattern)
def test_the_victims_own_owner_can_read_every_route(route, victim):
    """The other side of the walker: the fillers point at real objects, so the 404s above come
    from tenancy and not from a wrong id."""
    _, raw = make_token(victim.world.team, victim.world.user("owner"))
    response = token_client(raw).get(route.url(victim.values))
    assert response.status_code == 200, (route.pattern, response.status_code, response.content[:300])


def test_me_and_team_list_show_only_the_callers_teams(victim, attacker):
    _, raw = make_token(attacker.team, attacker.user("owner"))
    client = token_client(raw)
    teams = client.get("/api/v1/teams/").json()["results"]
    assert [t["slug"] for t in teams] == ["bravo"]
    me = client.get("/api/v1/me/").json()
    assert me["email"] == attacker.user("owner").email
    assert me["token"]["team"] == "bravo"
    # A person in both teams sees both by session, but a token of one team sees only that team.
    both = attacker.user("viewer")
    from apps.teams.models import Membership

    Membership.objects.create(team=victim.world.team, user=both, role="viewer")
    assert {t["slug"] for t in session_client(both).get("/api/v1/teams/").json()["results"]} == {
        "alpha",
        "bravo",
    }
    _, raw = make_token(attacker.team, both)
    token_teams = token_client(raw).get("/api/v1/teams/").json()["results"]
    assert [t["slug"] for t in token_teams] == ["bravo"]
    # ...and that token cannot reach the other team at all.
    assert_error(token_client(raw).get("/api/v1/teams/alpha/"), 404, "not_found")
