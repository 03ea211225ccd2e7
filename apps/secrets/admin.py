from django.contrib import admin
from django.http import HttpRequest

from apps.secrets.models import Variable


@admin.register(Variable)
class VariableAdmin(admin.ModelAdmin):
    """Names, levels and versions only: the admin never shows (or decrypts) a value."""

    list_display = ("name", "level", "team", "project", "app", "secret", "version", "updated_at")
    list_filter = ("level", "secret")
    search_fields = ("name", "team__slug")
    list_select_related = ("team", "project", "app", "current")
    fields = ("name", "level", "team", "project", "app", "secret", "version", "updated_at")
    readonly_fields = fields

    @admin.display(description="version")
    def version(self, obj: Variable) -> int | None:
        return obj.current.number if obj.current else None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Deleting bypasses the versions and the audit log: unset through the API or CLI.
        return False
