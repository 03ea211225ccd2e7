import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.monitoring.monitor import Monitor


class Command(BaseCommand):
    help = (
        "Run the monitor: read the router's access log, sample container CPU and memory, check each app's health, "
        "evaluate alert rules and roll metrics up. One monitor per host collects; more may run as standbys "
        "(they evaluate alert rules and take over collecting when the first stops)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-collect", action="store_true", help="Only evaluate alert rules (no router or engine on this host)."
        )

    def handle(self, *args: Any, no_collect: bool, **options: Any) -> None:
        monitor = Monitor(collect=not no_collect, on_change=lambda message: self.stderr.write(f"monitor: {message}"))

        def stop(signum: int, frame: Any) -> None:
            monitor.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stderr.write("monitor running")
        monitor.run()
        self.stderr.write("monitor stopped")
