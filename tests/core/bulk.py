"""Bulk factories for list-endpoint tests: `grow(world, start, count)` adds `count` rows to what a
list endpoint of team `world` shows, fast (bulk_create, no services), numbered from `start`."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.models import AuditEvent
from apps.deployments.models import App, Deployment, DeploymentEvent, DeploymentStatus
from apps.teams.models import (
    Membership,
    Project,
    ServiceAccount,
    Team,
    TeamGroup,
)
from apps.teams.services import default_plan, grant_models
from apps.tokens.models import ApiToken, hash_token
from tests.conftest import TeamWorld


def users(world: TeamWorld, start: int, count: int, tag: str, **fields: Any) -> list[User]:
    return User.objects.bulk_create(
        User(username=f"{tag}{i}@{world.team.slug}.bulk", email=f"{tag}{i}@{world.team.slug}.bulk", **fields)
        for i in range(start, start + count)
    )


def members(world: TeamWorld, start: int, count: int) -> None:
    Membership.objects.bulk_create(
        Membership(team=world.team, user=user, role="viewer") for user in users(world, start, count, "m")
    )


def teams(world: TeamWorld, start: int, count: int) -> None:
    created = Team.objects.bulk_create(
        Team(slug=f"bulk-{i}", name=f"Bulk {i}", plan=default_plan()) for i in range(start, start + count)
    )
    Membership.objects.bulk_create(Membership(team=t, user=world.user("owner"), role="admin") for t in created)


def projects(world: TeamWorld, start: int, count: int) -> list[Project]:
    return Project.objects.bulk_create(
        Project(team=world.team, slug=f"p{i}", name=f"P{i}") for i in range(start, start + count)
    )


def team_groups(world: TeamWorld, start: int, count: int) -> list[TeamGroup]:
    auth_groups = Group.objects.bulk_create(
        Group(name=f"team-{world.team.pk}-g{i}") for i in range(start, start + count)
    )
    created = TeamGroup.objects.bulk_create(
        TeamGroup(team=world.team, slug=f"g{i}", name=f"G{i}", group=g)
        for i, g in zip(range(start, start + count), auth_groups, strict=True)
    )
    people = [world.user("developer"), world.user("viewer")]
    User.groups.through.objects.bulk_create(
        User.groups.through(user=person, group=g) for g in auth_groups for person in people
    )
    return created


def service_accounts(world: TeamWorld, start: int, count: int) -> None:
    robots = users(world, start, count, "sa", is_service_account=True)
    ServiceAccount.objects.bulk_create(
        ServiceAccount(team=world.team, slug=f"sa{i}", user=robot)
        for i, robot in zip(range(start, start + count), robots, strict=True)
    )
    Membership.objects.bulk_create(Membership(team=world.team, user=robot, role="developer") for robot in robots)


def tokens(world: TeamWorld, start: int, count: int) -> None:
    created = ApiToken.objects.bulk_create(
        ApiToken(
            team=world.team,
            user=world.user("developer"),
            name=f"t{i}",
            prefix=f"pst_bulk{i:04d}",
            token_hash=hash_token(f"bulk-{world.team.slug}-{i}"),
            scopes=["read"],
            expires_at=timezone.now() + timedelta(days=1),
        )
        for i in range(start, start + count)
    )
    ApiToken.projects.through.objects.bulk_create(
        ApiToken.projects.through(apitoken=token, project=world.project) for token in created
    )


def audit_events(world: TeamWorld, start: int, count: int) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(
            team=world.team,
            team_slug=world.team.slug,
            actor=world.user("owner"),
            actor_label="owner",
            action="project.update",
            target_type="teams.project",
            target_id=str(world.project.pk),
            target_label=str(i),
        )
        for i in range(start, start + count)
    )


def _grants_on(world: TeamWorld, obj: Any, start: int, count: int) -> None:
    """`count` user grants and `count` group grants of "deploy" on `obj` (a project or an app)."""
    deploy = Permission.objects.get(content_type=ContentType.objects.get_for_model(type(obj)), codename="deploy")
    user_grant, group_grant = grant_models(type(obj))
    user_grant.objects.bulk_create(
        user_grant(content_object=obj, user=u, permission=deploy) for u in users(world, start, count, "g")
    )
    group_grant.objects.bulk_create(
        group_grant(content_object=obj, group=g.group, permission=deploy) for g in team_groups(world, start, count)
    )


def grants(world: TeamWorld, start: int, count: int) -> None:
    """`count` user grants and `count` group grants on the project "web"."""
    _grants_on(world, world.project, start, count)


def the_app(world: TeamWorld) -> App:
    """The app "api" of project "web" (made on first use), which the nested list endpoints name."""
    app, _ = App.objects.get_or_create(team=world.team, name=APP, defaults={"project": world.project})
    return app


def _deployments_of(app: App, start: int, count: int) -> list[Deployment]:
    """Deployments numbered start+1 … start+count, superseded, each after #1 a rollback to #1 (so
    the list's rollback_of column is filled), with one event each."""
    created = Deployment.objects.bulk_create(
        Deployment(
            team=app.team,
            app=app,
            number=i + 1,
            image=f"registry.local/api:{i + 1}",
            status=DeploymentStatus.SUPERSEDED,
            config={"port": 8080},
            created_by_label="owner",
        )
        for i in range(start, start + count)
    )
    first = Deployment.objects.get(app=app, number=1)
    Deployment.objects.filter(app=app, number__gt=1, rollback_of=None).update(rollback_of=first)
    DeploymentEvent.objects.bulk_create(DeploymentEvent(deployment=d, message=f"Queued #{d.number}") for d in created)
    return created


def apps(world: TeamWorld, start: int, count: int) -> None:
    """`count` apps, each with a live deployment #1 (the list shows it and the latest status)."""
    created = App.objects.bulk_create(
        App(team=world.team, project=world.project, name=f"a{i}") for i in range(start, start + count)
    )
    live = Deployment.objects.bulk_create(
        Deployment(team=world.team, app=app, number=1, image="registry.local/a:1", status=DeploymentStatus.LIVE)
        for app in created
    )
    for app, deployment in zip(created, live, strict=True):
        app.live_deployment = deployment
    App.objects.bulk_update(created, ["live_deployment"])


def deployments(world: TeamWorld, start: int, count: int) -> None:
    _deployments_of(the_app(world), start, count)


def deployment_events(world: TeamWorld, start: int, count: int) -> None:
    """`count` events of deployment #1 of the app "api" (made with one event on first use)."""
    app = the_app(world)
    deployment = Deployment.objects.filter(app=app, number=1).first() or _deployments_of(app, 0, 1)[0]
    DeploymentEvent.objects.bulk_create(
        DeploymentEvent(deployment=deployment, level="info", message=f"Step {i}") for i in range(start, start + count)
    )


def app_grants(world: TeamWorld, start: int, count: int) -> None:
    """`count` user grants and `count` group grants on the app "api"."""
    _grants_on(world, the_app(world), start, count)


# The values of the URL parameters in the paths below.
APP = "api"
LIST_PARAMS = {"team": "alpha", "project": "web", "app": APP, "deployment": 1}

# list endpoint -> (path, grow(world, start, count), how the caller authenticates). A token sees
# only its own team, so the team list is measured for both kinds of caller.
LISTS: dict[str, tuple[str, Callable[[TeamWorld, int, int], Any], str]] = {
    "teams (token)": ("/api/v1/teams/", teams, "token"),
    "teams (session)": ("/api/v1/teams/", teams, "session"),
    "members": ("/api/v1/teams/alpha/members/", members, "token"),
    "projects": ("/api/v1/teams/alpha/projects/", projects, "token"),
    "groups with members": ("/api/v1/teams/alpha/groups/", team_groups, "token"),
    "service-accounts": ("/api/v1/teams/alpha/service-accounts/", service_accounts, "token"),
    "tokens with projects": ("/api/v1/teams/alpha/tokens/", tokens, "token"),
    "audit-events": ("/api/v1/teams/alpha/audit-events/", audit_events, "token"),
    "grants": ("/api/v1/teams/alpha/projects/web/grants/", grants, "token"),
    "apps with live and latest deployment": ("/api/v1/teams/alpha/apps/", apps, "token"),
    "deployments with rollback_of": ("/api/v1/teams/alpha/apps/api/deployments/", deployments, "token"),
    "deployment events": ("/api/v1/teams/alpha/apps/api/deployments/1/events/", deployment_events, "token"),
    "app grants": ("/api/v1/teams/alpha/apps/api/grants/", app_grants, "token"),
}
