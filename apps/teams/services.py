"""Writes for teams, members, projects, groups, grants and service accounts. Each service takes the
acting `Actor`, validates, writes inside a transaction and records an audit event."""

from typing import Any

from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from apps.accounts.models import User
from apps.accounts.services import user_get_or_create_by_email
from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.actors import Actor
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


@transaction.atomic
def team_delete(*, actor: Actor, team: Team, confirm: str) -> None:
    """Delete the team and everything in it. `confirm` must repeat the team's slug."""
    require_confirmation(confirm, expected=team.slug, what="the team's slug")
    # The team's audit rows outlive it (their team becomes null, team_slug stays).
    audit_record(actor=actor, action="team.delete", target=team, team=team, data={"slug": team.slug})
    groups = list(TeamGroup.objects.filter(team=team).values_list("group_id", flat=True))
    service_users = list(ServiceAccount.objects.filter(team=team).values_list("user_id", flat=True))
    team.delete()
    Group.objects.filter(pk__in=groups).delete()
    User.objects.filter(pk__in=service_users).delete()


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


@transaction.atomic
def membership_remove(*, ctx: TeamContext, membership: Membership) -> None:
    """Remove a member: their grants, group memberships and tokens in this team go with them."""
    from apps.tokens.models import ApiToken

    _require_role_change_allowed(ctx, old=membership.role, new=None)
    _require_not_last_owner(ctx.team, membership)
    user = membership.user
    team_groups = Group.objects.filter(team_group__team=ctx.team)
    user.groups.remove(*team_groups)
    for model in guarded_models():
        grant_models(model)[0].objects.filter(user=user, content_object__team=ctx.team).delete()
    ApiToken.objects.filter(team=ctx.team, user=user, revoked_at=None).update(revoked_at=timezone.now())
    audit_record(
        actor=ctx.actor,
        action="member.remove",
        target=membership,
        team=ctx.team,
        data={"user": user.pk, "role": membership.role},
    )
    membership.delete()


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
def project_delete(*, ctx: TeamContext, project: Project, confirm: str) -> None:
    require_confirmation(confirm, expected=project.slug, what="the project's slug")
    audit_record(actor=ctx.actor, action="project.delete", target=project, team=ctx.team)
    project.delete()


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
