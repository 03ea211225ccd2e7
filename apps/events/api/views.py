from typing import ClassVar

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers

from apps.core.api.views import TeamScopedViewSet
from apps.core.capabilities import Capability
from apps.events.models import PlatformEvent


class PlatformEventOutput(serializers.ModelSerializer):
    class Meta:
        model = PlatformEvent
        fields = (
            "id",
            "kind",
            "severity",
            "subject_type",
            "subject_id",
            "subject_label",
            "message",
            "data",
            "created_at",
        )


@extend_schema(
    parameters=[OpenApiParameter("kind", OpenApiTypes.STR, description="Only this kind, e.g. cron.run_failed")]
)
class PlatformEventViewSet(TeamScopedViewSet):
    """The team's platform events, newest first (failed cron runs, ...): what alert rules watch."""

    serializer_class = PlatformEventOutput
    cursor_ordering = "-id"
    capability_map: ClassVar = {"list": Capability.VIEW}

    def base_queryset(self) -> models.QuerySet:
        queryset = PlatformEvent.objects.all()
        if kind := self.request.query_params.get("kind"):
            queryset = queryset.filter(kind=kind)
        return queryset
