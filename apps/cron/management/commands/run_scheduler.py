import signal
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from apps.cron.scheduler import tick


class Command(BaseCommand):
    help = (
        "Run the cron scheduler: twice a second, start the runs that are due and record the ones that finished. "
        "Any number may run at once (each slot still runs once); it needs the Docker Engine."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds between ticks (default 0.5).")
        parser.add_argument("--once", action="store_true", help="Run one tick and exit.")

    def handle(self, *args: Any, interval: float, once: bool, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stderr.write(f"cron scheduler running (tick every {interval}s)")
        while not stopping:
            started = time.monotonic()
            close_old_connections()
            try:
                summary = tick()
                if summary.scheduled or summary.started or summary.finished or summary.missed or summary.skipped:
                    self.stderr.write(f"tick: {summary}")
            except Exception as exc:  # one bad tick (engine restarting, database blip) must not stop the scheduler
                self.stderr.write(f"tick failed: {exc!r}")
            if once:
                return
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
        self.stderr.write("cron scheduler stopped")
