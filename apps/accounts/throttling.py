"""Password guessing is throttled wherever a password is checked: per client address and per
username, in fixed windows kept in the cache (Redis in production, so every web worker shares them).

Failures are counted from Django's `user_login_failed` signal, so every path that calls
`django.contrib.auth.authenticate()` counts (the admin login today, any later password login too);
`ThrottledModelBackend` refuses to even check a password while its username or address is over the
limit, so a correct guess inside a blocked window is worth nothing to an attacker."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from apps.core.errors import PandaError


class LoginThrottled(PandaError):
    """Too many failed logins for this username or from this address (429, `throttled`)."""

    status_code = 429
    code = "throttled"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed logins. Try again in {retry_after} seconds.", retry_after=retry_after
        )
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Counter:
    key: str
    limit: int


def _window() -> int:
    return int(settings.PANDASTACK_LOGIN_THROTTLE_WINDOW_SECONDS)


def _client_address(request: HttpRequest | None) -> str:
    # REMOTE_ADDR only: a client-supplied X-Forwarded-For would let a guesser pick a fresh "address"
    # for every attempt. Behind a proxy, the proxy's WSGI setup must put the real client here.
    if request is None:
        return ""
    return str(request.META.get("REMOTE_ADDR") or "")


def _digest(value: str) -> str:
    # Usernames are attacker-chosen text: hash them into a fixed-size, cache-safe key.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _counters(*, username: str | None, address: str) -> list[_Counter]:
    counters = []
    if username:
        key = f"login-fail:user:{_digest(username.strip().lower())}"
        counters.append(_Counter(key, settings.PANDASTACK_LOGIN_MAX_FAILURES_PER_USERNAME))
    if address:
        key = f"login-fail:ip:{_digest(address)}"
        counters.append(_Counter(key, settings.PANDASTACK_LOGIN_MAX_FAILURES_PER_ADDRESS))
    return counters


def login_throttle_retry_after(*, username: str | None, request: HttpRequest | None) -> int | None:
    """Seconds until a login for ``username`` from ``request``'s address may be tried again, or None
    when it may be tried now."""
    now = time.time()
    waits = []
    for counter in _counters(username=username, address=_client_address(request)):
        state = cache.get_many([counter.key, counter.key + ":start"])
        if int(state.get(counter.key) or 0) >= counter.limit:
            started = float(state.get(counter.key + ":start") or now)
            waits.append(max(1, int(started + _window() - now) + 1))
    return max(waits) if waits else None


def login_throttle_check(*, username: str | None, request: HttpRequest | None) -> None:
    """Raise LoginThrottled when this username or address is over its limit."""
    retry_after = login_throttle_retry_after(username=username, request=request)
    if retry_after is not None:
        raise LoginThrottled(retry_after)


def login_failure_record(*, username: str | None, request: HttpRequest | None) -> None:
    """Count one failed login against the username and the client address (fixed windows: the first
    failure opens one, it closes `PANDASTACK_LOGIN_THROTTLE_WINDOW_SECONDS` later)."""
    window = _window()
    for counter in _counters(username=username, address=_client_address(request)):
        if cache.add(counter.key, 0, timeout=window):
            cache.set(counter.key + ":start", time.time(), timeout=window)
        try:
            cache.incr(counter.key)
        except ValueError:  # expired between add and incr: start a new window with this failure
            cache.set(counter.key, 1, timeout=window)
            cache.set(counter.key + ":start", time.time(), timeout=window)


def login_success_record(*, username: str | None) -> None:
    """A correct password clears its username's count (not the address's: one account an attacker
    owns must not reset the budget for guessing everybody else's)."""
    for counter in _counters(username=username, address=""):
        cache.delete_many([counter.key, counter.key + ":start"])


class ThrottledModelBackend(ModelBackend):
    """Django's password check, refused outright while the username or the address is throttled.
    (PermissionDenied makes `authenticate()` stop and report a failed login.)"""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        if username is None:
            username = kwargs.get(self._username_field())
        if login_throttle_retry_after(username=username, request=request) is not None:
            raise PermissionDenied("too many failed logins")
        return super().authenticate(request, username=username, password=password, **kwargs)

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
