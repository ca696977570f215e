"""The scan's hot path: writing manifest rows at the database's own speed.

Measured: bulk_create spends ~25 µs of Python per row preparing values field by field;
SQLite's executemany and PostgreSQL's COPY take rows as plain tuples. Ids are reserved
first (batches need them), inside the scan's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection

from .models import FileItem

TABLE = FileItem._meta.db_table
COLUMNS = ("id", "job_id", "job_pass_id", "kind", "source_path", "dest_path", "size",
           "mtime_ns", "state", "reason", "message", "attempts", "md5", "crc32c",
           "renamed_from", "rules", "dest_key")  # fmt: skip


@dataclass(slots=True)
class Row:
    """One planned manifest row, before it has an id."""

    job_id: int
    job_pass_id: int
    kind: str
    source_path: str
    dest_path: str = ""
    size: int = 0
    mtime_ns: int = 0
    state: str = "pending"
    reason: str = ""
    message: str = ""
    md5: str = ""
    crc32c: str = ""
    renamed_from: str = ""
    rules: str = ""
    dest_key: str = ""
    pk: int = 0

    def values(self) -> tuple:
        return (self.pk, self.job_id, self.job_pass_id, self.kind, self.source_path,
                self.dest_path, self.size, self.mtime_ns, self.state, self.reason,
                self.message, 0, self.md5, self.crc32c, self.renamed_from, self.rules,
                self.dest_key)  # fmt: skip


def _reserve_ids(count: int) -> list[int]:
    """Ids for `count` new rows. Call inside a transaction: on SQLite the IMMEDIATE
    transaction makes this writer the only one; on PostgreSQL the sequence hands them out."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"SELECT nextval(pg_get_serial_sequence('{TABLE}', 'id')) "
                "FROM generate_series(1, %s)",
                [count],
            )
            return [r[0] for r in cursor.fetchall()]
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {TABLE}")
        first = cursor.fetchone()[0] + 1
        return list(range(first, first + count))


def insert_rows(rows: Sequence[Row]) -> None:
    """Give the rows ids and write them, in the caller's transaction."""
    if not rows:
        return
    for row, pk in zip(rows, _reserve_ids(len(rows)), strict=True):
        row.pk = pk
    columns = ", ".join(COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # psycopg's own cursor, for COPY
            with raw.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row.values())
        else:
            marks = ", ".join(["%s"] * len(COLUMNS))
            cursor.executemany(
                f"INSERT INTO {TABLE} ({columns}) VALUES ({marks})", [r.values() for r in rows]
            )
