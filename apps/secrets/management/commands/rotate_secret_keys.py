from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction

from apps.secrets import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value the platform stores (every EncryptedTextField: variables, database "
        "passwords, server admin URLs, dedicated databases' superuser passwords, channel signing secrets, ...) "
        "under the first key of PANDASTACK_SECRET_KEYS, in batches. Safe to interrupt and run again (values "
        "already under the first key are skipped). It prints `Done` only when no stored value needs another "
        "key: then the old keys can be removed from PANDASTACK_SECRET_KEYS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        crypto.reset_keys()
        fields = crypto.encrypted_fields()
        # Dedicated databases made before their superuser password was kept in a field have it in an
        # immutable volume label, under the key of that time: move it into the field first.
        from apps.databases.dedicated import adopt_label_passwords

        adopted, unadoptable = adopt_label_passwords()
        if adopted:
            self.stderr.write(f"… {adopted} dedicated database password(s) moved from volume labels")
        rotated = skipped = 0
        for model, name in fields:
            done = self._rotate_field(model, name, batch_size)
            rotated += done[0]
            skipped += done[1]
        # Verify rather than trust the counts: a row written meanwhile by a process still running with
        # the old key list first would need another run.
        stale = [
            f"{model._meta.label}.{name}: {count}" for model, name in fields if (count := self._stale(model, name))
        ]
        if stale or unadoptable:
            raise CommandError(
                "Not done: values still need an old key; keep it in PANDASTACK_SECRET_KEYS and run again. "
                + "; ".join(stale + unadoptable)
            )
        self.stdout.write(
            f"Done: {rotated} value(s) re-encrypted, {skipped} already under the first key. "
            f"No value in the {len(fields)} encrypted field(s) needs an old key any more."
        )

    def _rotate_field(self, model: type[models.Model], name: str, batch_size: int) -> tuple[int, int]:
        label = f"{model._meta.label}.{name}"
        rotated = skipped = 0
        last_pk: Any = None
        while True:
            with transaction.atomic():
                rows = model._base_manager.select_for_update().exclude(**{name: ""}).order_by("pk")
                if last_pk is not None:
                    rows = rows.filter(pk__gt=last_pk)
                batch = list(rows.values_list("pk", name)[:batch_size])
                if not batch:
                    break
                for pk, token in batch:
                    if crypto.is_current(token):
                        skipped += 1
                        continue
                    try:
                        fresh = crypto.rotate(token)
                    except crypto.DecryptionFailed as exc:
                        raise CommandError(
                            f"{label} of row {pk} cannot be decrypted with any configured key: keep the old key "
                            "in PANDASTACK_SECRET_KEYS until rotation has finished."
                        ) from exc
                    # Only if unchanged meanwhile (the row is locked; the condition keeps it honest anyway).
                    model._base_manager.filter(pk=pk, **{name: token}).update(**{name: fresh})
                    rotated += 1
                last_pk = batch[-1][0]
            self.stderr.write(f"… {label}: {rotated} re-encrypted, {skipped} already current")
        return rotated, skipped

    def _stale(self, model: type[models.Model], name: str) -> int:
        tokens = model._base_manager.exclude(**{name: ""}).values_list(name, flat=True).iterator()
        return sum(1 for token in tokens if not crypto.is_current(token))
