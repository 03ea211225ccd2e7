"""Client load through the router, for tests that count failed requests (the router's own tests,
the scale-out and supersede drills)."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from typing import Protocol


class _Routed(Protocol):
    http_port: int


class Load(threading.Thread):
    """Requests ``host`` in a loop until stopped; counts answers by body and every failure (an error
    or a non-200).

    By default each request opens a new connection: none may be refused or dropped. A keep-alive
    client (``keepalive=True``) behaves like browsers and curl: when a connection it reuses turns out
    to have been closed by the other side before any answer, it retries the (idempotent) request once
    on a new connection — counted in ``stale_retries``, not as a failure; anything else is a failure.
    """

    def __init__(self, router: _Routed, host: str, *, keepalive: bool = False) -> None:
        super().__init__(daemon=True)
        self.router, self.host, self.keepalive = router, host, keepalive
        self.seen: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stale_retries = 0
        self.halt = threading.Event()

    @property
    def total(self) -> int:
        return sum(self.seen.values()) + len(self.failures)

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        reused = False
        while not self.halt.is_set() and self.total < 20_000:
            if conn is None:
                conn, reused = http.client.HTTPConnection("127.0.0.1", self.router.http_port, timeout=5), False
            try:
                conn.request("GET", "/", headers={"Host": self.host})
                response = conn.getresponse()
                body = response.read().decode()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                stale = reused and isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError)
                if stale and self.stale_retries < 100:
                    self.stale_retries += 1
                else:
                    self.failures.append(repr(exc))
                continue
            if response.status == 200:
                self.seen[body] += 1
            else:
                self.failures.append(f"{response.status} {body}")
            if not self.keepalive or response.will_close:
                conn.close()
                conn = None
            else:
                reused = True
        if conn is not None:
            conn.close()

    def wait_for_requests(self, count: int) -> None:
        start = self.total
        deadline = time.monotonic() + 10
        while self.total < start + count:
            assert time.monotonic() < deadline, (self.total, self.failures[:5])
            time.sleep(0.01)

    def finish(self) -> None:
        self.halt.set()
        self.join(timeout=10)
        assert not self.is_alive()
