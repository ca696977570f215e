"""Reads for reports: keyset pages and streamed rows over the manifest and the events.
Never COUNT(*) or OFFSET over millions of rows: pages go by id."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from jobs.models import Event, FileItem, Pass

PAGE_SIZE = 100
MANIFEST_COLUMNS = ["id", "kind", "source_path", "dest_path", "size", "mtime_ns", "state",
                    "reason", "message", "attempts", "md5", "crc32c"]  # fmt: skip
EVENT_COLUMNS = ["id", "created_at", "level", "message", "path"]


@dataclass(frozen=True)
class ManifestFilter:
    state: str = ""
    reason: str = ""
    prefix: str = ""
    kind: str = ""

    @classmethod
    def from_query(cls, query) -> ManifestFilter:
        return cls(
            state=query.get("state", ""),
            reason=query.get("reason", ""),
            prefix=query.get("prefix", ""),
            kind=query.get("kind", ""),
        )


def manifest_queryset(*, job_pass: Pass, filters: ManifestFilter) -> QuerySet[FileItem]:
    qs = FileItem.objects.filter(job_pass=job_pass)
    if filters.state:
        qs = qs.filter(state=filters.state)
    if filters.reason:
        qs = qs.filter(reason=filters.reason)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.prefix:
        qs = qs.filter(job_id=job_pass.job_id)
        qs = starting_with(qs, "source_path", filters.prefix)
    return qs


def starting_with(qs: QuerySet[FileItem], field: str, prefix: str) -> QuerySet[FileItem]:
    """A prefix match an index answers: LIKE 'p%' on PostgreSQL's text_pattern_ops
    indexes, a range on SQLite (whose LIKE ignores case and skips the index)."""
    if connection.vendor == "postgresql":
        return qs.filter(**{f"{field}__startswith": prefix})
    return qs.filter(**{f"{field}__gte": prefix, f"{field}__lt": prefix + "\U0010ffff"})


def manifest_page(
    *, job_pass: Pass, filters: ManifestFilter, after: int = 0, limit: int = PAGE_SIZE
) -> tuple[list[FileItem], int | None]:
    """One page after id `after`, and the id to continue from (None on the last page)."""
    rows = list(
        manifest_queryset(job_pass=job_pass, filters=filters)
        .filter(id__gt=after)
        .order_by("id")[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].pk if more and rows else None)


def manifest_rows(*, job_pass: Pass, filters: ManifestFilter) -> Iterator[tuple]:
    """Every row, streamed in id order (for CSV)."""
    return (
        manifest_queryset(job_pass=job_pass, filters=filters)
        .order_by("id")
        .values_list(*MANIFEST_COLUMNS)
        .iterator(chunk_size=5000)
    )


def events_queryset(*, job_id: int, level: str = "", staff: bool = True) -> QuerySet[Event]:
    qs = Event.objects.filter(job_id=job_id)
    if level:
        qs = qs.filter(level=level)
    if not staff:
        qs = qs.filter(staff_only=False)
    return qs


def events_page(
    *, job_id: int, level: str = "", before: int | None = None, limit: int = PAGE_SIZE,
    staff: bool = True,
) -> tuple[list[Event], int | None]:  # fmt: skip
    qs = events_queryset(job_id=job_id, level=level, staff=staff)
    if before:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].pk if more and rows else None)


def event_rows(*, job_id: int, level: str = "", staff: bool = True) -> Iterator[tuple]:
    return (
        events_queryset(job_id=job_id, level=level, staff=staff)
        .order_by("id")
        .values_list(*EVENT_COLUMNS)
        .iterator(chunk_size=5000)
    )
