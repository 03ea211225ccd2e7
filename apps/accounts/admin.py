from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.core.exceptions import ValidationError

from apps.accounts.models import User
from apps.accounts.throttling import login_throttle_retry_after


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    search_fields = ("username", "email")
    list_display = ("username", "email", "is_service_account", "is_staff", "is_active", "date_joined")
    list_filter = ("is_service_account", "is_staff", "is_superuser", "is_active")
    fieldsets = (*BaseUserAdmin.fieldsets, ("PandaStack", {"fields": ("is_service_account",)}))


class ThrottledAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's login form, refusing while the username or the client address has failed too
    often (apps.accounts.throttling); the password is then not even checked."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "throttled": "Too many failed logins. Try again in %(retry_after)s seconds.",
    }

    def clean(self) -> dict:
        retry_after = login_throttle_retry_after(username=self.cleaned_data.get("username"), request=self.request)
        if retry_after is not None:
            raise ValidationError(
                self.error_messages["throttled"], code="throttled", params={"retry_after": retry_after}
            )
        return super().clean()


admin.site.login_form = ThrottledAdminAuthenticationForm
