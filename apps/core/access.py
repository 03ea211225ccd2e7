"""Tenancy and access, enforced in one place.

Every request that touches a team goes through `resolve_team` (which answers 404 for a team the
caller is not in, exactly as for a missing one) and then through `TeamContext.restrict` (every
queryset) and `TeamContext.require` (every action). Roles come first (apps.core.capabilities);
object grants (django-guardian direct foreign-key tables) widen a role on one object; a token
narrows its user by scopes and, optionally, projects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q

from apps.core.actors import Actor
from apps.core.capabilities import MATRIX, Capability, Role, role_allows, scope_allows
from apps.core.errors import NotFound, PermissionDenied, TeamSuspended

if TYPE_CHECKING:
    from apps.teams.models import Membership, Team


def resolve_team(actor: Actor, slug: str) -> TeamContext:
    """The team named in the URL, as seen by `actor`: 404 unless the actor is a member (and, for a
    token, unless the token belongs to that team); 403 when an operator suspended the team."""
    from apps.teams.models import Membership

    if actor.user is None:
        raise NotFound()
    membership = (
        Membership.objects.select_related("team", "team__plan").filter(team__slug=slug, user=actor.user).first()
    )
    if membership is None or (actor.token is not None and actor.token.team_id != membership.team_id):
        raise NotFound()
    if membership.team.is_suspended:
        raise TeamSuspended("This team is suspended; contact the operators of this PandaStack.")
    return TeamContext(actor=actor, membership=membership)


@dataclass
class TeamContext:
    actor: Actor
    membership: Membership
    _cache: dict[Any, bool] = field(default_factory=dict, repr=False)

    @property
    def team(self) -> Team:
        return self.membership.team

    @property
    def role(self) -> Role:
        return Role(self.membership.role)

    # -- single checks -------------------------------------------------------------------------
    def can(self, capability: Capability, obj: models.Model | None = None) -> bool:
        token = self.actor.token
        if token is not None:
            if not scope_allows(token.scope_set, capability):
                return False
            if token.project_ids:
                project_id = _project_id_of(obj)
                # A project-limited token acts only inside its projects; team-wide changes are out.
                if project_id is None and capability != Capability.VIEW:
                    return False
                if project_id is not None and project_id not in token.project_ids:
                    return False
        if role_allows(self.role, capability):
            return True
        if obj is None or not MATRIX[capability].grantable or not getattr(type(obj), "grant_paths", ()):
            return False
        key = (capability, type(obj), obj.pk)
        if key not in self._cache:
            model = type(obj)
            self._cache[key] = (
                model.objects.filter(pk=obj.pk).filter(grant_q(model, self.actor.user, capability)).exists()
            )
        return self._cache[key]

    def require(self, capability: Capability, obj: models.Model | None = None) -> None:
        if not self.can(capability, obj):
            raise PermissionDenied(_denial_message(self, capability), capability=capability.value)

    def require_person(self) -> None:
        if self.actor.token is not None:
            raise PermissionDenied("Only a person, signed in, can do this; tokens cannot.")

    # -- querysets ------------------------------------------------------------------------------
    def restrict(self, queryset: models.QuerySet, capability: Capability = Capability.VIEW) -> models.QuerySet:
        """`queryset` narrowed to what this caller may `capability` in this team."""
        model = queryset.model
        queryset = queryset.filter(team=self.team)
        token = self.actor.token
        if token is not None:
            if not scope_allows(token.scope_set, capability):
                return queryset.none()
            project_lookup = getattr(model, "project_lookup", None)
            if token.project_ids and project_lookup:
                queryset = queryset.filter(**{f"{project_lookup}__in": token.project_ids})
        if role_allows(self.role, capability):
            return queryset
        if not MATRIX[capability].grantable or not getattr(model, "grant_paths", ()):
            return queryset.none()
        granted = model.objects.filter(grant_q(model, self.actor.user, capability)).values("pk")
        return queryset.filter(pk__in=granted)

    def get(self, queryset: models.QuerySet, **lookup: Any) -> Any:
        """One object the caller can see, or 404 (the same answer for missing and not-yours)."""
        obj = self.restrict(queryset).filter(**lookup).first()
        if obj is None:
            raise NotFound()
        return obj


def grant_q(model: type[models.Model], user: Any, capability: Capability) -> Q:
    """Objects of `model` on which `user` (directly or through a team group) holds a grant of
    `capability`, on the object itself or on a parent that covers it (a project covers its apps)."""
    q = Q()
    for path in model.grant_paths:
        p = f"{path}__" if path else ""
        q |= Q(**{f"{p}user_grants__user": user, f"{p}user_grants__permission__codename": capability.value})
        q |= Q(
            **{
                f"{p}group_grants__group__user": user,
                f"{p}group_grants__permission__codename": capability.value,
            }
        )
    return q


def _project_id_of(obj: models.Model | None) -> int | None:
    if obj is None:
        return None
    lookup = getattr(type(obj), "project_lookup", None)
    if lookup is None:
        return None
    if lookup == "pk":
        return obj.pk
    *parents, last = lookup.split("__")
    for name in parents:  # e.g. "app__project": the app's project id
        obj = getattr(obj, name)
    return getattr(obj, f"{last}_id", None)


def _denial_message(ctx: TeamContext, capability: Capability) -> str:
    rule = MATRIX[capability]
    token = ctx.actor.token
    if token is not None:
        if rule.scope is None:
            return f"'{capability}' can only be done by a person, not with a token."
        if not scope_allows(token.scope_set, capability):
            return f"This token lacks the '{rule.scope}' scope needed for '{capability}'."
        if token.project_ids:
            return f"This token is limited to some projects and cannot '{capability}' here."
    return f"Your role ({ctx.role}) does not allow '{capability}' here."
