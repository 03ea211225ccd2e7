from typing import ClassVar

from django.db import models
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.views import TeamScopedViewSet
from apps.core.capabilities import Capability
from apps.teams.services import member_of_team
from apps.tokens import services
from apps.tokens.api.serializers import TokenCreatedOutput, TokenCreateInput, TokenOutput
from apps.tokens.models import ApiToken


class TokenViewSet(TeamScopedViewSet):
    """API tokens. Everyone sees and revokes their own; admins see and revoke everyone's and create
    tokens for service accounts (never for another person). Creating a token with a token needs the
    admin scope. The rules live in apps.tokens.services."""

    serializer_class = TokenOutput
    lookup_url_kwarg = "token"
    capability_map: ClassVar = {
        "list": Capability.VIEW,
        "create": Capability.VIEW,
        "retrieve": Capability.VIEW,
        "destroy": Capability.VIEW,
        "revoke": Capability.VIEW,
    }

    def base_queryset(self) -> models.QuerySet:
        return ApiToken.objects.prefetch_related("projects").order_by("id")

    def get_queryset(self) -> models.QuerySet:
        queryset = super().get_queryset()
        if not self.ctx.can(Capability.MANAGE_MEMBERS):
            queryset = queryset.filter(user=self.actor.user)
        return queryset

    @extend_schema(request=TokenCreateInput, responses={201: TokenCreatedOutput})
    def create(self, request: Request, team: str) -> Response:
        data = self.validated(TokenCreateInput, request)
        user = self.actor.user
        if data.get("user") not in (None, user.pk):
            user = member_of_team(self.ctx.team, data["user"]).user
        # Who may mint a token for whom, with which scopes, is decided by the service.
        token, raw = services.token_create(
            actor=self.actor,
            team=self.ctx.team,
            user=user,
            name=data["name"],
            scopes=data["scopes"],
            project_slugs=data["projects"],
            expires_in_days=data.get("expires_in_days"),
        )
        # The raw value is not an attribute of the stored token (only its hash is): add it here.
        body = {**TokenOutput(token).data, "token": raw}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: TokenOutput})
    def destroy(self, request: Request, team: str, token: str) -> Response:
        return self._revoke()

    @extend_schema(request=None, responses={200: TokenOutput})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, team: str, token: str) -> Response:
        return self._revoke()

    def _revoke(self) -> Response:
        return self.output(services.token_revoke(actor=self.actor, token=self.object))
