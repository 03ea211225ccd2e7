"""Writes for API tokens. A raw token exists only in the return value of `token_create`; the
database keeps its hash and a short display prefix.

The rules that keep a token from outranking or outliving the people behind it live here, under
every caller (API, portal, admin, commands), not in the views:
- a person makes tokens only for themselves; the only tokens made for someone else are a
  service account's, made by a member who may manage members (owners, admins);
- a token made with a token has at most its parent's scopes, projects and lifetime, and making
  one with a token takes the `admin` scope;
- revoking a token other than the one in use takes the admin capability (role and `admin`
  scope, team-wide), unless a person revokes their own tokens or a token revokes a sibling that
  is no wider than itself — so a read-only or project-limited token cannot kill a team's CI.
Operators (the admin site, management commands: actors without a team membership) are not bound
by a team's roles."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.core.access import TeamContext
from apps.core.actors import Actor
from apps.core.capabilities import Capability, Scope
from apps.core.errors import NotFound, PermissionDenied, ValidationFailed
from apps.teams.models import Membership, Project, ServiceAccount, Team
from apps.tokens.models import DISPLAY_PREFIX_LENGTH, TOKEN_PREFIX, ApiToken, hash_token

# Actors that act for the platform's operators rather than as a member of the team.
OPERATOR_VIAS = frozenset({"admin"})


def _new_raw_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)  # 240 bits


def normalize_scopes(scopes: list[str]) -> list[str]:
    """Validated, de-duplicated, in matrix order; `read` is always included."""
    unknown = sorted(set(scopes) - {s.value for s in Scope})
    if unknown:
        raise ValidationFailed("Unknown scope.", fields={"scopes": [f"Unknown scope(s): {', '.join(unknown)}"]})
    wanted = {*scopes, Scope.READ.value}
    return [s.value for s in Scope if s.value in wanted]


def _member_context(actor: Actor, team: Team) -> TeamContext | None:
    """The acting member's context in `team`, or None for the platform's operators (system actors
    of commands and workers, staff on the admin site). A person who is not a member gets nothing."""
    if actor.user is None or (actor.via in OPERATOR_VIAS and actor.user.is_staff):
        return None
    membership = Membership.objects.select_related("team").filter(team=team, user=actor.user).first()
    if membership is None:
        raise NotFound()
    if actor.token is not None and actor.token.team_id != team.pk:
        raise NotFound()
    return TeamContext(actor=actor, membership=membership)


def _is_service_account_of(user: User, team: Team) -> bool:
    return ServiceAccount.objects.filter(team=team, user=user).exists()


def _covers(parent: ApiToken, child: ApiToken) -> bool:
    """Whether `child` is no wider than `parent`: its scopes within the parent's, and, when the
    parent is limited to projects, limited to some of those projects."""
    if not child.scope_set <= parent.scope_set:
        return False
    if not parent.project_ids:
        return True
    return bool(child.project_ids) and child.project_ids <= parent.project_ids


@transaction.atomic
def token_create(
    *,
    actor: Actor,
    team: Team,
    user: User,
    name: str,
    scopes: list[str],
    project_slugs: list[str] | None = None,
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for `user` and return it with its raw value, which is never stored or shown
    again. `user` is the acting member, or a service account of the team when the acting member may
    manage members: nobody mints a token that acts as another person. A token created with a token
    cannot get scopes or projects its creator lacks, nor outlive it."""
    ctx = _member_context(actor, team)
    if ctx is not None:
        if actor.token is not None and Scope.ADMIN not in actor.token.scope_set:
            raise PermissionDenied("Creating a token with a token needs the 'admin' scope.")
        if user.pk != actor.user.pk:
            if not _is_service_account_of(user, team):
                raise PermissionDenied(
                    "Tokens act as the person they belong to, so only that person can create them; "
                    "others can create tokens only for the team's service accounts.",
                    fields={"user": ["Not a service account of this team."]},
                )
            ctx.require(Capability.MANAGE_MEMBERS)
    if not Membership.objects.filter(team=team, user=user).exists():
        raise ValidationFailed("The token's user must be a member of the team.", fields={"user": ["Not a member."]})
    if not user.is_active:
        raise ValidationFailed("The token's user is deactivated.", fields={"user": ["Deactivated."]})
    scopes = normalize_scopes(scopes)
    days = settings.PANDASTACK_TOKEN_DEFAULT_EXPIRY_DAYS if expires_in_days is None else expires_in_days
    maximum = settings.PANDASTACK_TOKEN_MAX_EXPIRY_DAYS
    if not 1 <= days <= maximum:
        raise ValidationFailed(
            "Invalid expiry.", fields={"expires_in_days": [f"Must be between 1 and {maximum} days."]}
        )
    expires_at = timezone.now() + timedelta(days=days)
    project_slugs = sorted(set(project_slugs or []))
    projects = list(Project.objects.filter(team=team, slug__in=project_slugs))
    if len(projects) != len(project_slugs):
        found = {p.slug for p in projects}
        missing = [slug for slug in project_slugs if slug not in found]
        raise ValidationFailed("No such project.", fields={"projects": [f"No such project: {', '.join(missing)}"]})

    parent = actor.token
    if parent is not None:
        if not set(scopes) <= parent.scope_set:
            raise PermissionDenied("A token cannot create a token with scopes it does not have itself.")
        if parent.project_ids and (not projects or not {p.pk for p in projects} <= parent.project_ids):
            raise PermissionDenied("A project-limited token cannot create a token beyond its projects.")
        expires_at = min(expires_at, parent.expires_at)

    raw = _new_raw_token()
    token = ApiToken(
        team=team,
        user=user,
        name=name,
        prefix=raw[:DISPLAY_PREFIX_LENGTH],
        token_hash=hash_token(raw),
        scopes=scopes,
        expires_at=expires_at,
        created_by=actor.user,
    )
    token.full_clean()
    token.save()
    token.projects.set(projects)
    audit_record(
        actor=actor,
        action="token.create",
        target=token,
        team=team,
        data={
            "user": user.pk,
            "scopes": scopes,
            "projects": project_slugs,
            "expires_at": expires_at.isoformat(),
        },
    )
    return token, raw


def _require_may_revoke(ctx: TeamContext, token: ApiToken) -> None:
    acting = ctx.actor.token
    if acting is not None and acting.pk == token.pk:
        return  # a token may always end itself (a leaked token's holder cannot be stopped anyway)
    if token.user_id == ctx.actor.user.pk and (acting is None or _covers(acting, token)):
        return  # a person, signed in, manages their own tokens; a token its narrower siblings
    if not ctx.can(Capability.MANAGE_MEMBERS):
        raise PermissionDenied(
            "Revoking this token needs the right to manage members (an owner or admin, and a token with "
            "the 'admin' scope for the whole team).",
            capability=Capability.MANAGE_MEMBERS.value,
        )


@transaction.atomic
def token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke at once; idempotent. Members revoke their own tokens; revoking anyone else's (a
    service account's CI token included) takes the admin capability — see the module docstring."""
    ctx = _member_context(actor, token.team)
    if ctx is not None:
        _require_may_revoke(ctx, token)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
        audit_record(actor=actor, action="token.revoke", target=token, team=token.team)
    return token


def token_summary(token: ApiToken) -> dict[str, object]:
    """How a token is named in responses and audit rows about it (never its value or hash)."""
    return {"id": token.pk, "prefix": token.prefix, "name": token.name, "user": token.user_id}
