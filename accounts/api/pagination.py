"""Every API list is paged by an opaque cursor (DRF CursorPagination): a page costs the
same on a million-row manifest as on ten rows, and never counts or offsets the table."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class Cursor(CursorPagination):
    """Ordered by the view's `ordering` (a tuple of fields, unique last), or by id."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = ("id",)

    def get_ordering(self, request, queryset, view):
        return tuple(getattr(view, "ordering", None) or self.ordering)
