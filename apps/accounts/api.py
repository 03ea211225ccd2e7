from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.tokens.models import ApiToken


class MeView(APIView):
    """Who is calling: the user and, for token calls, the token (the CLI's `whoami`)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=inline_serializer(
            "Me",
            {
                "id": serializers.IntegerField(),
                "username": serializers.CharField(),
                "email": serializers.EmailField(),
                "is_service_account": serializers.BooleanField(),
                "token": serializers.DictField(allow_null=True),
            },
        )
    )
    def get(self, request: Request) -> Response:
        user = request.user
        token: dict[str, Any] | None = None
        if isinstance(request.auth, ApiToken):
            t = request.auth
            token = {
                "id": t.pk,
                "name": t.name,
                "prefix": t.prefix,
                "team": t.team.slug,
                "scopes": t.scopes,
                "expires_at": t.expires_at,
            }
        return Response(
            {
                "id": user.pk,
                "username": user.username,
                "email": user.email,
                "is_service_account": user.is_service_account,
                "token": token,
            }
        )
