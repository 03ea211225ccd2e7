"""Writes for API tokens. A raw token exists only in the return value of `token_create`; the
database keeps its hash and a short display prefix."""

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.core.actors import Actor
from apps.core.capabilities import Scope
from apps.core.errors import PermissionDenied, ValidationFailed
from apps.teams.models import Membership, Project, Team
from apps.tokens.models import DISPLAY_PREFIX_LENGTH, TOKEN_PREFIX, ApiToken, hash_token


def _new_raw_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)  # 240 bits


def normalize_scopes(scopes: list[str]) -> list[str]:
    """Validated, de-duplicated, in matrix order; `read` is always included."""
    unknown = sorted(set(scopes) - {s.value for s in Scope})
    if unknown:
        raise ValidationFailed("Unknown scope.", fields={"scopes": [f"Unknown scope(s): {', '.join(unknown)}"]})
    wanted = {*scopes, Scope.READ.value}
    return [s.value for s in Scope if s.value in wanted]


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
    """Create a token for `user` (a member of `team`, a person or a service account) and return it
    with its raw value, which is never stored or shown again. A token created with a token cannot
    get scopes or projects its creator lacks, nor outlive it."""
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


@transaction.atomic
def token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke at once; idempotent."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at", "updated_at"])
        audit_record(actor=actor, action="token.revoke", target=token, team=token.team)
    return token
