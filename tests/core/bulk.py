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
from apps.teams.models import (
    Membership,
    Project,
    ProjectGroupObjectPermission,
    ProjectUserObjectPermission,
    ServiceAccount,
    Team,
    TeamGroup,
)
from apps.teams.services import default_plan
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


def grants(world: TeamWorld, start: int, count: int) -> None:
    """`count` user grants and `count` group grants on the project "web"."""
    deploy = Permission.objects.get(content_type=ContentType.objects.get_for_model(Project), codename="deploy")
    ProjectUserObjectPermission.objects.bulk_create(
        ProjectUserObjectPermission(content_object=world.project, user=u, permission=deploy)
        for u in users(world, start, count, "g")
    )
    ProjectGroupObjectPermission.objects.bulk_create(
        ProjectGroupObjectPermission(content_object=world.project, group=g.group, permission=deploy)
        for g in team_groups(world, start, count)
    )


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
}
