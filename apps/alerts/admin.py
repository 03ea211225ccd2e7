from django.contrib import admin
from django.http import HttpRequest

from apps.alerts.models import Delivery, NotificationChannel


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "kind", "enabled", "created_at")
    list_filter = ("kind", "enabled")
    list_select_related = ("team",)
    exclude = ("signing_secret_encrypted",)
    # Channels are made through the API (validated targets, a signing secret shown once); operators
    # may only switch one off.
    readonly_fields = ("team", "name", "kind", "target")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "channel", "trigger", "status", "attempts", "response_status", "created_at")
    list_filter = ("status",)
    list_select_related = ("channel",)
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
