"""Helpers for the variables and secrets tests: a team context for services, apps with a live
release made directly in the database (no worker runs here: on_commit tasks never fire inside the
test transaction), and the URLs of the three levels."""

from typing import Any

import pytest

from apps.core.access import TeamContext, resolve_team
from apps.core.actors import Actor
from apps.deployments.models import App, Deployment, DeploymentStatus
from apps.secrets import crypto
from apps.secrets.services import Scope
from apps.teams.models import Project
from tests.conftest import TeamWorld

BASE = "/api/v1/teams/alpha"
LEVEL_URLS = {
    "team": f"{BASE}/variables/",
    "project": f"{BASE}/projects/web/variables/",
    "app": f"{BASE}/apps/api/variables/",
}


@pytest.fixture(autouse=True)
def _fresh_keys() -> Any:
    # Tests switch PANDASTACK_SECRET_KEYS with the `settings` fixture; the key cache must follow
    # both ways, so no test sees another's keys.
    crypto.reset_keys()
    yield
    crypto.reset_keys()


def ctx_of(world: TeamWorld, role: str = "owner") -> TeamContext:
    return resolve_team(Actor.system("test", user=world.user(role)), world.team.slug)


def make_app(world: TeamWorld, name: str = "api", *, project: Project | None = None, live: bool = True) -> App:
    """An app of `world` in its "web" project (or `project`); with `live`, a live deployment #1."""
    app = App.objects.create(team=world.team, project=project or world.project, name=name)
    if live:
        deployment = Deployment.objects.create(
            team=world.team, app=app, number=1, image="registry.local/api:1", status=DeploymentStatus.LIVE
        )
        app.live_deployment = deployment
        app.save(update_fields=["live_deployment"])
    return app


def scope_of(level: str, world: TeamWorld, app: App | None = None) -> Scope:
    if level == "app":
        return Scope(level="app", app=app)
    if level == "project":
        return Scope(level="project", project=world.project)
    return Scope(level="team")


@pytest.fixture
def app(team_a: TeamWorld) -> App:
    return make_app(team_a)
