"""The Celery app. Its configuration lives in Django settings under the CELERY_ prefix."""

import logging
import os
from functools import partial
from typing import Any

from celery import Celery, bootsteps
from celery.worker.consumer import Consumer as CeleryConsumer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pandastack.settings.local")

log = logging.getLogger(__name__)

# While the broker is away, a worker tries again after 1 s, 2 s, 3 s … and then every this many
# seconds (Celery's own steps grow to 30 s: after a 30 s Redis restart a worker sat idle for up to
# 12 s more). A reconnect attempt is one TCP connect: cheap for the broker even from many workers.
RECONNECT_MAX_INTERVAL = 3.0


class Consumer(CeleryConsumer):
    """Celery's consumer, reconnecting to the broker on a short, capped schedule (CELERY_WORKER_CONSUMER)."""

    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = partial(
            conn.ensure_connection, interval_start=1, interval_step=1, interval_max=RECONNECT_MAX_INTERVAL
        )
        return super().ensure_connected(conn)


class RelayPendingTasks(bootsteps.StartStopStep):
    """Each time a worker (re)connects to the broker, it asks for the tasks kept in the database while
    the broker was unreachable (apps.core.broker) to be published again — on reconnection, not at beat's
    next tick. The relay is a task like any other: it runs after what already waited in the queue, which
    is where the kept tasks would have been anyway."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, c: Any) -> None:
        try:
            c.app.send_task("core.relay_pending_tasks")
        except Exception:  # never let this stop the consumer: beat asks for a relay periodically too
            log.warning("could not ask for a relay of pending tasks", exc_info=True)


app = Celery("pandastack")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.steps["consumer"].add(RelayPendingTasks)
app.autodiscover_tasks()
