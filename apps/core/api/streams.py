"""Long-lived NDJSON streams (``logs?follow=1``) that cannot take the API down.

Under ASGI (uvicorn; gunicorn with uvicorn workers in production) the response body is an async
iterator: the blocking source (the Docker SDK) is read in a thread of its own that hands lines to the
event loop, so an open stream costs a thread and a socket, never one of the server's request
workers, and ordinary requests keep being served however many streams are open. Under WSGI (the
test client, a sync server) the same stream is served by a plain iterator.

Either way a stream is bounded: it ends after ``max_seconds``, and ``still_allowed`` (the caller's
token, membership and capability, re-read from the database) is asked every ``check_seconds``; the
last NDJSON line then says why it ended. A client that reads more slowly than the source writes loses
lines (counted in a notice line) instead of growing the server's memory. The caller's stream slot
(apps.core.api.throttling.StreamSlots) is kept alive while the stream runs and given back when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import FileResponse

if TYPE_CHECKING:
    from apps.core.api.throttling import StreamSlots

log = logging.getLogger(__name__)

END_MAX_DURATION = "max_duration"
END_ACCESS_REVOKED = "access_revoked"
END_CHECK_FAILED = "check_failed"

_END_MESSAGES = {
    END_MAX_DURATION: "This stream reached its maximum duration of {seconds:g} s; open a new one to go on.",
    END_ACCESS_REVOKED: "The token or access this stream was opened with was revoked, expired or narrowed.",
    END_CHECK_FAILED: "This stream's access could not be re-checked; open a new one.",
}

# Lines waiting for a slow client, per stream; beyond this, new lines are dropped (and counted).
MAILBOX_LIMIT = 5000

# The streams a request opened, so that DropStalledClients can close them however the request ends.
_request_streams: contextvars.ContextVar[list[BoundedStream] | None] = contextvars.ContextVar(
    "pandastack_request_streams", default=None
)

# The periodic access checks of every open stream run here: a couple of threads, each with a database
# connection kept open, rather than a connection (or a server worker) held per stream.
_CHECKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stream-checks")


def end_line(reason: str, *, max_seconds: float = 0.0) -> str:
    message = _END_MESSAGES[reason].format(seconds=max_seconds)
    return json.dumps({"end": {"reason": reason, "message": message}}) + "\n"


def dropped_line(count: int) -> str:
    message = f"{count} line(s) dropped: the client read more slowly than the source wrote."
    return json.dumps({"notice": {"code": "lines_dropped", "count": count, "message": message}}) + "\n"


class _Mailbox:
    """Lines handed from the reader thread to whoever serves the stream: bounded, and one wake-up per
    batch (not per line), so a chatty source does not flood the event loop with callbacks."""

    def __init__(self, wake: Callable[[], None], limit: int = MAILBOX_LIMIT) -> None:
        self._lock = threading.Lock()
        self._items: deque[str] = deque()
        self._dropped = 0
        self._done = False
        self._woken = False
        self._wake = wake
        self._limit = limit

    def _notify(self) -> None:
        # Called with the lock held: wake the consumer once until it takes what is waiting.
        if not self._woken:
            self._woken = True
            with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody to wake
                self._wake()

    def put(self, item: str) -> None:
        with self._lock:
            if len(self._items) >= self._limit:
                self._dropped += 1
                return
            self._items.append(item)
            self._notify()

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._notify()

    def take(self) -> tuple[str, int, bool]:
        """(the waiting lines joined, how many were dropped, whether the source ended)."""
        with self._lock:
            text = "".join(self._items)
            self._items.clear()
            dropped, self._dropped = self._dropped, 0
            self._woken = False
            return text, dropped, self._done


class BoundedStream:
    """``source(stop)`` yields NDJSON lines and blocks while it waits (it runs in a thread of its own
    and must end soon after ``stop`` is set). See the module docstring for what bounds the stream."""

    def __init__(
        self,
        source: Callable[[threading.Event], Iterable[str]],
        *,
        max_seconds: float,
        check_seconds: float,
        still_allowed: Callable[[], bool] | None = None,
        slots: StreamSlots | None = None,
    ) -> None:
        self._source = source
        self._max_seconds = max_seconds
        self._check_seconds = max(0.1, check_seconds)
        self._still_allowed = still_allowed
        self._slots = slots
        self._stop = threading.Event()
        self._closed = False

    # -- the response body --------------------------------------------------------------------------
    def body_for(self, request: Any) -> Any:
        """What StreamingHttpResponse serves: an async iterable under ASGI, an iterable under WSGI.
        (Django would otherwise drain a sync iterator to the end before sending a byte under ASGI, and
        an async one under WSGI: a follow would never answer.)"""
        django_request = getattr(request, "_request", request)
        return _AsyncBody(self) if isinstance(django_request, ASGIRequest) else _SyncBody(self)

    def close(self) -> None:
        """Stop reading the source and give the stream slot back (idempotent; the response's close)."""
        self._stop.set()
        if not self._closed:
            self._closed = True
            if self._slots is not None:
                try:
                    self._slots.release()
                except Exception:  # the cache is down: the slot expires on its own
                    log.warning("could not release a stream slot", exc_info=True)

    # -- shared pieces ------------------------------------------------------------------------------
    def _start_reader(self, mailbox: _Mailbox) -> None:
        threading.Thread(target=self._read, args=(mailbox,), name="stream-reader", daemon=True).start()

    def _read(self, mailbox: _Mailbox) -> None:
        try:
            for line in self._source(self._stop):
                if self._stop.is_set():
                    break
                mailbox.put(line)
        except Exception:
            log.exception("stream source failed")
            mailbox.put(json.dumps({"error": {"code": "stream_failed", "message": "The stream failed."}}) + "\n")
        finally:
            mailbox.finish()

    def _check(self) -> str | None:
        """Why the stream must end now, or None. Runs in a thread (database and cache calls)."""
        try:
            if self._still_allowed is not None and not self._still_allowed():
                return END_ACCESS_REVOKED
            if self._slots is not None:
                self._slots.refresh()
        except Exception:
            log.warning("stream access check failed", exc_info=True)
            # A broken connection must not fail every later check of this thread: drop it.
            with contextlib.suppress(Exception):
                connections.close_all()
            return END_CHECK_FAILED
        return None

    # -- under WSGI ---------------------------------------------------------------------------------
    def iter_lines(self) -> Iterator[str]:
        ready = threading.Event()
        mailbox = _Mailbox(ready.set)
        self._start_reader(mailbox)
        deadline = time.monotonic() + self._max_seconds
        next_check = time.monotonic() + self._check_seconds
        try:
            while True:
                ready.clear()
                text, dropped, done = mailbox.take()
                if dropped:
                    yield dropped_line(dropped)
                if text:
                    yield text
                if done:
                    return
                now = time.monotonic()
                if now >= deadline:
                    yield end_line(END_MAX_DURATION, max_seconds=self._max_seconds)
                    return
                if now >= next_check:
                    reason = self._check()
                    if reason:
                        yield end_line(reason)
                        return
                    next_check = now + self._check_seconds
                    continue
                if not text and not dropped:
                    ready.wait(min(deadline, next_check) - now)
        finally:
            self.close()

    # -- under ASGI ---------------------------------------------------------------------------------
    async def aiter_lines(self) -> AsyncIterator[str]:
        registry = _request_streams.get()
        if registry is not None:
            registry.append(self)
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        mailbox = _Mailbox(lambda: loop.call_soon_threadsafe(ready.set))
        try:
            # The view ran in this request's own thread, whose database connection would otherwise stay
            # open (or out of the pool) for as long as the stream: give it back now.
            await sync_to_async(connections.close_all)()
            self._start_reader(mailbox)
            deadline = loop.time() + self._max_seconds
            next_check = loop.time() + self._check_seconds
            while True:
                ready.clear()
                text, dropped, done = mailbox.take()
                if dropped:
                    yield dropped_line(dropped)
                if text:
                    yield text
                if done:
                    return
                now = loop.time()
                if now >= deadline:
                    yield end_line(END_MAX_DURATION, max_seconds=self._max_seconds)
                    return
                if now >= next_check:
                    reason = await sync_to_async(self._check, thread_sensitive=False, executor=_CHECKS)()
                    if reason:
                        yield end_line(reason)
                        return
                    next_check = loop.time() + self._check_seconds
                    continue
                if not text and not dropped:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ready.wait(), min(deadline, next_check) - now)
        finally:
            # Also on the client going away (the task is cancelled) and on a stalled client. The slot is
            # given back off the event loop: by the response's close() and by DropStalledClients, which
            # closes every stream of the request when it ends, however it ends.
            self._stop.set()


class _SyncBody:
    def __init__(self, stream: BoundedStream) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[str]:
        return self._stream.iter_lines()

    def close(self) -> None:
        self._stream.close()


class _AsyncBody:
    def __init__(self, stream: BoundedStream) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[str]:
        return self._stream.aiter_lines()

    def close(self) -> None:
        self._stream.close()


class ChunkedFileResponse(FileResponse):
    """A FileResponse that streams under ASGI too. Django serves a file's sync iterator under ASGI
    by reading the whole file into memory first (a multi-gigabyte backup download would); this reads
    it a block at a time in a thread, so memory stays one block per download. Under WSGI it is a
    plain FileResponse."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        filelike = self.file_to_stream
        if filelike is None:
            async for part in super().__aiter__():
                yield part
            return
        read = sync_to_async(filelike.read, thread_sensitive=False)
        while chunk := await read(self.block_size):
            yield chunk


class ClientStalled(Exception):
    """The client read nothing for PANDASTACK_STREAM_STALL_SECONDS: its connection is dropped."""


class DropStalledClients:
    """ASGI middleware: a send that cannot complete for ``stall_seconds`` (the client stopped reading
    and every buffer on the way is full) ends the request and closes its connection.

    A stream's own checks (deadline, revocation, slot refresh) run only between sends; without this a
    client that stops reading would park its stream inside a send for ever — past its maximum
    duration, past a revocation, and past the expiry of its slot, letting its token open more."""

    def __init__(self, app: Callable[..., Any], *, stall_seconds: float) -> None:
        self.app = app
        self.stall_seconds = stall_seconds

    async def __call__(self, scope: dict, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def guarded_send(message: dict) -> None:
            try:
                await asyncio.wait_for(send(message), self.stall_seconds)
            except TimeoutError:
                raise ClientStalled from None

        streams: list[BoundedStream] = []
        token = _request_streams.set(streams)
        try:
            await self.app(scope, receive, guarded_send)
        except* ClientStalled:
            # The server then closes the connection (it logs that the response was not completed).
            log.warning("dropped a client that read nothing for %g s: %s", self.stall_seconds, scope.get("path"))
        finally:
            _request_streams.reset(token)
            # Django does not close a response whose sending failed: give the streams' slots back here.
            for stream in streams:
                await sync_to_async(stream.close, thread_sensitive=False)()
