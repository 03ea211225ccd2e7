from typing import Any, ClassVar

from django.db import models
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.alerts import services
from apps.alerts.models import ChannelKind, Delivery, NotificationChannel
from apps.core.api.views import TeamScopedCrudViewSet, TeamScopedViewSet, crud_capabilities
from apps.core.capabilities import Capability
from apps.teams.api.serializers import StrictCharField, slug_field


class ChannelOutput(serializers.ModelSerializer):
    signed = serializers.SerializerMethodField(help_text="Whether deliveries carry an HMAC signature.")

    class Meta:
        model = NotificationChannel
        fields = ("name", "kind", "target", "enabled", "signed", "created_at")

    def get_signed(self, channel: NotificationChannel) -> bool:
        return bool(channel.signing_secret_encrypted)


class ChannelCreateInput(serializers.Serializer):
    name = slug_field()
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    target = StrictCharField(max_length=2000, help_text="An http(s) URL, or e-mail addresses separated by commas.")


class ChannelUpdateInput(serializers.Serializer):
    target = StrictCharField(max_length=2000, required=False)
    enabled = serializers.BooleanField(required=False)


class ChannelConfirmInput(serializers.Serializer):
    confirm = serializers.CharField(max_length=100, help_text="Repeat the channel's name to confirm deletion.")


class DeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = (
            "id", "trigger", "subject", "status", "attempts", "response_status", "last_error", "created_at",
            "delivered_at",
        )  # fmt: skip


class NotificationChannelViewSet(TeamScopedCrudViewSet):
    """Where notifications go: e-mail, a signed webhook (HMAC-SHA256 in X-PandaStack-Signature over
    "<X-PandaStack-Timestamp>.<body>"; the secret is shown once, at creation), or a Slack-compatible
    webhook. Failed deliveries are retried with backoff and logged."""

    serializer_class = ChannelOutput
    queryset = NotificationChannel.objects.all()
    lookup_field = "name"
    lookup_url_kwarg = "channel"
    create_input = ChannelCreateInput
    update_input = ChannelUpdateInput
    delete_input = ChannelConfirmInput
    capability_map: ClassVar = {**crud_capabilities(change=Capability.MANAGE_ALERTS), "test": Capability.MANAGE_ALERTS}

    def create_object(self, data: dict[str, Any]) -> NotificationChannel:
        channel, self._signing_secret = services.channel_create(ctx=self.ctx, **data)
        return channel

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().create(request, *args, **kwargs)
        if getattr(self, "_signing_secret", None):
            response.data["signing_secret"] = self._signing_secret  # shown once; stored encrypted
        return response

    def update_object(self, obj: NotificationChannel, data: dict[str, Any]) -> NotificationChannel:
        return services.channel_update(ctx=self.ctx, channel=obj, **data)

    def delete_object(self, obj: NotificationChannel, data: dict[str, Any]) -> None:
        services.channel_delete(ctx=self.ctx, channel=obj, **data)

    @extend_schema(request=None, responses={202: DeliveryOutput})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        delivery = services.channel_test(ctx=self.ctx, channel=self.object)
        return Response(DeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class DeliveryViewSet(TeamScopedViewSet):
    """A channel's delivery log, newest first."""

    serializer_class = DeliveryOutput
    cursor_ordering = "-id"
    capability_map: ClassVar = {"list": Capability.VIEW}

    def get_parent(self) -> NotificationChannel:
        return self.ctx.get(NotificationChannel.objects.all(), name=self.kwargs["channel"])

    def base_queryset(self) -> models.QuerySet:
        return Delivery.objects.filter(channel=self.parent)
