from typing import Any, ClassVar

from django.db import models
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.generics import ListCreateAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.actors import Actor
from apps.core.api.pagination import paginate_chain
from apps.core.api.views import TeamScopedCrudViewSet, TeamScopedViewSet, crud_capabilities
from apps.core.capabilities import Capability
from apps.core.errors import PermissionDenied
from apps.teams import selectors, services
from apps.teams.api import serializers as s
from apps.teams.models import Project


def teardown_response(teardown: services.Teardown) -> Response:
    if teardown.finished:
        return Response(status=status.HTTP_204_NO_CONTENT)
    return Response(s.TeardownOutput(teardown).data, status=status.HTTP_202_ACCEPTED)


class TeamListView(ListCreateAPIView):
    """Your teams; create a team (you become its owner)."""

    permission_classes = [IsAuthenticated]
    serializer_class = s.TeamOutput

    def get_queryset(self) -> models.QuerySet:
        return selectors.team_list(actor=Actor.from_request(self.request))

    @extend_schema(request=s.TeamCreateInput, responses={201: s.TeamOutput})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        actor = Actor.from_request(request)
        if actor.token is not None:
            raise PermissionDenied("Only a person, signed in, can create a team; tokens cannot.")
        data = s.TeamCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        team = services.team_create(actor=actor, **data.validated_data)
        team.my_role = "owner"
        return Response(s.TeamOutput(team).data, status=status.HTTP_201_CREATED)


class TeamViewSet(TeamScopedViewSet):
    """One team: read it, rename it, delete it (owner), transfer ownership (owner)."""

    serializer_class = s.TeamOutput
    capability_map: ClassVar = {
        "retrieve": Capability.VIEW,
        "partial_update": Capability.MANAGE_TEAM,
        "destroy": Capability.MANAGE_TEAM,
        "transfer": Capability.MANAGE_TEAM,
        "leave": Capability.VIEW,
    }

    def _team(self) -> Any:
        team = self.ctx.team
        team.my_role = self.ctx.role.value
        return team

    def retrieve(self, request: Request, team: str) -> Response:
        return self.output(self._team())

    @extend_schema(request=s.TeamUpdateInput)
    def partial_update(self, request: Request, team: str) -> Response:
        services.team_update(actor=self.actor, team=self.ctx.team, **self.validated(s.TeamUpdateInput, request))
        return self.output(self._team())

    @extend_schema(request=s.ConfirmInput, responses={204: None, 202: s.TeardownOutput})
    def destroy(self, request: Request, team: str) -> Response:
        """Delete the team and everything in it: 204 when done, 202 while a worker still purges
        its databases (the team is already out of reach)."""
        teardown = services.team_delete(ctx=self.ctx, **self.validated(s.ConfirmInput, request))
        return teardown_response(teardown)

    @extend_schema(request=s.TransferInput, responses={200: s.MembershipOutput})
    @action(detail=False, methods=["post"])
    def transfer(self, request: Request, team: str) -> Response:
        to = services.member_of_team(self.ctx.team, self.validated(s.TransferInput, request)["user"])
        membership = services.team_transfer_ownership(actor=self.actor, team=self.ctx.team, to=to)
        return Response(s.MembershipOutput(membership).data)

    @extend_schema(request=None, responses={204: None})
    @action(detail=False, methods=["post"])
    def leave(self, request: Request, team: str) -> Response:
        """Leave the team (the last owner must first make someone else owner)."""
        self.ctx.require_person()
        services.membership_remove(ctx=self.ctx, membership=self.ctx.membership)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberViewSet(TeamScopedCrudViewSet):
    """The team's people and their roles. Adding an unknown e-mail creates the account."""

    serializer_class = s.MembershipOutput
    lookup_field = "user_id"
    lookup_url_kwarg = "user"
    create_input = s.MemberAddInput
    update_input = s.MemberUpdateInput
    capability_map: ClassVar = crud_capabilities(change=Capability.MANAGE_MEMBERS)

    def base_queryset(self) -> models.QuerySet:
        return selectors.member_queryset()

    def create_object(self, data: dict[str, Any]) -> Any:
        return services.membership_add(ctx=self.ctx, **data)

    def update_object(self, obj: Any, data: dict[str, Any]) -> Any:
        return services.membership_change_role(ctx=self.ctx, membership=obj, **data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Remove a member. Their tokens, and tokens they made, are revoked; tokens they made for
        service accounts are kept unless asked, and listed so they can be revoked."""
        data = self.validated(s.MemberRemoveInput, request)
        removal = services.membership_remove(ctx=self.ctx, membership=self.object, **data)
        return Response(s.MemberRemovalOutput(removal).data)


class ProjectViewSet(TeamScopedCrudViewSet):
    """Projects group a team's apps, databases and cron jobs; grants are given on them."""

    serializer_class = s.ProjectOutput
    queryset = Project.objects.all()
    lookup_field = "slug"
    lookup_url_kwarg = "project"
    create_input = s.ProjectCreateInput
    update_input = s.ProjectUpdateInput
    delete_input = s.ConfirmInput
    capability_map: ClassVar = crud_capabilities(change=Capability.MANAGE_APPS, delete=Capability.DELETE)

    def create_object(self, data: dict[str, Any]) -> Any:
        return services.project_create(ctx=self.ctx, **data)

    def update_object(self, obj: Any, data: dict[str, Any]) -> Any:
        return services.project_update(ctx=self.ctx, project=obj, **data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete the project and everything in it: 204 when done, 202 while a worker still purges
        its databases (the project goes when they are gone)."""
        data = self.validated(s.ConfirmInput, request)
        return teardown_response(services.project_delete(ctx=self.ctx, project=self.object, **data))


class GrantViewSet(TeamScopedViewSet):
    """Object grants on one project: a member or a team group gets one capability on the project
    and everything in it, beyond their role."""

    parent_queryset: ClassVar[models.QuerySet] = Project.objects.all()
    parent_lookup: ClassVar[tuple[str, str]] = ("slug", "project")

    serializer_class = s.GrantOutput
    lookup_field = "grant"
    lookup_url_kwarg = "grant"
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "create": Capability.MANAGE_MEMBERS,
        "retrieve": Capability.VIEW,
        "destroy": Capability.MANAGE_MEMBERS,
    }

    def get_parent(self) -> Any:
        field, kwarg = self.parent_lookup
        return self.ctx.get(self.parent_queryset, **{field: self.kwargs[kwarg]})

    def get_object(self) -> Any:
        return services.grant_get(obj=self.parent, grant=self.kwargs["grant"])

    def object_for_check(self, obj: Any) -> Any:
        return self.parent

    @staticmethod
    def _row(row: Any) -> dict[str, Any]:
        is_user = hasattr(row, "user_id")
        return {
            "id": services.grant_id(row),
            "capability": row.permission.codename,
            "user": row.user if is_user else None,
            "group": None if is_user else row.group.team_group.slug,
            "created_at": row.created_at,
        }

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows, next_url = paginate_chain(
            request,
            [
                ("user", self.parent.user_grants.select_related("permission", "user")),
                ("group", self.parent.group_grants.select_related("permission", "group__team_group")),
            ],
        )
        results = s.GrantOutput([self._row(r) for r in rows], many=True).data
        return Response({"next": next_url, "previous": None, "results": results})

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(s.GrantOutput(self._row(self.object)).data)

    @extend_schema(request=s.GrantCreateInput, responses={201: s.GrantOutput})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.validated(s.GrantCreateInput, request)
        row, created = services.grant_create(
            ctx=self.ctx,
            obj=self.parent,
            capability=data["capability"],
            user_id=data.get("user"),
            group_slug=data.get("group"),
        )
        return Response(
            s.GrantOutput(self._row(row)).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.grant_revoke(ctx=self.ctx, obj=self.parent, row=self.object)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupViewSet(TeamScopedCrudViewSet):
    """Named groups of members, the subjects of group grants."""

    serializer_class = s.GroupOutput
    lookup_field = "slug"
    lookup_url_kwarg = "group"
    create_input = s.GroupCreateInput
    update_input = s.GroupUpdateInput
    capability_map: ClassVar = crud_capabilities(change=Capability.MANAGE_MEMBERS)

    def base_queryset(self) -> models.QuerySet:
        return selectors.group_queryset()

    def create_object(self, data: dict[str, Any]) -> Any:
        return services.group_create(ctx=self.ctx, **data)

    def update_object(self, obj: Any, data: dict[str, Any]) -> Any:
        return services.group_update(ctx=self.ctx, group=obj, **data)

    def delete_object(self, obj: Any, data: dict[str, Any]) -> None:
        services.group_delete(ctx=self.ctx, group=obj)


class ServiceAccountViewSet(TeamScopedCrudViewSet):
    """Team robots for CI: their tokens keep working when people leave."""

    serializer_class = s.ServiceAccountOutput
    lookup_field = "slug"
    lookup_url_kwarg = "service_account"
    create_input = s.ServiceAccountCreateInput
    update_input = s.ServiceAccountUpdateInput
    capability_map: ClassVar = crud_capabilities(change=Capability.MANAGE_MEMBERS)

    def base_queryset(self) -> models.QuerySet:
        return selectors.service_account_queryset()

    def create_object(self, data: dict[str, Any]) -> Any:
        return services.service_account_create(ctx=self.ctx, **data)

    def update_object(self, obj: Any, data: dict[str, Any]) -> Any:
        return services.service_account_update(ctx=self.ctx, account=obj, **data)

    def delete_object(self, obj: Any, data: dict[str, Any]) -> None:
        services.service_account_delete(ctx=self.ctx, account=obj)


# TeamScopedCrudViewSet documents every destroy as a bare 204 when the class is made; these two
# answer more than that, so their schema is set here, after the class (a decorator on the method
# would be overridden).
extend_schema_view(
    destroy=extend_schema(request=s.MemberRemoveInput, responses={200: s.MemberRemovalOutput})
)(MemberViewSet)
extend_schema_view(
    destroy=extend_schema(request=s.ConfirmInput, responses={204: None, 202: s.TeardownOutput})
)(ProjectViewSet)
