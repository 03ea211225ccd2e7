from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.actors import Actor
from apps.teams import services
from apps.teams.models import (
    Membership,
    Plan,
    Project,
    ProjectGroupObjectPermission,
    ProjectUserObjectPermission,
    ServiceAccount,
    Team,
    TeamGroup,
)


def operator(request: HttpRequest) -> Actor:
    return Actor(user=request.user, ip=request.META.get("REMOTE_ADDR"), via="admin")


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "slug",
        "name",
        "is_default",
        "max_projects",
        "max_apps",
        "max_replicas_per_app",
        "max_memory_mb_per_app",
        "max_databases",
        "max_cron_jobs",
    )


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "plan", "suspended_at", "created_at")
    list_filter = ("plan", ("suspended_at", admin.EmptyFieldListFilter))
    search_fields = ("slug", "name")
    list_select_related = ("plan",)
    inlines = [MembershipInline]
    readonly_fields = ("suspended_at", "suspended_reason", "created_at", "updated_at")
    actions = ["suspend", "resume"]

    @admin.action(description="Suspend the selected teams (blocks their API access)")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            services.team_set_suspended(actor=operator(request), team=team, suspended=True, reason="by operator")
        self.message_user(request, f"Suspended {queryset.count()} team(s).", messages.SUCCESS)

    @admin.action(description="Resume the selected teams")
    def resume(self, request: HttpRequest, queryset: QuerySet[Team]) -> None:
        for team in queryset:
            services.team_set_suspended(actor=operator(request), team=team, suspended=False)
        self.message_user(request, f"Resumed {queryset.count()} team(s).", messages.SUCCESS)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "team", "created_at")
    list_filter = ("team",)
    search_fields = ("slug", "name", "team__slug")
    list_select_related = ("team",)


class GrantAdmin(admin.ModelAdmin):
    list_display = ("content_object", "subject", "permission_codename")
    list_select_related = ("content_object", "permission")
    readonly_fields = ("created_at",)

    @admin.display(description="capability")
    def permission_codename(self, obj: Any) -> str:
        return obj.permission.codename

    @admin.display(description="grantee")
    def subject(self, obj: Any) -> str:
        return str(getattr(obj, "user", None) or obj.group)


admin.site.register(ProjectUserObjectPermission, GrantAdmin)
admin.site.register(ProjectGroupObjectPermission, GrantAdmin)


@admin.register(TeamGroup)
class TeamGroupAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "team")
    list_select_related = ("team",)
    readonly_fields = ("group",)


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ("slug", "team", "created_at")
    list_select_related = ("team",)
    readonly_fields = ("user", "created_by")
