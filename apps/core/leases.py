"""Leases with a heartbeat: how a worker (or the cron scheduler) says "I am still on this".

Work that outlives a request — a deployment, a database being provisioned, a backup, a cron run
being started — holds a lease while it runs. One heartbeat thread per lease, every
PANDASTACK_HEARTBEAT_SECONDS:
- renews the lease's lock in the cache (Redis, shared by every worker), if it has one: a second
  worker cannot take the same work while the first one beats, and a killed worker's lock expires
  within three beats;
- refreshes the work's own row (`touch`, usually its `updated_at`), which is what the takeover sweep
  reads: a row not refreshed for PANDASTACK_WORKER_STALE_SECONDS belongs to a process that died,
  one that is refreshed belongs to slow work (a long image pull, a big dump) that must be left alone.

A lease whose lock was taken by someone else (its holder stalled for longer than the lock lives),
or whose `touch` reports the row is no longer its own, is *lost*: `Lease.check()` then raises, so
the holder stops at its next check point instead of racing the process that took over."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from apps.core import shutdown
from apps.core.broker import REDIS_DOWN

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The lease lapsed and another process took the work over: this holder must stop touching it."""


def heartbeat_interval() -> float:
    """PANDASTACK_HEARTBEAT_SECONDS, but at least four beats per stale time whatever the two are set to:
    live work must never look stale, and a lock (three beats) must lapse before the takeover comes."""
    return max(0.2, min(settings.PANDASTACK_HEARTBEAT_SECONDS, settings.PANDASTACK_WORKER_STALE_SECONDS / 4))


def lock_ttl() -> int:
    """How long a lock outlives its last renewal: three beats, so a holder may miss two."""
    return max(1, round(heartbeat_interval() * 3))


def stale_before(now: datetime | None = None) -> datetime:
    """Rows of running work last refreshed before this belong to a process that died."""
    return (now or timezone.now()) - timedelta(seconds=settings.PANDASTACK_WORKER_STALE_SECONDS)


def long_ago() -> datetime:
    """An `updated_at` that makes a row stale at once: work handed back is taken over by the next sweep."""
    return timezone.now() - timedelta(seconds=settings.PANDASTACK_WORKER_STALE_SECONDS + 1)


@dataclass
class Lease:
    key: str | None
    token: str
    lost: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost(f"lease {self.key or self.token} was lost")


def holder_of(key: str) -> str | None:
    """Who holds the lock `key` (the `holder` it was taken with), or None when nobody does."""
    value = cache.get(key)
    return value.rsplit("/", 1)[0] if isinstance(value, str) else None


@contextmanager
def lease(
    key: str | None,
    *,
    holder: str = "",
    wait: float = 0.0,
    touch: Callable[[], object] | None = None,
) -> Iterator[Lease | None]:
    """Hold the lock `key` (None: no lock, a heartbeat only) while the body runs, calling `touch` every
    beat. Yields the Lease, or None when the lock stayed taken for `wait` seconds. `holder` says what
    holds it (see `holder_of`). `touch` returning False means the work is no longer this holder's."""
    token = f"{holder}/{uuid.uuid4().hex}"
    if key is not None:
        deadline = time.monotonic() + wait
        delay = 0.05
        while not cache.add(key, token, timeout=lock_ttl()):
            if time.monotonic() >= deadline:
                yield None
                return
            shutdown.check()  # a worker asked to stop does not wait for a lock
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    held = Lease(key=key, token=token)
    stop = threading.Event()
    thread = threading.Thread(target=_beat, args=(held, stop, touch), name=f"lease-{key or holder}", daemon=True)
    thread.start()
    try:
        if touch is not None:
            touch()  # fresh from the start: the sweep must not take over work that was just picked up
        yield held
    finally:
        stop.set()
        thread.join()
        # Redis away for a moment (a restart): the key then expires on its own within its ttl, and the
        # work that held it must not fail for it.
        with contextlib.suppress(*REDIS_DOWN):
            if key is not None and cache.get(key) == token:
                cache.delete(key)


def _beat(held: Lease, stop: threading.Event, touch: Callable[[], object] | None) -> None:
    """The heartbeat thread. It survives errors (a Redis or database blip must not silence it: a
    silent holder is taken over) and only ever marks the lease lost, never stops the holder itself."""
    try:
        while not stop.wait(heartbeat_interval()):
            if held.key is not None:
                try:
                    _renew(held)
                except Exception as exc:  # the cache is down: the database heartbeat still says we are alive
                    log.warning("could not renew lease %s: %s", held.key, exc)
            if touch is not None:
                try:
                    if touch() is False:
                        held.lost.set()
                except Exception as exc:
                    log.warning("heartbeat of %s failed: %s", held.key or held.token, exc)
                    connection.close()  # a broken connection is opened again on the next beat
    finally:
        connection.close()  # this thread's own database connection


def _renew(held: Lease) -> None:
    if held.key is None:
        return
    current = cache.get(held.key)
    if current == held.token:
        cache.touch(held.key, lock_ttl())
    elif current is None and not held.lost.is_set():
        # Expired while we were slow, and nobody took it: take it again.
        if not cache.add(held.key, held.token, timeout=lock_ttl()):
            held.lost.set()
    else:
        held.lost.set()
