import base64
import binascii
from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import CursorPagination
from rest_framework.utils.urls import replace_query_param

from apps.core.errors import NotFound, ValidationFailed


class IdCursorPagination(CursorPagination):
    """Cursor pagination over a unique, stable key (the id by default; a view may set
    `cursor_ordering`, e.g. "-id" for newest first). `?limit=` chooses the page size (max 200)."""

    ordering = "id"
    page_size_query_param = "limit"
    max_page_size = 200

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        ordering = getattr(view, "cursor_ordering", self.ordering)
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)


def paginate_chain(
    request: Any, parts: list[tuple[str, QuerySet]], *, default_limit: int = 50
) -> tuple[list[Any], str | None]:
    """Cursor pagination over several querysets read one after another (e.g. a project's user
    grants, then its group grants), each ordered by id. Returns (rows, next_url). The cursor is
    opaque ("<part>:<last id>", base64) and only moves forward."""
    try:
        limit = int(request.query_params.get("limit", default_limit))
    except ValueError:
        raise ValidationFailed("Invalid limit.", fields={"limit": ["A whole number."]}) from None
    limit = max(1, min(limit, IdCursorPagination.max_page_size))
    names = [name for name, _ in parts]
    start, after = names[0], 0
    if cursor := request.query_params.get("cursor"):
        try:
            start, _, last = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
            after = int(last)
        except (ValueError, UnicodeDecodeError, binascii.Error):
            start = ""
        if start not in names:
            raise NotFound("Invalid cursor.")  # as DRF's cursor pagination answers
    rows: list[tuple[str, Any]] = []
    for name, queryset in parts[names.index(start) :]:
        queryset = queryset.order_by("id")
        if name == start:
            queryset = queryset.filter(id__gt=after)
        rows.extend((name, row) for row in queryset[: limit + 1 - len(rows)])
        if len(rows) > limit:
            break
    next_url = None
    if len(rows) > limit:
        rows = rows[:limit]
        name, last_row = rows[-1]
        token = base64.urlsafe_b64encode(f"{name}:{last_row.id}".encode()).decode()
        next_url = replace_query_param(request.build_absolute_uri(), "cursor", token)
    return [row for _, row in rows], next_url
