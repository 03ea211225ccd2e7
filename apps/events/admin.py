from django.contrib import admin
from django.http import HttpRequest

from apps.events.models import PlatformEvent


@admin.register(PlatformEvent)
class PlatformEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "team", "kind", "severity", "subject_label", "message")
    list_filter = ("kind", "severity")
    list_select_related = ("team",)
    search_fields = ("subject_label", "message", "team__slug")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
