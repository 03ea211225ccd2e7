"""A test-only URL conf with two views that declare no permission: both must be closed."""

from typing import ClassVar

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.views import TeamScopedViewSet
from apps.teams.api.serializers import ProjectOutput
from apps.teams.models import Project


class ForgetfulViewSet(TeamScopedViewSet):
    """A team-scoped endpoint whose author forgot its capability_map."""

    serializer_class = ProjectOutput
    queryset = Project.objects.all()
    capability_map: ClassVar = {}


class PlainView(APIView):
    """A plain DRF view with no permission_classes: the project default (DenyAll) applies."""

    def get(self, request: Request) -> Response:
        return Response({"open": True})


urlpatterns = [
    path("api/v1/teams/<str:team>/forgetful/", ForgetfulViewSet.as_view({"get": "list"})),
    path("plain/", PlainView.as_view()),
]
