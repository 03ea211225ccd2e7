from django.contrib import admin
from django.http import HttpRequest

from apps.cron.models import CronJob, CronRun


class CronRunInline(admin.TabularInline):
    model = CronRun
    extra = 0
    fields = ("id", "trigger", "scheduled_for", "attempt", "status", "exit_code", "started_at", "finished_at")
    readonly_fields = fields
    ordering = ("-id",)
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CronJob)
class CronJobAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "project", "schedule", "timezone", "suspended", "next_run_at")
    list_filter = ("suspended", "concurrency_policy")
    search_fields = ("name", "team__slug")
    list_select_related = ("team", "project")
    readonly_fields = ("next_run_at",)
    inlines = [CronRunInline]


@admin.register(CronRun)
class CronRunAdmin(admin.ModelAdmin):
    list_display = ("id", "job", "trigger", "scheduled_for", "status", "exit_code", "started_at", "finished_at")
    list_filter = ("status", "trigger")
    list_select_related = ("job",)
    readonly_fields = [f.name for f in CronRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
