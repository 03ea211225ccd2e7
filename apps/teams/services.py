"""Writes for teams, members, projects, groups, grants and service accounts. Each service takes the
acting `Actor`, validates, writes inside a transaction and records an audit event."""

from dataclasses import dataclass
from typing import Any

from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from apps.accounts.models import User
from apps.accounts.services import user_get_or_create_by_email
from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.actors import Actor
from apps.core.broker import enqueue
from apps.core.capabilities import GRANTABLE, Capability, Role
from apps.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed, require_confirmation
from apps.teams.models import (
    Membership,
    Plan,
    Project,
    ServiceAccount,
    Team,
    TeamGroup,
)
from apps.teams.quotas import Limit, quota_check


def _save(obj: models.Model) -> models.Model:
    obj.full_clean()
    obj.save()
    return obj


def _require_slug_free(model: type[models.Model], team: Team, slug: str) -> None:
    """A taken slug is an error on `slug`: Django reports the (team, slug) constraint under
    `__all__`, which names no field."""
    if model.objects.filter(team=team, slug=slug).exists():
        message = f"A {model._meta.verbose_name} with this slug already exists in this team."
        raise ValidationFailed(message, fields={"slug": [message]})


# --- teams ------------------------------------------------------------------------------------
def default_plan() -> Plan:
    plan = Plan.objects.filter(is_default=True).first()
    if plan is None:
        plan, _ = Plan.objects.get_or_create(slug="free", defaults={"name": "Free", "is_default": True})
    return plan


@transaction.atomic
def team_create(*, actor: Actor, slug: str, name: str, owner: User | None = None) -> Team:
    """Create a team on the default plan with `owner` (default: the acting user) as its owner."""
    owner = owner or actor.user
    if owner is None or owner.is_service_account:
        raise PermissionDenied("A team's first owner must be a person.")
    team = _save(Team(slug=slug, name=name or slug, plan=default_plan()))
    Membership.objects.create(team=team, user=owner, role=Role.OWNER)
    audit_record(actor=actor, action="team.create", target=team, team=team, data={"owner": owner.pk})
    return team


@transaction.atomic
def team_update(*, actor: Actor, team: Team, name: str) -> Team:
    team.name = name
    _save(team)
    audit_record(actor=actor, action="team.update", target=team, team=team, data={"name": name})
    return team


# --- tearing down what a project or team holds -----------------------------------------------------
@dataclass(frozen=True)
class Teardown:
    """What deleting a project or a team did. `finished` is False while a worker still purges
    databases; the project or team row goes (answering 404 from then on) once they are gone."""

    apps: list[str]
    cron_jobs: list[str]
    databases: list[str]
    finished: bool

    def as_data(self) -> dict[str, Any]:
        return {"apps": self.apps, "cron_jobs": self.cron_jobs, "databases": self.databases,
                "finished": self.finished}  # fmt: skip


def _teardown_contents(*, ctx: TeamContext, projects: models.QuerySet) -> Teardown:
    """Delete everything inside `projects` through each kind's own service, so each keeps its own
    checks, audit event and clean-up: cron jobs (running containers stopped), databases (detached
    from their apps, credentials refused, then purged by a worker), apps (route removed, containers
    stopped by a worker). Databases skip their undelete grace period: the project or team holding
    them goes, so nothing could be undeleted into it. A database still being provisioned, backed up
    or restored makes the whole deletion a 409 (nothing is deleted): try again in a moment."""
    from apps.cron.models import CronJob
    from apps.cron.services import cron_job_delete
    from apps.databases.models import Database, DatabaseStatus
    from apps.databases.services import database_delete
    from apps.deployments.models import App
    from apps.deployments.services import app_delete

    jobs = list(CronJob.objects.filter(project__in=projects).select_related("project").order_by("id"))
    databases = list(Database.objects.filter(project__in=projects).select_related("project").order_by("id"))
    apps = list(App.objects.filter(project__in=projects).select_related("project").order_by("id"))
    # Deleting everything inside is each of those capabilities on each object (a grant on the project
    # covers what is in it): deleting a project is not a way around "who may drop a database".
    for job in jobs:
        ctx.require(Capability.MANAGE_CRON, job)
    for database in databases:
        ctx.require(Capability.MANAGE_DATABASES, database)
    for app in apps:
        ctx.require(Capability.DELETE, app)
    for job in jobs:
        cron_job_delete(ctx=ctx, job=job, confirm=job.name)
    gone = (DatabaseStatus.DELETED, DatabaseStatus.DELETING)
    for database in databases:
        if database.status not in gone:
            database_delete(ctx=ctx, database=database, confirm=database.name)  # before its apps: detach
    now = timezone.now()
    # Purge at once (the grace period would keep the rows, and so the project, alive).
    Database.objects.filter(project__in=projects, status=DatabaseStatus.DELETED).update(
        status=DatabaseStatus.DELETING, purge_after=now, updated_at=now
    )
    for app in apps:
        app_delete(ctx=ctx, app=app, confirm=app.name)
    return Teardown(
        apps=[a.name for a in apps],
        cron_jobs=[j.name for j in jobs],
        databases=[d.name for d in databases],
        finished=not Database.objects.filter(project__in=projects).exists(),
    )


def _enqueue_finish(*, team_id: int, project_id: int | None = None) -> None:
    from apps.teams.tasks import deletion_finish

    enqueue(deletion_finish, team_id, project_id)


@transaction.atomic
def team_delete(*, ctx: TeamContext, confirm: str) -> Teardown:
    """Delete the team and everything in it (`confirm` repeats the team's slug): cron jobs, apps
    and databases through their own services, then members, groups, service accounts and tokens.
    When databases must still be purged by a worker, the team is left without members (nobody can
    reach it: 404), suspended with the reason, and its row is deleted once they are gone. The
    audit trail stays (apps.audit keeps rows of deleted teams with their slug and id)."""
    ctx.require(Capability.MANAGE_TEAM)
    team = Team.objects.select_for_update().get(pk=ctx.team.pk)
    require_confirmation(confirm, expected=team.slug, what="the team's slug")
    teardown = _teardown_contents(ctx=ctx, projects=Project.objects.filter(team=team))
    audit_record(actor=ctx.actor, action="team.delete", target=team, team=team,
                 data={"slug": team.slug, **teardown.as_data()})  # fmt: skip
    _team_release_people(team)
    if teardown.finished:
        team.delete()
        return teardown
    team.suspended_at = timezone.now()
    team.suspended_reason = f"Deleted by {ctx.actor.label}; its databases are being purged."[:200]
    team.save(update_fields=["suspended_at", "suspended_reason", "updated_at"])
    _enqueue_finish(team_id=team.pk)
    return teardown


def _team_release_people(team: Team) -> None:
    """Members, groups, service accounts and tokens of a team being deleted go at once."""
    from apps.tokens.models import ApiToken

    ApiToken.objects.filter(team=team, revoked_at=None).update(revoked_at=timezone.now())
    groups = list(TeamGroup.objects.filter(team=team).values_list("group_id", flat=True))
    service_users = list(ServiceAccount.objects.filter(team=team).values_list("user_id", flat=True))
    TeamGroup.objects.filter(team=team).delete()
    Group.objects.filter(pk__in=groups).delete()
    Membership.objects.filter(team=team).delete()
    User.objects.filter(pk__in=service_users).delete()


def deletion_finish(*, team_id: int, project_id: int | None = None) -> bool:
    """The worker's part of deleting a team (or one project): purge the databases left, then delete
    the row. Idempotent; returns whether the row is gone (False: run again later). A project that
    got new contents meanwhile is kept (the newest intent wins)."""
    from apps.cron.models import CronJob
    from apps.databases.models import Database, DatabaseStatus
    from apps.databases.services import database_purge
    from apps.deployments.models import App

    scope = {"project_id": project_id} if project_id is not None else {"team_id": team_id}
    for database_id in Database.objects.filter(status=DatabaseStatus.DELETING, **scope).values_list("pk", flat=True):
        database_purge(database_id=database_id)  # raises when the server is unreachable: retried
    with transaction.atomic():
        if project_id is not None:
            project = Project.objects.select_for_update().filter(pk=project_id, team_id=team_id).first()
            if project is None:
                return True
            if any(m.objects.filter(project=project).exists() for m in (Database, App, CronJob)):
                return not Database.objects.filter(project=project, status=DatabaseStatus.DELETING).exists()
            project.delete()
            return True
        team = Team.objects.select_for_update().filter(pk=team_id).first()
        if team is None:
            return True
        if Database.objects.filter(team=team).exists():
            return False
        _team_release_people(team)
        team.delete()
        return True


@transaction.atomic
def team_set_suspended(*, actor: Actor, team: Team, suspended: bool, reason: str = "") -> Team:
    """Operators suspend a team to block its API access (and resume it)."""
    team.suspended_at = timezone.now() if suspended else None
    team.suspended_reason = reason if suspended else ""
    team.save(update_fields=["suspended_at", "suspended_reason", "updated_at"])
    audit_record(
        actor=actor,
        action="team.suspend" if suspended else "team.resume",
        target=team,
        team=team,
        data={"reason": reason} if suspended else {},
    )
    return team


@transaction.atomic
def team_transfer_ownership(*, actor: Actor, team: Team, to: Membership) -> Membership:
    """Make `to` an owner and the acting owner an admin."""
    if to.user.is_service_account:
        raise ValidationFailed("A service account cannot own a team.", fields={"user": ["Pick a person."]})
    if to.user_id == actor.user.pk:
        raise ValidationFailed("You already own this team.", fields={"user": ["Pick another member."]})
    to.role = Role.OWNER
    to.save(update_fields=["role", "updated_at"])
    Membership.objects.filter(team=team, user=actor.user).update(role=Role.ADMIN, updated_at=timezone.now())
    audit_record(actor=actor, action="team.transfer_ownership", target=team, team=team, data={"to": to.user_id})
    return to


# --- members ------------------------------------------------------------------------------------
def _require_role_change_allowed(ctx: TeamContext, *, old: str | None, new: str | None) -> None:
    if Role.OWNER in (old, new):
        ctx.require(Capability.MANAGE_TEAM)


def _require_not_last_owner(team: Team, membership: Membership) -> None:
    if membership.role == Role.OWNER:
        owners = Membership.objects.select_for_update().filter(team=team, role=Role.OWNER).count()
        if owners <= 1:
            raise Conflict("A team needs at least one owner; make someone else owner first.", code="last_owner")


@transaction.atomic
def membership_add(*, ctx: TeamContext, email: str, role: str) -> Membership:
    """Add a person by e-mail with `role`; an account is created for an unknown address (the person
    sets a password through the reset flow)."""
    _require_role_change_allowed(ctx, old=None, new=role)
    user, created = user_get_or_create_by_email(email=email)
    if Membership.objects.filter(team=ctx.team, user=user).exists():
        raise Conflict(f"{email} is already a member of this team.", fields={"email": ["Already a member."]})
    membership = Membership.objects.create(team=ctx.team, user=user, role=role)
    audit_record(
        actor=ctx.actor,
        action="member.add",
        target=membership,
        team=ctx.team,
        data={"user": user.pk, "role": role, "account_created": created},
    )
    return membership


@transaction.atomic
def membership_change_role(*, ctx: TeamContext, membership: Membership, role: str) -> Membership:
    old = membership.role
    if old == role:
        return membership
    _require_role_change_allowed(ctx, old=old, new=role)
    _require_not_last_owner(ctx.team, membership)
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    audit_record(
        actor=ctx.actor,
        action="member.change_role",
        target=membership,
        team=ctx.team,
        data={"user": membership.user_id, "from": old, "to": role},
    )
    return membership


@dataclass(frozen=True)
class MemberRemoval:
    """What removing a member did to the tokens they hold or minted (for the response and audit)."""

    user_id: int
    tokens_revoked: list[dict[str, Any]]
    service_account_tokens_kept: list[dict[str, Any]]


@transaction.atomic
def membership_remove(
    *, ctx: TeamContext, membership: Membership, revoke_service_account_tokens: bool = False
) -> MemberRemoval:
    """Remove a member: their grants, group memberships and tokens in this team go with them, and
    so does every token they minted for the team — except, unless asked, tokens they made for the
    team's service accounts (CI should not stop when its author leaves). Those are listed in the
    result and the audit event, so whoever removes a departing admin sees which robot tokens that
    admin could still hold, and can revoke them here (`revoke_service_account_tokens`) or later."""
    from apps.tokens.models import ApiToken
    from apps.tokens.services import token_summary

    if membership.user_id != ctx.membership.user_id:  # leaving needs no right; removing others does
        ctx.require(Capability.MANAGE_MEMBERS)
    _require_role_change_allowed(ctx, old=membership.role, new=None)
    _require_not_last_owner(ctx.team, membership)
    user = membership.user
    team_groups = Group.objects.filter(team_group__team=ctx.team)
    user.groups.remove(*team_groups)
    for model in guarded_models():
        grant_models(model)[0].objects.filter(user=user, content_object__team=ctx.team).delete()
    active = ApiToken.objects.filter(team=ctx.team, revoked_at=None).select_related("user").order_by("id")
    theirs = list(active.filter(Q(user=user) | Q(created_by=user)))
    service_account_users = set(ServiceAccount.objects.filter(team=ctx.team).values_list("user_id", flat=True))
    kept = [
        t
        for t in theirs
        if not revoke_service_account_tokens and t.user_id != user.pk and t.user_id in service_account_users
    ]
    revoked = [t for t in theirs if t not in kept]
    ApiToken.objects.filter(pk__in=[t.pk for t in revoked]).update(revoked_at=timezone.now())
    result = MemberRemoval(
        user_id=user.pk,
        tokens_revoked=[token_summary(t) for t in revoked],
        service_account_tokens_kept=[token_summary(t) for t in kept],
    )
    audit_record(
        actor=ctx.actor,
        action="member.remove",
        target=membership,
        team=ctx.team,
        data={
            "user": user.pk,
            "role": membership.role,
            "tokens_revoked": result.tokens_revoked,
            "service_account_tokens_kept": result.service_account_tokens_kept,
        },
    )
    membership.delete()
    return result


def member_of_team(team: Team, user_id: Any, *, field: str = "user") -> Membership:
    """The membership of `user_id` in `team`, or a field error (a 400, not a leak: ids of people
    in other teams look exactly like ids of nobody)."""
    membership = None
    if str(user_id).isdigit():
        membership = Membership.objects.select_related("user").filter(team=team, user_id=user_id).first()
    if membership is None:
        raise ValidationFailed("No such member in this team.", fields={field: ["No such member in this team."]})
    return membership


# --- projects -----------------------------------------------------------------------------------
@transaction.atomic
def project_create(*, ctx: TeamContext, slug: str, name: str, description: str = "") -> Project:
    team = Team.objects.select_for_update().get(pk=ctx.team.pk)  # serialises concurrent quota checks
    quota_check(team=ctx.team, limit=Limit.PROJECTS, current=Project.objects.filter(team=team).count())
    _require_slug_free(Project, ctx.team, slug)
    project = _save(Project(team=ctx.team, slug=slug, name=name or slug, description=description))
    audit_record(actor=ctx.actor, action="project.create", target=project, team=ctx.team)
    return project


@transaction.atomic
def project_update(*, ctx: TeamContext, project: Project, **changes: Any) -> Project:
    if not changes:
        return project
    for field, value in changes.items():
        setattr(project, field, value)
    _save(project)
    audit_record(actor=ctx.actor, action="project.update", target=project, team=ctx.team, data=changes)
    return project


@transaction.atomic
def project_delete(*, ctx: TeamContext, project: Project, confirm: str) -> Teardown:
    """Delete the project and everything in it (`confirm` repeats its slug): cron jobs, databases
    and apps through their own services. When databases must still be purged by a worker, the
    project row goes once they are (the answer says so: `finished` is False)."""
    ctx.require(Capability.DELETE, project)
    require_confirmation(confirm, expected=project.slug, what="the project's slug")
    project = Project.objects.select_for_update().get(pk=project.pk)
    teardown = _teardown_contents(ctx=ctx, projects=Project.objects.filter(pk=project.pk))
    data = teardown.as_data() if teardown.apps or teardown.cron_jobs or teardown.databases else {}
    audit_record(actor=ctx.actor, action="project.delete", target=project, team=ctx.team, data=data)
    if teardown.finished:
        project.delete()
    else:
        _enqueue_finish(team_id=ctx.team.pk, project_id=project.pk)
    return teardown


# --- groups -------------------------------------------------------------------------------------
def _group_members(ctx: TeamContext, user_ids: list[int]) -> list[User]:
    users = list(User.objects.filter(pk__in=user_ids, memberships__team=ctx.team))
    missing = set(user_ids) - {u.pk for u in users}
    if missing:
        raise ValidationFailed(
            "Groups can only hold members of this team.",
            fields={"members": [f"Not a member of this team: {sorted(missing)}"]},
        )
    return users


@transaction.atomic
def group_create(*, ctx: TeamContext, slug: str, name: str, members: list[int]) -> TeamGroup:
    users = _group_members(ctx, members)
    _require_slug_free(TeamGroup, ctx.team, slug)
    group = TeamGroup(team=ctx.team, slug=slug, name=name or slug)
    group.full_clean(exclude=["group"])
    group.group = Group.objects.create(name=f"team-{ctx.team.pk}-{slug}")
    group.save()
    group.group.user_set.set(users)
    audit_record(actor=ctx.actor, action="group.create", target=group, team=ctx.team, data={"members": members})
    return group


@transaction.atomic
def group_update(
    *, ctx: TeamContext, group: TeamGroup, name: str | None = None, members: list[int] | None = None
) -> TeamGroup:
    data: dict[str, Any] = {}
    if name is not None:
        group.name = data["name"] = name
        _save(group)
    if members is not None:
        group.group.user_set.set(_group_members(ctx, members))
        data["members"] = members
    if data:
        audit_record(actor=ctx.actor, action="group.update", target=group, team=ctx.team, data=data)
    return group


@transaction.atomic
def group_delete(*, ctx: TeamContext, group: TeamGroup) -> None:
    audit_record(actor=ctx.actor, action="group.delete", target=group, team=ctx.team)
    auth_group = group.group
    group.delete()
    auth_group.delete()  # its guardian grants go with it (direct foreign keys cascade)


# --- object grants ------------------------------------------------------------------------------
def guarded_models() -> list[type[models.Model]]:
    """Every model that carries its own grant tables (projects, apps, …)."""
    return [m for m in django_apps.get_models() if "" in getattr(m, "grant_paths", ())]


def grant_models(model: type[models.Model]) -> tuple[type[models.Model], type[models.Model]]:
    """The direct foreign-key grant tables of a guarded model (its `user_grants` and
    `group_grants` relations), e.g. ProjectUserObjectPermission and ProjectGroupObjectPermission."""
    return model.user_grants.rel.related_model, model.group_grants.rel.related_model


def grant_id(row: models.Model) -> str:
    return f"{'user' if hasattr(row, 'user_id') else 'group'}-{row.pk}"


@transaction.atomic
def grant_create(
    *, ctx: TeamContext, obj: models.Model, capability: str, user_id: int | None, group_slug: str | None
) -> tuple[models.Model, bool]:
    """Give a member or a team group `capability` on `obj` (and what it contains). Idempotent:
    returns (grant, created)."""
    if capability not in {c.value for c in GRANTABLE}:
        raise ValidationFailed("This capability cannot be granted.", fields={"capability": ["Not grantable."]})
    if (user_id is None) == (group_slug is None):
        raise ValidationFailed("Give exactly one of user or group.", fields={"user": ["Give user or group."]})
    user_model, group_model = grant_models(type(obj))
    if user_id is not None:
        subject: Any = member_of_team(ctx.team, user_id).user
        lookup = {"user": subject}
        model = user_model
    else:
        team_group = TeamGroup.objects.filter(team=ctx.team, slug=group_slug).select_related("group").first()
        if team_group is None:
            raise ValidationFailed("No such group in this team.", fields={"group": ["No such group."]})
        subject = team_group.group
        lookup = {"group": subject}
        model = group_model
    permission = Permission.objects.get(content_type=ContentType.objects.get_for_model(type(obj)), codename=capability)
    existing = model.objects.filter(content_object=obj, permission=permission, **lookup).first()
    if existing:
        return existing, False
    assign_perm(permission, subject, obj)
    row = model.objects.get(content_object=obj, permission=permission, **lookup)
    audit_record(
        actor=ctx.actor,
        action="grant.create",
        target=obj,
        team=ctx.team,
        data={"grant": grant_id(row), "capability": capability, "user": user_id, "group": group_slug},
    )
    return row, True


@transaction.atomic
def grant_revoke(*, ctx: TeamContext, obj: models.Model, row: models.Model) -> None:
    subject = row.user if hasattr(row, "user_id") else row.group
    remove_perm(row.permission, subject, obj)
    audit_record(
        actor=ctx.actor,
        action="grant.revoke",
        target=obj,
        team=ctx.team,
        data={"grant": grant_id(row), "capability": row.permission.codename},
    )


def grant_get(*, obj: models.Model, grant: str) -> models.Model:
    kind, _, pk = grant.partition("-")
    user_model, group_model = grant_models(type(obj))
    model = {"user": user_model, "group": group_model}.get(kind)
    row = model.objects.filter(content_object=obj, pk=pk).first() if model and pk.isdigit() else None
    if row is None:
        raise NotFound()
    return row


# --- service accounts ---------------------------------------------------------------------------
MAX_SERVICE_ACCOUNT_ROLE = Role.ADMIN


def _check_service_account_role(ctx: TeamContext, role: str) -> None:
    if Role(role).rank > MAX_SERVICE_ACCOUNT_ROLE.rank:
        raise ValidationFailed("A service account can be at most admin.", fields={"role": ["At most admin."]})


@transaction.atomic
def service_account_create(*, ctx: TeamContext, slug: str, role: str, description: str = "") -> ServiceAccount:
    _check_service_account_role(ctx, role)
    _require_slug_free(ServiceAccount, ctx.team, slug)
    account = ServiceAccount(team=ctx.team, slug=slug, description=description)
    account.full_clean(exclude=["user"])
    user = User(username=f"sa-{ctx.team.pk}-{slug}", is_service_account=True)
    user.set_unusable_password()
    user.save()
    account.user = user
    account.created_by = ctx.actor.user
    account.save()
    Membership.objects.create(team=ctx.team, user=user, role=role)
    audit_record(actor=ctx.actor, action="service_account.create", target=account, team=ctx.team, data={"role": role})
    return account


@transaction.atomic
def service_account_update(
    *, ctx: TeamContext, account: ServiceAccount, role: str | None = None, description: str | None = None
) -> ServiceAccount:
    data: dict[str, Any] = {}
    if description is not None:
        account.description = data["description"] = description
        _save(account)
    if role is not None:
        _check_service_account_role(ctx, role)
        Membership.objects.filter(team=ctx.team, user=account.user).update(role=role, updated_at=timezone.now())
        data["role"] = role
    if data:
        audit_record(actor=ctx.actor, action="service_account.update", target=account, team=ctx.team, data=data)
    return account


@transaction.atomic
def service_account_delete(*, ctx: TeamContext, account: ServiceAccount) -> None:
    """Delete the account, its membership and its tokens (they stop working at once)."""
    audit_record(actor=ctx.actor, action="service_account.delete", target=account, team=ctx.team)
    user = account.user
    account.delete()
    user.delete()
