"""System checks for what more than one process of the platform needs (docs/scale-out.md)."""

from typing import Any

from django.conf import settings
from django.core import checks

# Caches that live inside one process: a lock or a counter in them is not seen by any other process.
PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@checks.register(checks.Tags.caches, deploy=True)
def shared_cache_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The per-app deploy lock (one worker at a time changes an app's containers) and the API's rate
    limits live in the cache: with a cache local to each process they hold only within one process, so
    two workers could deploy one app at once and two web servers would each grant the full limit."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend not in PROCESS_LOCAL_CACHES:
        return []
    return [
        checks.Warning(
            f"The cache ({backend.rsplit('.', 1)[-1]}) is local to each process: the per-app deploy lock and the"
            " rate limits do not hold across two workers or two web servers.",
            hint="Set REDIS_URL (the cache every process shares) before running more than one worker or web"
            " server; see docs/scale-out.md.",
            id="pandastack.W001",
        )
    ]
