"""Who is acting: the user, the token they used (if any) and where from. Services take an Actor so
that every audit row can say who, through which token, from which address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.tokens.models import ApiToken


@dataclass(frozen=True)
class Actor:
    user: User | None
    token: ApiToken | None = None
    ip: str | None = None
    # For actions that no request started (operator commands, workers): what started them.
    via: str = "api"

    @classmethod
    def from_request(cls, request: Any) -> Actor:
        token = request.auth if _is_api_token(request.auth) else None
        user = request.user if request.user.is_authenticated else None
        return cls(user=user, token=token, ip=client_ip(request), via="api")

    @classmethod
    def system(cls, via: str, user: User | None = None) -> Actor:
        return cls(user=user, token=None, ip=None, via=via)

    @property
    def label(self) -> str:
        if self.user is None:
            return f"system ({self.via})"
        return self.user.get_username()


def _is_api_token(auth: Any) -> bool:
    from apps.tokens.models import ApiToken

    return isinstance(auth, ApiToken)


def client_ip(request: Any) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is trusted only when the operator puts a proxy in front and
    # sets it there (the proxy rewrites REMOTE_ADDR through gunicorn's forwarded-allow-ips).
    return request.META.get("REMOTE_ADDR") or None
