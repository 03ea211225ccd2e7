"""Detaching a database rewrites the app's variables, exactly like attaching: whoever may manage
the database but may not change the app's configuration cannot break the app by removing its
DATABASE_URL (issue 11, item 11: "detach checks the app's change-config capability like attach").

The attack: a member holding only a `manage_databases` grant (on the database's project) (or a token with the
`infra` scope but not `deploy`) deletes the attachment of an app they may not configure."""

from typing import Any

import pytest

from apps.core.access import resolve_team
from apps.core.actors import Actor
from apps.databases import services
from apps.databases.models import Database, DatabaseAttachment, DatabaseServer, DatabaseStatus
from apps.deployments.models import App
from apps.secrets import crypto
from apps.secrets.selectors import environment_from_versions, version_ids_for_app
from apps.teams.services import grant_create
from tests.conftest import TeamWorld, assert_error

DETACH = "/api/v1/teams/alpha/databases/main/attachments/api/"
ATTACH = "/api/v1/teams/alpha/databases/main/attachments/"


@pytest.fixture
def attached(team_a: TeamWorld) -> tuple[Database, App]:
    """Database "main" (available) attached to app "api" by the owner. The server is recorded as
    registerserver leaves it; nothing here connects to it (attaching only builds the URL)."""
    DatabaseServer.objects.create(
        name="pg-detach", engine="postgres", version="15",
        admin_url_encrypted=crypto.encrypt("postgres://postgres@127.0.0.1:5432/postgres"),
    )  # fmt: skip
    owner = resolve_team(Actor(user=team_a.user("owner"), via="test"), team_a.team.slug)
    database = services.database_create(ctx=owner, project=team_a.project, name="main", engine="postgres")
    Database.objects.filter(pk=database.pk).update(status=DatabaseStatus.AVAILABLE)
    database.refresh_from_db()
    app = App.objects.create(team=team_a.team, project=team_a.project, name="api")
    services.database_attach(ctx=owner, database=database, app=app)
    return database, app


def still_attached(database: Database, app: App) -> bool:
    environment = environment_from_versions(version_ids_for_app(app))
    return DatabaseAttachment.objects.filter(database=database, app=app).exists() and "DATABASE_URL" in environment


def test_a_database_only_grant_cannot_detach_an_app_it_may_not_configure(
    team_a: TeamWorld, attached: Any, client_for: Any
) -> None:
    database, app = attached
    viewer = team_a.user("viewer")  # no change_config anywhere
    # Databases carry no grant tables of their own: a grant on their project covers them.
    grant_create(ctx=resolve_team(Actor(user=team_a.user("owner"), via="test"), team_a.team.slug),
                 obj=team_a.project, capability="manage_databases", user_id=viewer.pk, group_slug=None)  # fmt: skip
    client = client_for(team_a, "viewer")
    assert client.post("/api/v1/teams/alpha/databases/main/reveal/").status_code == 200  # the grant works

    error = assert_error(client.delete(DETACH), 403, "permission_denied")
    assert "configuration of app api" in error["message"]
    assert_error(client.post(ATTACH, {"app": "api", "env_name": "OTHER_URL"}, format="json"), 403, "permission_denied")

    assert still_attached(database, app)


def test_a_token_with_infra_but_not_deploy_cannot_detach(team_a: TeamWorld, attached: Any, client_for: Any) -> None:
    database, app = attached
    infra_only = client_for(team_a, "owner", scopes=["read", "infra"])

    assert_error(infra_only.delete(DETACH), 403, "permission_denied")
    assert still_attached(database, app)

    # The same owner with the deploy scope too may detach.
    assert client_for(team_a, "owner", scopes=["read", "infra", "deploy"]).delete(DETACH).status_code == 204
    assert not DatabaseAttachment.objects.filter(database=database, app=app).exists()


def test_the_service_itself_refuses_whatever_the_caller(team_a: TeamWorld, attached: Any) -> None:
    """The check sits in the service, under the API, the portal, the admin and commands alike."""
    from apps.core.errors import PermissionDenied

    database, app = attached
    developer_less = resolve_team(Actor(user=team_a.user("viewer"), via="test"), team_a.team.slug)
    with pytest.raises(PermissionDenied, match="configuration of app api"):
        services.database_detach(ctx=developer_less, database=database, app=app)
    assert still_attached(database, app)
