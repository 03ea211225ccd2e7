from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.services import user_get_or_create_by_email
from apps.core.actors import Actor
from apps.core.errors import PandaError
from apps.teams.models import Team
from apps.teams.services import team_create


class Command(BaseCommand):
    help = "Create a team with an owner (the owner's account is created when the e-mail is new)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The team's slug: lowercase letters, digits, hyphens (a DNS label).")
        parser.add_argument("--owner", required=True, help="The owner's e-mail address.")
        parser.add_argument("--name", default="", help="A display name (defaults to the slug).")

    def handle(self, *args: Any, slug: str, owner: str, name: str, **options: Any) -> None:
        if Team.objects.filter(slug=slug).exists():
            raise CommandError(f"A team with the slug '{slug}' already exists.")
        try:
            # One transaction: a refused team must not leave a new owner account behind.
            with transaction.atomic():
                user, created = user_get_or_create_by_email(email=owner)
                team = team_create(actor=Actor.system("createteam"), slug=slug, name=name, owner=user)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        except PandaError as exc:
            raise CommandError(exc.message) from exc
        made = " (new account)" if created else ""
        self.stderr.write(f"Created team '{team.slug}' owned by {user.email}{made}.")
