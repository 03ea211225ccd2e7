from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.secrets import crypto
from apps.secrets.models import VariableVersion


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored variable value under the first key of PANDASTACK_SECRET_KEYS, in batches. "
        "Safe to interrupt and run again (values already under the first key are skipped). Afterwards the "
        "old keys can be removed from PANDASTACK_SECRET_KEYS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        crypto.reset_keys()
        rotated = skipped = 0
        last_id = 0
        while True:
            with transaction.atomic():
                batch = list(
                    VariableVersion.objects.select_for_update()
                    .filter(pk__gt=last_id)
                    .exclude(value_encrypted="")
                    .order_by("pk")[:batch_size]
                )
                if not batch:
                    break
                for version in batch:
                    if crypto.is_current(version.value_encrypted):
                        skipped += 1
                        continue
                    try:
                        version.value_encrypted = crypto.rotate(version.value_encrypted)
                    except crypto.DecryptionFailed as exc:
                        raise CommandError(
                            f"Version {version.pk} cannot be decrypted with any configured key: keep the old key "
                            "in PANDASTACK_SECRET_KEYS until rotation has finished."
                        ) from exc
                    version.save(update_fields=["value_encrypted"])
                    rotated += 1
                last_id = batch[-1].pk
            self.stderr.write(f"… {rotated} re-encrypted, {skipped} already current (up to id {last_id})")
        self.stdout.write(f"Done: {rotated} value(s) re-encrypted, {skipped} already under the first key.")
