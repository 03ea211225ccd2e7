from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.access import TeamContext
from apps.core.actors import Actor
from apps.core.errors import PandaError
from apps.deployments import services
from apps.deployments.models import App, Container, Deployment, DeploymentEvent
from apps.teams.models import Membership


def _operator_context(request: HttpRequest, app: App) -> TeamContext:
    """Operators act in a team as its owner would (they are trusted with the whole platform); the
    audit log says it was them, through the admin."""
    actor = Actor(user=request.user, ip=request.META.get("REMOTE_ADDR"), via="admin")
    membership = Membership(team=app.team, user=request.user, role="owner")
    return TeamContext(actor=actor, membership=membership)


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0
    fields = ("number", "image", "status", "created_by_label", "created_at", "finished_at")
    readonly_fields = fields
    ordering = ("-number",)
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "project", "replicas", "desired_running", "live_deployment", "created_at")
    list_filter = ("desired_running", "team")
    search_fields = ("name", "team__slug")
    list_select_related = ("team", "project", "live_deployment")
    readonly_fields = ("live_deployment",)
    inlines = [DeploymentInline]
    actions = ["redeploy", "stop", "start"]

    def _each(self, request: HttpRequest, queryset: QuerySet[App], verb: str, call: object) -> None:
        done = 0
        for app in queryset.select_related("team", "live_deployment"):
            try:
                call(_operator_context(request, app), app)  # type: ignore[operator]
                done += 1
            except PandaError as exc:
                self.message_user(request, f"{app}: {exc.message}", messages.WARNING)
        self.message_user(request, f"{verb} {done} app(s).", messages.SUCCESS)

    @admin.action(description="Redeploy the live release (fresh containers, no downtime)")
    def redeploy(self, request: HttpRequest, queryset: QuerySet[App]) -> None:
        self._each(request, queryset, "Redeploying", lambda ctx, app: services.app_restart(ctx=ctx, app=app))

    @admin.action(description="Stop the selected apps")
    def stop(self, request: HttpRequest, queryset: QuerySet[App]) -> None:
        self._each(
            request, queryset, "Stopping", lambda ctx, app: services.app_set_running(ctx=ctx, app=app, running=False)
        )

    @admin.action(description="Start the selected apps")
    def start(self, request: HttpRequest, queryset: QuerySet[App]) -> None:
        self._each(
            request, queryset, "Starting", lambda ctx, app: services.app_set_running(ctx=ctx, app=app, running=True)
        )


class EventInline(admin.TabularInline):
    model = DeploymentEvent
    extra = 0
    fields = ("at", "level", "message")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("app", "number", "image", "status", "created_by_label", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("app__name", "image", "team__slug")
    list_select_related = ("app",)
    readonly_fields = [f.name for f in Deployment._meta.fields]
    inlines = [EventInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Container)
class ContainerAdmin(admin.ModelAdmin):
    list_display = ("name", "app", "deployment", "replica", "ip", "in_router", "created_at")
    list_select_related = ("app", "deployment")
    readonly_fields = [f.name for f in Container._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
