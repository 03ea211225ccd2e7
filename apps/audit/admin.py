from django.contrib import admin
from django.http import HttpRequest

from apps.audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read only: the audit trail is written by services, never edited."""

    list_display = (
        "created_at",
        "team_slug",
        "team_ref",
        "actor_label",
        "token_prefix",
        "via",
        "action",
        "target_label",
        "ip",
    )
    list_filter = ("action", "via")
    search_fields = ("actor_label", "target_label", "action", "token_prefix", "team_slug")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
