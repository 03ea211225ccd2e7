from typing import Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from apps.tokens.models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    """One request budget per token (CI jobs do not starve each other), else per user, else per
    client address. The rate is PANDASTACK_API_THROTTLE_RATE, e.g. "1200/min"."""

    scope = "api"

    def get_rate(self) -> str:
        return settings.PANDASTACK_API_THROTTLE_RATE

    def get_cache_key(self, request: Any, view: Any) -> str:
        if isinstance(request.auth, ApiToken):
            ident = f"token:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"
