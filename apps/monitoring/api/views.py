import re
from datetime import timedelta
from typing import Any, ClassVar

from django.db import models
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.views import TeamScopedViewSet
from apps.core.capabilities import Capability
from apps.core.errors import ValidationFailed
from apps.deployments.models import App
from apps.monitoring import selectors
from apps.monitoring.models import AppHealth, HealthStatus, Resolution

_DURATION = re.compile(r"^(\d{1,7})([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_RANGE = max(selectors.retention(r).total_seconds() for r in Resolution.values)


def parse_duration(value: str, field: str) -> int:
    """Seconds from "90", "90s", "15m", "6h" or "7d"."""
    match = _DURATION.fullmatch(value.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValidationFailed(f"Invalid {field}.", fields={field: ["A duration such as 300, 15m, 6h or 7d."]})
    return int(match.group(1)) * _UNITS[match.group(2)]


def default_step(range_seconds: int, start: Any, end: Any) -> int:
    """About 60-360 points: the smallest of 10 s, 1 min, 5 min, 1 h, 1 d that keeps it so and that
    the stored resolutions serve for data as old as `start`."""
    for step in (10, 60, 300, 3600, 86400):
        if range_seconds / step <= 360 and selectors.resolution_for(start, step, end) is not None:
            return step
    return 86400


@extend_schema(
    parameters=[
        OpenApiParameter("range", OpenApiTypes.STR, description="How far back: 15m, 1h (default), 6h, 7d..."),
        OpenApiParameter(
            "step", OpenApiTypes.STR, description="Seconds per point (a multiple of 10); default: ~60-360 points"
        ),
    ],
    responses=inline_serializer(
        "AppMetrics",
        {
            "app": serializers.CharField(),
            "start": serializers.DateTimeField(),
            "end": serializers.DateTimeField(),
            "step": serializers.IntegerField(),
            "resolution": serializers.IntegerField(help_text="Seconds per stored bucket the points were built from."),
            "timestamps": serializers.ListField(child=serializers.DateTimeField()),
            "series": serializers.DictField(child=serializers.ListField(child=serializers.FloatField(allow_null=True))),
            "summary": serializers.DictField(child=serializers.FloatField(allow_null=True)),
            "health": serializers.ChoiceField(choices=HealthStatus.choices),
        },
    ),
)
class AppMetricsViewSet(TeamScopedViewSet):
    """An app's metrics over a range: requests, 4xx/5xx, error rate and latency percentiles from the
    router's access log; CPU, memory and restarts from the engine; uptime from health checks. Raw
    10-second buckets are kept 6 hours, 5-minute buckets 14 days, hourly buckets 90 days."""

    queryset = App.objects.all()
    lookup_field = "name"
    lookup_url_kwarg = "app"
    capability_map: ClassVar = {"retrieve": Capability.VIEW}

    def base_queryset(self) -> models.QuerySet:
        return App.objects.all()

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        app = self.object
        range_seconds = parse_duration(request.query_params.get("range", "1h"), "range")
        if range_seconds > MAX_RANGE:
            raise ValidationFailed("Range too long.", fields={"range": [f"At most {int(MAX_RANGE // 86400)} days."]})
        end = timezone.now()
        start = end - timedelta(seconds=range_seconds)
        raw_step = request.query_params.get("step")
        step = parse_duration(raw_step, "step") if raw_step else default_step(range_seconds, start, end)
        if step % Resolution.RAW:
            raise ValidationFailed("Invalid step.", fields={"step": ["A multiple of 10 seconds."]})
        if step > range_seconds:
            raise ValidationFailed("Invalid step.", fields={"step": ["At most the range."]})
        if range_seconds / step > selectors.MAX_POINTS:
            raise ValidationFailed(
                "Too many points.", fields={"step": [f"At most {selectors.MAX_POINTS} points: use a larger step."]}
            )
        if selectors.resolution_for(start, step, end) is None:
            smallest = selectors.smallest_step(start, end)
            raise ValidationFailed(
                "Invalid step for this range.",
                fields={"step": [f"Data this old is kept in {smallest}-second buckets: use a multiple of {smallest}."]},
            )
        data = selectors.series(app.pk, start=start, end=end, step=step, now=end)
        health = AppHealth.objects.filter(app=app).values_list("status", flat=True).first()
        return Response(
            {
                "app": app.name,
                "start": start,
                "end": end,
                "step": step,
                "resolution": data["resolution"],
                "timestamps": data["timestamps"],
                "series": data["series"],
                "summary": data["summary"],
                "health": health or HealthStatus.UNKNOWN,
            }
        )
