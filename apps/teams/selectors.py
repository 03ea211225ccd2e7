"""Reads for a caller: querysets already restricted and prefetched so list endpoints stay flat."""

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery

from apps.core.actors import Actor
from apps.teams.models import Membership, ServiceAccount, Team, TeamGroup


def team_list(*, actor: Actor) -> QuerySet[Team]:
    """The teams the caller belongs to (a token sees only its own team), with the caller's role."""
    memberships = Membership.objects.filter(team=OuterRef("pk"), user=actor.user)
    teams = Team.objects.filter(memberships__user=actor.user).select_related("plan")
    if actor.token is not None:
        teams = teams.filter(pk=actor.token.team_id)
    return teams.annotate(my_role=Subquery(memberships.values("role")[:1]))


def member_queryset() -> QuerySet[Membership]:
    return Membership.objects.filter(user__is_service_account=False).select_related("user")


def group_queryset() -> QuerySet[TeamGroup]:
    from apps.accounts.models import User

    return TeamGroup.objects.select_related("group").prefetch_related(
        Prefetch("group__user_set", queryset=User.objects.only("id"))
    )


def service_account_queryset() -> QuerySet[ServiceAccount]:
    role = Membership.objects.filter(team=OuterRef("team"), user=OuterRef("user")).values("role")[:1]
    return ServiceAccount.objects.annotate(role_in_team=Subquery(role))
