from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from apps.accounts.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    search_fields = ("username", "email")
    list_display = ("username", "email", "is_service_account", "is_staff", "is_active", "date_joined")
    list_filter = ("is_service_account", "is_staff", "is_superuser", "is_active")
    fieldsets = (*BaseUserAdmin.fieldsets, ("PandaStack", {"fields": ("is_service_account",)}))
