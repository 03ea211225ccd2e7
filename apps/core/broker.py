"""How the platform hands work to its workers: `enqueue(task, *args)`, never a bare `.delay()`.

The broker (Redis) may be down — restarted by an operator, failed over, out of memory. Then a write
must neither hang, nor answer 500, nor lose its work. Which of the two honest answers applies is
decided per call:

* **Refused** (the default): work someone asked for and waits on — a deploy, a scale, a stop, a
  database, a backup, a deletion. The broker is asked first (a PING, at most
  PANDASTACK_BROKER_CHECK_TIMEOUT seconds), inside the caller's transaction, so when it does not
  answer the service raises ServiceUnavailable (503 `service_unavailable`) and the transaction rolls
  back: nothing was written, nothing waits half-done, and the caller (a person, the CLI, CI) knows at
  once that it must try again — rather than watch a deployment that no worker will ever pick up.
* **Deferred** (`defer=True`): work that follows from something that has to be recorded whether or
  not a worker is reachable — an alert's notifications (the incident opens now; the e-mail goes
  when the broker is back), a new app's router backend (the first deploy or the reconciler makes it
  anyway), a new channel's verification mail.

Either way the task is published only after the transaction commits. If the publish fails then
(the broker went away between the check and the commit, or a deferred call during an outage), the
task is kept in the database as a PendingTask under the id it was given; a worker publishes it again
as soon as it is connected (`relay_pending_tasks`: on every (re)connection of a worker, and every
PANDASTACK_PENDING_TASKS_RELAY_INTERVAL from beat). The intent is committed, so the task is never
lost, and it keeps its task id, so it is not run twice because of the detour.
"""

from __future__ import annotations

import logging
from functools import cache, partial
from typing import Any

import redis
from celery import current_app
from celery.app.task import Task
from django.conf import settings
from django.db import transaction
from django.db.models import F
from kombu.exceptions import KombuError
from kombu.utils.uuid import uuid

from apps.core.errors import ServiceUnavailable
from apps.core.models import PendingTask

log = logging.getLogger(__name__)

# What a publish raises when the broker cannot be reached (kombu wraps most of them as its
# OperationalError; redis-py's and socket errors can surface unwrapped).
BROKER_ERRORS: tuple[type[BaseException], ...] = (KombuError, redis.RedisError, OSError)
# What a cache call raises when Redis cannot be reached (the cache is Redis whenever REDIS_URL is set).
REDIS_DOWN: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)

# The broker answered a moment ago (the check): two quick attempts, not Celery's default of four
# spread over a second, so a request never waits long on a broker that just went away.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}

UNAVAILABLE_MESSAGE = (
    "The platform's task queue (its Redis broker) is not reachable, so this change cannot be carried out "
    "now. Nothing was changed; send the same request again in a little while."
)
RETRY_AFTER_SECONDS = 10
RELAY_BATCH = 100


def broker_url() -> str:
    """The URL tasks are published to (the Celery app's, which tests may point elsewhere)."""
    conf = current_app.conf
    return str(conf.broker_write_url or conf.broker_url or "")


@cache
def _redis_client(url: str, timeout: float) -> redis.Redis:
    # A client per URL, kept: its pooled connection makes the check one PING, not a TCP handshake.
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=0)


def broker_reachable() -> bool:
    """Whether the broker answers now, within PANDASTACK_BROKER_CHECK_TIMEOUT seconds."""
    if current_app.conf.task_always_eager:
        return True  # tasks run in the caller's process; no broker involved
    url = broker_url()
    scheme = url.split("://", 1)[0]
    timeout = settings.PANDASTACK_BROKER_CHECK_TIMEOUT
    if scheme in ("redis", "rediss"):
        try:
            return bool(_redis_client(url, timeout).ping())
        except redis.RedisError:
            return False
    if scheme in ("filesystem", "memory"):
        return True  # a folder on this machine (the embedded default) is as available as the disk
    try:
        with current_app.connection_for_write(connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
    except (*BROKER_ERRORS, TimeoutError):
        return False
    return True


def require_broker() -> None:
    """Raise ServiceUnavailable (503) unless the broker answers."""
    if not broker_reachable():
        log.warning("the broker (%s) is not reachable: refusing a change that needs a worker", _safe(broker_url()))
        raise ServiceUnavailable(UNAVAILABLE_MESSAGE, retry_after=RETRY_AFTER_SECONDS)


def enqueue(task: Task, *args: Any, defer: bool = False) -> str:
    """Run `task(*args)` on a worker once the current transaction commits (at once outside one) and
    return its task id. Unless `defer`, first make sure the broker answers, else raise
    ServiceUnavailable so that the caller's transaction writes nothing (see the module docstring)."""
    if not defer:
        require_broker()
    task_id = uuid()
    transaction.on_commit(partial(_publish, task, list(args), task_id))
    return task_id


def _publish(task: Task, args: list[Any], task_id: str) -> None:
    try:
        task.apply_async(args=args, task_id=task_id, retry_policy=PUBLISH_RETRY_POLICY)
    except BROKER_ERRORS as exc:
        # Committed already: keep the task for a worker to publish again, never drop it.
        PendingTask.objects.create(task=task.name, args=args, task_id=task_id, last_error=_reason(exc))
        log.warning("broker unreachable: task %s[%s] kept for a worker to publish again (%s)", task.name, task_id, exc)


def relay_pending_tasks() -> int:
    """Publish the tasks kept while the broker was away, oldest first, under their own task ids, and
    forget each one published. Stops at the first failure (the broker went away again; the next relay
    carries on). Returns how many were published. Safe in several workers at once (rows are locked,
    skipping those another worker holds)."""
    sent, more = 0, True
    while more:
        published, more = _relay_batch()
        sent += published
    if sent:
        log.info("relayed %d task(s) kept while the broker was unreachable", sent)
    return sent


def _relay_batch() -> tuple[int, bool]:
    """One batch of `relay_pending_tasks`: how many were published, and whether to go on."""
    sent = 0
    with transaction.atomic():
        batch = list(PendingTask.objects.select_for_update(skip_locked=True).order_by("id")[:RELAY_BATCH])
        for pending in batch:
            try:
                current_app.send_task(
                    pending.task, args=pending.args, task_id=pending.task_id, retry_policy=PUBLISH_RETRY_POLICY
                )
            except BROKER_ERRORS as exc:
                PendingTask.objects.filter(pk=pending.pk).update(attempts=F("attempts") + 1, last_error=_reason(exc))
                return sent, False  # the publishes before this one stand (committed with their deletes)
            pending.delete()
            sent += 1
    return sent, len(batch) == RELAY_BATCH


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _safe(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}" if rest else url
