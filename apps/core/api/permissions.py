from typing import Any

from rest_framework.permissions import BasePermission


class DenyAll(BasePermission):
    """The project default: a view that declares no permission answers 403 to everybody."""

    message = "This endpoint declares no permission, so it is closed."

    def has_permission(self, request: Any, view: Any) -> bool:
        return False
