"""Logging filters (wired in settings.LOGGING)."""

import logging


class QuietRoutineTasks(logging.Filter):
    """Drop a worker's "received" and "succeeded" lines (INFO) for the tasks Celery beat sends every few
    seconds: the takeover sweep alone would write 86,400 of them a day. Their failures (ERROR) and what
    they do (their own WARNING lines, e.g. "taking over stale deployment") are kept."""

    ROUTINE = ("core.take_over_stale_work",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(f"Task {name}[" in message for name in self.ROUTINE)
