from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.actors import Actor
from apps.tokens.models import ApiToken
from apps.tokens.services import token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Operators see tokens and revoke them; the hash is never shown and tokens are not made here
    (use `manage.py createtoken` or the API, which show the token once)."""

    list_display = ("prefix", "name", "team", "user", "scopes", "expires_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "team")
    search_fields = ("prefix", "name", "user__email", "team__slug")
    list_select_related = ("team", "user")
    exclude = ("token_hash",)
    readonly_fields = (
        "team",
        "user",
        "name",
        "prefix",
        "scopes",
        "projects",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "revoked_at",
        "created_by",
        "created_at",
    )
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        actor = Actor(user=request.user, ip=request.META.get("REMOTE_ADDR"), via="admin")
        for token in queryset.select_related("team"):
            token_revoke(actor=actor, token=token)
        self.message_user(request, f"Revoked {queryset.count()} token(s).", messages.SUCCESS)
