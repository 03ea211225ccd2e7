from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.errors import PandaError
from apps.databases.models import DatabaseEngine
from apps.databases.services import server_register


def _explain(message: str, fields: dict[str, list[str]]) -> str:
    """One line: the message, then each field's complaints (never the URL: it holds a password)."""
    details = "; ".join(f"{field}: {' '.join(map(str, problems))}" for field, problems in fields.items())
    return f"{message} {details}" if details else message


class Command(BaseCommand):
    help = (
        "Register a database server for the shared placement: PandaStack connects to it as its "
        "administrator (to check the URL) and creates each team's database and user there. A Redis "
        "is refused unless tenants can share it safely: no enabled user without a password (turn the "
        "`default` user off or give it one), a maxmemory, and not the platform's own broker or cache."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("engine", choices=DatabaseEngine.values, help="The server's engine.")
        parser.add_argument(
            "admin_url",
            metavar="ADMIN_URL",
            help="The administrator's URL, e.g. postgres://postgres:PASSWORD@db.internal:5432/postgres "
            "(stored encrypted; mind your shell history).",
        )
        parser.add_argument("--name", default=None, help="A name for the server (default: from engine, host, port).")
        parser.add_argument(
            "--host-for-apps", default="", help="The host apps connect to (default: the admin URL's host)."
        )
        parser.add_argument(
            "--port-for-apps", type=int, default=None, help="The port apps connect to (default: the admin URL's port)."
        )

    def handle(
        self,
        *args: Any,
        engine: str,
        admin_url: str,
        name: str | None,
        host_for_apps: str,
        port_for_apps: int | None,
        **options: Any,
    ) -> None:
        if port_for_apps is not None and not 1 <= port_for_apps <= 65535:
            raise CommandError("--port-for-apps must be between 1 and 65535.")
        try:
            server = server_register(
                engine=engine,
                admin_url=admin_url,
                name=name,
                host_for_apps=host_for_apps,
                port_for_apps=port_for_apps,
            )
        except PandaError as exc:
            raise CommandError(_explain(exc.message, exc.fields)) from None
        except ValidationError as exc:
            fields = exc.message_dict if hasattr(exc, "error_dict") else {"server": exc.messages}
            raise CommandError(_explain("Invalid server.", fields)) from None
        self.stdout.write(f"Registered {server.engine} server '{server.name}' (version {server.version or 'unknown'}).")
