from django.contrib import admin
from django.http import HttpRequest

from apps.core.models import PendingTask


@admin.register(PendingTask)
class PendingTaskAdmin(admin.ModelAdmin):
    """Tasks kept while the broker was unreachable (apps.core.broker): a worker publishes them again as
    soon as it is connected. Rows that stay here mean no worker reaches the broker."""

    list_display = ("created_at", "task", "args", "task_id", "attempts", "last_error")
    search_fields = ("task", "task_id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
