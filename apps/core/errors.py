"""Typed errors that services raise. The API turns each into the one JSON error shape
(apps.core.api.errors); the portal turns them into form errors."""

from typing import Any


class PandaError(Exception):
    """An error the user can act on."""

    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        fields: dict[str, list[str]] | None = None,
        code: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields = fields or {}
        self.extra = extra


class ValidationFailed(PandaError):
    status_code = 400
    code = "invalid"


class NotFound(PandaError):
    """Missing, or not yours: the same answer for both so ids never leak."""

    status_code = 404
    code = "not_found"

    def __init__(self, message: str = "Not found.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class PermissionDenied(PandaError):
    status_code = 403
    code = "permission_denied"


class Conflict(PandaError):
    status_code = 409
    code = "conflict"


class QuotaExceeded(PandaError):
    status_code = 403
    code = "quota_exceeded"

    def __init__(self, *, limit: str, maximum: int, current: int, requested: int, plan: str) -> None:
        super().__init__(
            f"The {plan} plan allows {limit} = {maximum}; this would make it {current + requested}.",
            limit=limit,
            maximum=maximum,
            current=current,
            requested=requested,
            plan=plan,
        )


class RateLimited(PandaError):
    """Too many of one action in a short time; ``retry_after`` says how many seconds to wait (the API
    also sends it as the Retry-After header)."""

    status_code = 429
    code = "throttled"

    def __init__(self, message: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)


class ServiceUnavailable(PandaError):
    """A service the platform depends on (the task queue, the cache) cannot be reached: nothing was
    changed, and the same request may simply be sent again once it is back (``retry_after``)."""

    status_code = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)


class TeamSuspended(PandaError):
    status_code = 403
    code = "team_suspended"


def require_confirmation(confirm: str, *, expected: str, what: str) -> None:
    """Destructive actions make the caller repeat the name of what goes (e.g. "the team's slug")."""
    if confirm != expected:
        raise ValidationFailed(f"Type {what} to confirm deletion.", fields={"confirm": [f"Must be '{expected}'."]})
