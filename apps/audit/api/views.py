from typing import ClassVar

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema

from apps.audit.api.serializers import AuditEventOutput
from apps.audit.models import AuditEvent
from apps.core.api.views import TeamScopedViewSet
from apps.core.capabilities import Capability


@extend_schema(
    parameters=[
        OpenApiParameter("action", OpenApiTypes.STR, description="Only this action, e.g. member.add"),
        OpenApiParameter("target_type", OpenApiTypes.STR, description="Only this kind, e.g. teams.project"),
    ]
)
class AuditEventViewSet(TeamScopedViewSet):
    """The team's audit log, newest first (owners and admins)."""

    serializer_class = AuditEventOutput
    cursor_ordering = "-id"
    capability_map: ClassVar = {"list": Capability.MANAGE_MEMBERS}

    def base_queryset(self) -> models.QuerySet:
        queryset = AuditEvent.objects.all()
        for param in ("action", "target_type"):
            if value := self.request.query_params.get(param):
                queryset = queryset.filter(**{param: value})
        return queryset
