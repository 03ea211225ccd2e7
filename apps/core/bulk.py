"""Writing many rows at once, for the passes that run over thousands of them (alert rules, cron jobs,
database usage)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models


def bulk_set(
    model: type[models.Model], rows: Mapping[Any, Mapping[str, Any]], fields: Sequence[str], **same: Any
) -> None:
    """Give each row (primary key -> its values of `fields`) its own values, and every one of them
    the values `same`, in one statement whatever their number.

    On PostgreSQL the values travel as one array per field joined to the table (`unnest`); Django's
    bulk_update would build a CASE with a branch per row and field, which takes seconds of Python
    for 10,000 rows. Elsewhere (SQLite: small installations) it is Django's bulk_update."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        objects = []
        for pk, values in rows.items():
            obj = model(pk=pk)
            for name in fields:
                setattr(obj, name, values[name])
            for name, value in same.items():
                setattr(obj, name, value)
            objects.append(obj)
        model.objects.bulk_update(objects, [*fields, *same], batch_size=500)
        return
    meta, quote = model._meta, connection.ops.quote_name
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    common = [meta.get_field(name) for name in same]
    assignments = [f"{quote(f.column)} = v.{quote(f.column)}" for f in columns]
    assignments += [f"{quote(f.column)} = %s" for f in common]
    arrays = [f"%s::{pk.rel_db_type(connection)}[]", *(f"%s::{f.db_type(connection)}[]" for f in columns)]
    names = ", ".join(quote(c) for c in [pk.column, *(f.column for f in columns)])
    # Identifiers from the model's own metadata, quoted; every value is a parameter.
    sql = (
        f"UPDATE {quote(meta.db_table)} AS r SET {', '.join(assignments)} "  # noqa: S608  # nosec B608
        f"FROM unnest({', '.join(arrays)}) AS v({names}) WHERE r.{quote(pk.column)} = v.{quote(pk.column)}"
    )
    params = [
        *(f.get_db_prep_save(value, connection) for f, value in zip(common, same.values(), strict=True)),
        list(rows),
        *([f.get_db_prep_save(values[f.name], connection) for values in rows.values()] for f in columns),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
