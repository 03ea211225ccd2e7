from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.databases import services
from apps.databases.models import Database, DatabaseServer, DatabaseStatus


class Command(BaseCommand):
    help = (
        "Apply the current access rules to every available database's user (run after an upgrade): "
        "each user is made again as provisioning makes it today (MySQL grants naming exactly one "
        "database, Redis ACLs without scripts or broadcast tracking), with its stored password. "
        "Also reports shared Redis servers tenants cannot safely share. Idempotent; exits non-zero "
        "if any database could not be reached."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--engine", default=None, help="Only databases of this engine.")

    def handle(self, *args: Any, engine: str | None, **options: Any) -> None:
        failed = 0
        # Only available databases: a deleted one's user is locked on purpose (a password nobody
        # keeps) and one being provisioned, backed up or restored is its worker's to converge.
        databases = Database.objects.filter(status=DatabaseStatus.AVAILABLE).select_related("team__plan", "server")
        if engine:
            databases = databases.filter(engine=engine)
        done = 0
        for database in databases.order_by("id"):
            try:
                services.provisioner_of(database).ensure(services.spec_for(database))
            except Exception as exc:  # reported per database; the others still get the rules
                failed += 1
                self.stderr.write(f"{database.team.slug}/{database.name} ({database.engine}): {exc}")
                continue
            done += 1
        servers = DatabaseServer.objects.filter(engine="redis", enabled=True)
        if engine:
            servers = servers.filter(engine=engine)
        for server in servers.order_by("name"):
            from apps.databases.provisioners.redis import shared_redis_problems
            from apps.secrets import crypto

            try:
                problems = shared_redis_problems(crypto.decrypt(server.admin_url_encrypted))
            except Exception as exc:  # unreachable, or the key to its URL is gone
                problems = [f"could not be checked: {exc}"]
            for problem in problems:
                self.stderr.write(f"shared Redis '{server.name}': {problem}")
        self.stdout.write(f"Applied the current access rules to {done} database(s); {failed} failed.")
        if failed:
            raise CommandError(f"{failed} database(s) could not be reached; run the command again once they can.")
