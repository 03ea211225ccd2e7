"""A graceful stop of a Celery worker hands its work back instead of finishing it.

Celery's own warm shutdown (SIGTERM) waits for the running task, however long it takes: a deploy
health-checking a broken release holds the worker for a minute, and whoever stops the worker
(scripts/run after 10 s, systemd after 90 s) then kills it, which leaves the work to the takeover
sweep. Instead, a task that knows how to stop (deploys, provisioning, backups and restores) stops
at its next check point and raises `WorkerStopping`; that is a Celery `Reject(requeue=True)`, so its
message goes back to the queue, and the next worker (another one, or this one restarted) resumes
it. The worker then exits within seconds.

How the stop reaches the task (Celery 5.x prefork, read from celery/apps/worker.py and
billiard/pool.py):
- `kill -TERM <main pid>` (scripts/run): only the main process gets the signal. It starts the warm
  shutdown and sends `worker_shutting_down`; our receiver stops the worker consuming (so the handed-back
  message goes to another worker, not back to this one) and relays SIGTERM to each pool process that
  is running a task (`active_requests[*].worker_pid`).
- SIGTERM to the whole process group (systemd's default, `docker stop` of a container whose init
  forwards it, the e2e tests): the pool process gets it directly too. billiard installs a handler there
  that raises SystemExit wherever the task is — so while a task runs (`task_prerun` .. `task_postrun`),
  the pool process handles SIGTERM with ours instead, which only records the request. Its child
  processes (pg_dump, …) get the group's signal as well; a failure after a stop request is therefore
  treated as the stop, not as the work's failure.
- REMAP_SIGTERM=SIGQUIT would turn SIGTERM into a cold shutdown that kills the task at an arbitrary
  point; `worker_soft_shutdown_timeout` only applies to cold shutdowns. Neither stops work at a check
  point, so neither is used.

Work that may block for long at a point where it is safe to cut (an image pull, a dump, a provisioning
statement waiting on a lock) runs inside `interruptible()`: a stop request arriving there raises
`WorkerStopping` at once, from the signal handler."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.exceptions import Reject

log = logging.getLogger(__name__)

_requested = threading.Event()
_state = {"interruptible": 0, "raised": False}
_swapped: list[Any] = []  # the pool process's own SIGTERM handler while ours stands in for it
_consumer: list[Any] = []


class WorkerStopping(Reject):
    """The worker is stopping: the task hands its work back. A Reject with requeue, so Celery puts the
    message back on the queue for the next worker (the task must have acks_late, as all ours do)."""

    def __init__(self, reason: str = "the worker is stopping; the work was handed back", requeue: bool = True) -> None:
        # Both arguments, as Reject pickles them: the pool process sends the exception to the main one.
        super().__init__(reason, requeue)


def stop_requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """A check point: raise WorkerStopping when the worker was asked to stop."""
    if _requested.is_set():
        raise WorkerStopping()


@contextmanager
def interruptible() -> Iterator[None]:
    """Run the body so that a stop request interrupts it where it is (WorkerStopping, raised from the
    signal handler in the main thread). Only for work that is safe to cut at any point and that runs
    in the task's own (main) thread."""
    check()
    on_main_thread = threading.current_thread() is threading.main_thread()
    if on_main_thread:
        _state["interruptible"] += 1
    try:
        yield
    finally:
        if on_main_thread:
            _state["interruptible"] -= 1


def _on_stop_signal(signum: int, frame: object) -> None:
    _requested.set()
    # Raised once: a second signal (the relay after the group's own SIGTERM) must not interrupt the
    # clean-up the first one started.
    if _state["interruptible"] and not _state["raised"]:
        _state["raised"] = True
        raise WorkerStopping()


# --- Celery wiring ------------------------------------------------------------------------------------
def _in_pool_process() -> bool:
    """A prefork pool process, in its main thread: not the worker's main process (a solo pool, an
    eager test run), whose SIGTERM handler is Celery's own shutdown and must stay."""
    from billiard.process import current_process

    return current_process().name != "MainProcess" and threading.current_thread() is threading.main_thread()


def _task_started(**_: Any) -> None:
    """In the pool process, as a task starts: SIGTERM asks the task to hand its work back. A request
    is per task: a stopping worker consumes nothing more, so a task that starts after one was made
    runs in a worker that is not stopping (the pool process alone got a stray SIGTERM)."""
    if not _in_pool_process():
        return
    _requested.clear()
    _state["raised"] = False
    if not _swapped:
        previous = signal.signal(signal.SIGTERM, _on_stop_signal)
        _swapped.append(signal.SIG_DFL if previous is None else previous)


def _task_finished(**_: Any) -> None:
    """Between tasks billiard's handler is back (SIGTERM ends an idle pool process at once)."""
    if _swapped and _in_pool_process():
        signal.signal(signal.SIGTERM, _swapped.pop())


def _worker_ready(sender: Any = None, **_: Any) -> None:
    _consumer[:] = [sender]  # the main process's Consumer, to stop taking messages when stopping


def _worker_shutting_down(**_: Any) -> None:
    """In the main process, from its SIGTERM/SIGINT handler: stop taking messages, then tell the busy
    pool processes. Consuming stops first (as Celery's own cold shutdown does), or the message a task
    hands back could come straight back to this worker: a warm shutdown keeps its consumer polling
    until the running task ends, and the folder broker hands a requeued message to whoever polls."""
    from celery.worker import state

    consumer = _consumer[0] if _consumer else None
    if consumer is not None and consumer.task_consumer is not None:
        try:
            consumer.task_consumer.cancel()
        except Exception as exc:  # the broker is gone: nothing will be delivered anyway
            log.warning("could not stop consuming: %s", exc)
    for request in list(state.active_requests):
        pid = request.worker_pid
        if pid and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue


def connect_celery_signals() -> None:
    from celery import signals

    signals.task_prerun.connect(_task_started, weak=False, dispatch_uid="pandastack-handback-prerun")
    signals.task_postrun.connect(_task_finished, weak=False, dispatch_uid="pandastack-handback-postrun")
    signals.worker_ready.connect(_worker_ready, weak=False, dispatch_uid="pandastack-handback-ready")
    signals.worker_shutting_down.connect(_worker_shutting_down, weak=False, dispatch_uid="pandastack-handback")
