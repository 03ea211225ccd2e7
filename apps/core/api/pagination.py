from typing import Any

from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    """Cursor pagination over a unique, stable key (the id by default; a view may set
    `cursor_ordering`, e.g. "-id" for newest first). `?limit=` chooses the page size (max 200)."""

    ordering = "id"
    page_size_query_param = "limit"
    max_page_size = 200

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        ordering = getattr(view, "cursor_ordering", self.ordering)
        return (ordering,) if isinstance(ordering, str) else tuple(ordering)
