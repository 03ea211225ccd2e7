"""Count failed and successful logins for the login throttle (apps.accounts.throttling)."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from apps.accounts.throttling import login_failure_record, login_success_record


@receiver(user_login_failed, dispatch_uid="accounts.login_failed")
def _login_failed(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    username = credentials.get("username") or credentials.get(get_user_model().USERNAME_FIELD)
    login_failure_record(username=username, request=request)


@receiver(user_logged_in, dispatch_uid="accounts.logged_in")
def _logged_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    # force_login() (tests, the admin's "log in as") also lands here; clearing a count is harmless.
    login_success_record(username=user.get_username())
