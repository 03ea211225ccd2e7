"""Leases with a heartbeat (apps.core.leases) against the real cache (Redis), and the worker's stop
request (apps.core.shutdown) with a real signal delivered to this process."""

import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from apps.core import shutdown
from apps.core.leases import LeaseLost, holder_of, lease, lock_ttl


@pytest.fixture(autouse=True)
def fast_heartbeat(settings) -> None:
    settings.PANDASTACK_HEARTBEAT_SECONDS = 0.2


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def test_one_holder_at_a_time_and_the_lock_goes_with_it():
    with lease("test:lease:one", holder="deployment:1") as first:
        assert first is not None
        assert holder_of("test:lease:one") == "deployment:1"
        with lease("test:lease:one", holder="deployment:2", wait=0.3) as second:
            assert second is None
    assert holder_of("test:lease:one") is None


def test_the_heartbeat_refreshes_the_work_and_outlives_the_locks_ttl():
    beats: list[float] = []
    with lease("test:lease:beat", holder="x", touch=lambda: beats.append(time.monotonic())) as held:
        assert len(beats) == 1  # at once: work just picked up is fresh
        time.sleep(lock_ttl() + 1.0)
        assert holder_of("test:lease:beat") == "x"  # renewed past its time to live
        held.check()
    assert len(beats) >= 5


def test_a_lock_another_process_took_over_is_lost():
    with lease("test:lease:lost", holder="slow") as held:
        cache.set("test:lease:lost", "fast/other-token", timeout=30)  # it lapsed and someone took it
        wait_until(held.lost.is_set)
        with pytest.raises(LeaseLost):
            held.check()
    assert holder_of("test:lease:lost") == "fast"  # the loser does not delete the new holder's lock


def test_work_that_is_no_longer_ours_loses_the_lease_and_errors_do_not_stop_the_heartbeat():
    calls = {"n": 0}

    def touch() -> bool:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise ConnectionError("database blip")
        return calls["n"] < 5  # then the row says the work went to someone else

    with lease(None, holder="backup:1", touch=touch) as held:
        wait_until(held.lost.is_set)
    assert calls["n"] >= 5


@pytest.fixture
def stop_signal() -> Iterator[signal.Signals]:
    """SIGUSR2 handled as a pool process handles SIGTERM during a task; the stop request forgotten
    afterwards (it is per process: a real worker never comes back from it)."""
    previous = signal.signal(signal.SIGUSR2, shutdown._on_stop_signal)
    yield signal.SIGUSR2
    signal.signal(signal.SIGUSR2, previous)
    shutdown._requested.clear()
    shutdown._state.update(interruptible=0, raised=False)


def test_a_stop_request_cuts_interruptible_work_at_once_and_stops_at_check_points(stop_signal):
    threading.Timer(0.2, os.kill, (os.getpid(), stop_signal)).start()
    started = time.monotonic()
    with pytest.raises(shutdown.WorkerStopping), shutdown.interruptible():
        time.sleep(10)  # a pull, a dump: blocked in a system call
    assert time.monotonic() - started < 5
    assert shutdown.stop_requested()
    with pytest.raises(shutdown.WorkerStopping):
        shutdown.check()


def test_outside_interruptible_work_a_stop_request_only_waits_for_the_next_check_point(stop_signal):
    shutdown.check()
    os.kill(os.getpid(), stop_signal)
    time.sleep(0.1)  # the handler has run; nothing was raised here
    with pytest.raises(shutdown.WorkerStopping):
        shutdown.check()


def test_worker_stopping_reaches_the_main_process_as_a_requeue():
    # The pool process pickles the exception to the worker's main process, which then requeues.
    again = pickle.loads(pickle.dumps(shutdown.WorkerStopping()))
    assert isinstance(again, shutdown.WorkerStopping) and again.requeue is True
