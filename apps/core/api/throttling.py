import logging
import math
import time
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.throttling import SimpleRateThrottle

from apps.core.broker import REDIS_DOWN
from apps.tokens.models import ApiToken

log = logging.getLogger(__name__)


class TokenRateThrottle(SimpleRateThrottle):
    """One request budget per token (CI jobs do not starve each other), else per user, else per
    client address. The rate is PANDASTACK_API_THROTTLE_RATE, e.g. "1200/min"."""

    scope = "api"
    # One warning per this many seconds while the cache is down, not one per request.
    WARN_EVERY_SECONDS = 60.0
    _warned_at = 0.0

    def allow_request(self, request: Any, view: Any) -> bool:
        """Fails open: with the cache (Redis) unreachable, requests are let through unthrottled. The
        budget shares the API fairly between callers; it is no security boundary (tokens are), and during
        an outage reads and the writes that need no worker must keep working rather than answer 500."""
        try:
            return super().allow_request(request, view)
        except REDIS_DOWN as exc:
            now = time.monotonic()
            if now - TokenRateThrottle._warned_at > self.WARN_EVERY_SECONDS:
                TokenRateThrottle._warned_at = now
                log.warning("API throttle off while the cache is unreachable: %s", exc)
            return True

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


class StreamSlots:
    """At most ``limit`` concurrent long-lived streams (``logs?follow=1``) per token, else per user.

    Each open stream holds one of ``limit`` numbered cache keys, taken with ``cache.add`` (atomic in
    Redis: two processes never take the same slot) and kept alive by ``refresh`` while the stream
    runs. A key expires ``ttl`` seconds after its last refresh, so a stream whose process crashed
    gives its slot back on its own instead of leaking it forever.
    """

    def __init__(self, ident: str, *, limit: int, ttl: float) -> None:
        self.ident = ident
        self.limit = limit
        self.ttl = max(1, int(ttl))
        self._key: str | None = None
        self._holder = uuid.uuid4().hex

    @classmethod
    def for_request(cls, request: Any) -> "StreamSlots":
        ident = f"token:{request.auth.pk}" if isinstance(request.auth, ApiToken) else f"user:{request.user.pk}"
        # Several missed refreshes in a row before a slot counts as abandoned, and always longer than a
        # stalled client may block its stream between two refreshes (DropStalledClients ends it first).
        ttl = max(60.0, 6 * settings.PANDASTACK_STREAM_CHECK_SECONDS, 2 * settings.PANDASTACK_STREAM_STALL_SECONDS)
        return cls(ident, limit=settings.PANDASTACK_MAX_FOLLOWS_PER_TOKEN, ttl=ttl)

    def _slot_key(self, number: int) -> str:
        return f"streams:{self.ident}:{number}"

    def acquire(self) -> None:
        """Take a free slot, or raise Throttled (429 in the API's one error shape)."""
        for number in range(self.limit):
            key = self._slot_key(number)
            if cache.add(key, self._holder, timeout=self.ttl):
                self._key = key
                return
        exc = Throttled(detail=f"At most {self.limit} log streams may be open at once per token; close one first.")
        # Set after construction so the message does not promise a time: a slot frees when one of the
        # caller's own streams ends. Retry-After / retry_after only suggest when to ask again.
        exc.wait = max(1, math.ceil(settings.PANDASTACK_STREAM_CHECK_SECONDS))
        raise exc

    def refresh(self) -> None:
        """Keep the slot alive; take it back if it expired meanwhile (e.g. a stalled process)."""
        if self._key is None:
            return
        if cache.get(self._key) == self._holder:
            cache.touch(self._key, self.ttl)
        else:
            cache.add(self._key, self._holder, timeout=self.ttl)

    def release(self) -> None:
        """Give the slot back (idempotent); never frees a slot another stream has taken since."""
        key, self._key = self._key, None
        if key is not None and cache.get(key) == self._holder:
            cache.delete(key)
