from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.models import User
from apps.core.actors import Actor
from apps.core.errors import PandaError
from apps.teams.models import Team
from apps.tokens.services import token_create


class Command(BaseCommand):
    help = (
        "Create an API token for a member of a team and print only the token on stdout "
        "(it is shown once and stored hashed)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True, help="The team's slug.")
        parser.add_argument("--user", required=True, help="The member's e-mail (or a service account's username).")
        parser.add_argument("--name", required=True, help="A name to recognise the token by.")
        parser.add_argument(
            "--scopes",
            default="read",
            help="Comma-separated: read,deploy,logs,secrets,infra,admin (read is implied).",
        )
        parser.add_argument("--projects", default="", help="Comma-separated project slugs to limit the token to.")
        parser.add_argument("--expires-in", type=int, default=None, dest="expires_in", help="Days until expiry.")

    def handle(self, *args: Any, **options: Any) -> None:
        team = Team.objects.filter(slug=options["team"]).first()
        if team is None:
            raise CommandError(f"No team with the slug '{options['team']}'.")
        who = options["user"]
        user = (User.objects.filter(email__iexact=who) | User.objects.filter(username=who)).first()
        if user is None:
            raise CommandError(f"No user '{who}'.")
        split = lambda value: [part.strip() for part in value.split(",") if part.strip()]  # noqa: E731
        try:
            _, raw = token_create(
                actor=Actor.system("createtoken"),
                team=team,
                user=user,
                name=options["name"],
                scopes=split(options["scopes"]),
                project_slugs=split(options["projects"]),
                expires_in_days=options["expires_in"],
            )
        except PandaError as exc:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.fields.items())
            raise CommandError(f"{exc.message} {details}".strip()) from exc
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(raw)
