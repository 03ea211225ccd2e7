"""Operator screens for managed databases. Servers are registered and re-keyed through the services
(which connect to check the admin URL); the admin URL is write-only and never shown, not even
encrypted. Databases, their attachments and backups are the services' and workers' to change:
read-only here."""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from apps.core.errors import PandaError
from apps.databases import services
from apps.databases.models import Backup, Database, DatabaseAttachment, DatabaseServer

ADMIN_URL_HELP = (
    "The administrator's URL, e.g. postgres://postgres:PASSWORD@db.internal:5432/postgres. PandaStack connects "
    "with it to check it, then stores it encrypted; it is never shown again."
)


def _admin_url_field(*, required: bool, help_text: str) -> forms.CharField:
    return forms.CharField(
        label="Admin URL",
        required=required,
        strip=True,
        help_text=help_text,
        # Never rendered back, not even after a refused submission.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
    )


def _form_errors(form: forms.Form, exc: PandaError) -> None:
    """A service's refusal as form errors: on the fields it names when the form has them."""
    placed = False
    for field, problems in exc.fields.items():
        if field in form.fields:
            for problem in problems:
                form.add_error(field, problem)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


class ServerAddForm(forms.ModelForm):
    """Registering goes through `server_register` (it connects to check the URL) once the fields
    are valid; the row it made is what the admin then shows."""

    admin_url = _admin_url_field(required=True, help_text=ADMIN_URL_HELP)

    class Meta:
        model = DatabaseServer
        fields = ("engine", "name", "host_for_apps", "port_for_apps")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["name"].required = False
        self.fields["name"].help_text = "Default: from the engine, host and port."
        self.registered: DatabaseServer | None = None

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:  # every field valid first: a refused form must not have registered anything
            return
        data = self.cleaned_data
        try:
            self.registered = services.server_register(
                engine=data["engine"],
                admin_url=data["admin_url"],
                name=data.get("name") or None,
                host_for_apps=data.get("host_for_apps") or "",
                port_for_apps=data.get("port_for_apps"),
            )
        except PandaError as exc:
            _form_errors(self, exc)


class ServerChangeForm(forms.ModelForm):
    """Where apps connect and whether new databases go here, editable; a new admin URL (given only
    to change it) goes through `server_update_admin_url`, which connects to check it."""

    admin_url = _admin_url_field(required=False, help_text="Leave empty to keep the current one. " + ADMIN_URL_HELP)

    class Meta:
        model = DatabaseServer
        fields = ("host_for_apps", "port_for_apps", "enabled")

    def _post_clean(self) -> None:
        super()._post_clean()
        if not self.errors and self.cleaned_data.get("admin_url"):
            try:
                services.server_update_admin_url(server=self.instance, admin_url=self.cleaned_data["admin_url"])
            except PandaError as exc:
                _form_errors(self, exc)


@admin.register(DatabaseServer)
class DatabaseServerAdmin(admin.ModelAdmin):
    list_display = ("name", "engine", "version", "host_for_apps", "port_for_apps", "enabled", "live_databases")
    list_filter = ("engine", "enabled")
    search_fields = ("name",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[DatabaseServer]:
        # Every database row is on the server (a deleted one keeps its data there until purged).
        return super().get_queryset(request).annotate(live_count=Count("databases"))

    @admin.display(description="databases", ordering="live_count")
    def live_databases(self, server: DatabaseServer) -> int:
        return server.live_count

    def get_form(self, request: HttpRequest, obj: DatabaseServer | None = None, change: bool = False, **kwargs: Any):  # noqa: ANN201
        kwargs["form"] = ServerChangeForm if obj is not None else ServerAddForm
        kwargs["fields"] = None  # the form's own Meta.fields, plus admin_url
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: DatabaseServer | None = None) -> list[str]:
        if obj is None:
            return ["engine", "admin_url", "name", "host_for_apps", "port_for_apps"]
        return ["name", "engine", "version", "admin_url", "host_for_apps", "port_for_apps", "enabled", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: DatabaseServer | None = None) -> list[str]:
        return ["name", "engine", "version", "created_at"] if obj is not None else []

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> DatabaseServer:
        instance = form.save(commit=False)  # also gives the form its save_m2m (nothing to save)
        registered = getattr(form, "registered", None)
        return registered if registered is not None else instance

    def save_model(self, request: HttpRequest, obj: DatabaseServer, form: forms.ModelForm, change: bool) -> None:
        if not change:
            return  # server_register saved it
        # Only the form's own fields: the admin URL and version were written by the service.
        obj.save(update_fields=["host_for_apps", "port_for_apps", "enabled", "updated_at"])

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # A server holding databases cannot go (PROTECT); an unused one may.
        if obj is not None and Database.objects.filter(server=obj).exists():
            return False
        return super().has_delete_permission(request, obj)


class AttachmentInline(admin.TabularInline):
    model = DatabaseAttachment
    extra = 0
    fields = ("app", "env_name", "created_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class BackupInline(admin.TabularInline):
    model = Backup
    extra = 0
    fields = ("number", "trigger", "reason", "status", "size_bytes", "started_at", "finished_at", "restored_at")
    readonly_fields = fields
    can_delete = False
    ordering = ("-number",)
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


DATABASE_FIELDS = (
    "name", "team", "project", "engine", "version", "placement", "server", "status", "status_reason", "host", "port",
    "db_name", "username", "container_name", "volume_name", "size_bytes", "connections", "usage_at",
    "credentials_rotated_at", "created_at", "updated_at", "deleted_at", "purge_after",
)  # fmt: skip


@admin.register(Database)
class DatabaseAdmin(admin.ModelAdmin):
    """Read-only: creating, deleting and rotating go through the API (quotas, audit, workers). The
    password is never shown."""

    list_display = (
        "name", "team", "project", "engine", "placement", "server", "status", "size_bytes", "connections", "usage_at",
    )  # fmt: skip
    list_filter = ("status", "engine", "placement", "server")
    search_fields = ("name", "team__slug", "db_name")
    list_select_related = ("team", "project", "server")
    fields = DATABASE_FIELDS
    readonly_fields = DATABASE_FIELDS
    inlines = [AttachmentInline, BackupInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = ("database", "number", "team", "trigger", "status", "size_bytes", "created_at", "finished_at")
    list_filter = ("status", "trigger")
    search_fields = ("database__name", "team__slug")
    list_select_related = ("database", "team")
    fields = (
        "database", "team", "number", "trigger", "reason", "status", "file_name", "size_bytes", "sha256", "error",
        "started_at", "finished_at", "restored_at", "created_by_label", "created_at",
    )  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
