"""The scan's hot path: writing manifest rows at the database's own speed.

Measured: bulk_create spends ~25 µs of Python per row preparing values field by field;
SQLite's multi-row INSERT and PostgreSQL's COPY take rows as plain tuples. Ids are
reserved first (batches need them), inside the scan's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain

from django.db import connection

from migrator.engine.scan import Row

from .models import FileItem

TABLE = FileItem._meta.db_table
COLUMNS = ("id", "job_id", "job_pass_id", "kind", "source_path", "dest_path", "size",
           "mtime_ns", "state", "reason", "message", "attempts", "md5", "crc32c",
           "renamed_from", "rules", "dest_key", "name_key", "change")  # fmt: skip


_sequence: str | None = None


def _reserve_ids(count: int) -> list[int]:
    """Ids for `count` new rows. Call inside a transaction: on SQLite the IMMEDIATE
    transaction makes this writer the only one; on PostgreSQL the sequence hands them out."""
    global _sequence
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            if _sequence is None:  # once: inside the query it was evaluated for every id
                cursor.execute(f"SELECT pg_get_serial_sequence('{TABLE}', 'id')")
                _sequence = cursor.fetchone()[0]
            # one text value, not a row per id: parsing thousands of rows cost more than
            # the sequence; ascending, as batches are id ranges
            cursor.execute(
                "SELECT string_agg(v::text, ',' ORDER BY v) FROM "
                "(SELECT nextval(%s::regclass) AS v FROM generate_series(1, %s)) AS ids",
                [_sequence, count],
            )
            return [int(v) for v in cursor.fetchone()[0].split(",")]
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {TABLE}")
        first = cursor.fetchone()[0] + 1
        return list(range(first, first + count))


# rows per INSERT on SQLite: one statement steps through many rows with the GIL released
# (executemany takes the GIL back for every row, and waits for it while the scan's
# planning thread holds it); measured 2x less CPU per row, more with the thread busy
SQLITE_ROWS_PER_INSERT = 2000


def _sqlite_insert(rows: Sequence[Row]) -> None:
    raw = connection.connection  # the sqlite3 connection: "?" marks, no query rewriting
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    per = max(1, min(SQLITE_ROWS_PER_INSERT, limit // len(COLUMNS)))
    head = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
    one = "(" + ", ".join(["?"] * len(COLUMNS)) + ")"
    cursor = raw.cursor()
    try:
        for start in range(0, len(rows), per):
            part = rows[start : start + per]
            sql = head + ", ".join([one] * len(part))
            cursor.execute(sql, list(chain.from_iterable(r.values() for r in part)))
    finally:
        cursor.close()


def insert_rows(rows: Sequence[Row]) -> None:
    """Give the rows ids and write them, in the caller's transaction."""
    if not rows:
        return
    for row, pk in zip(rows, _reserve_ids(len(rows)), strict=True):
        row.pk = pk
    if connection.vendor != "postgresql":
        _sqlite_insert(rows)
        return
    columns = ", ".join(COLUMNS)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
            copy.write("".join(map(_copy_line, rows)))


def _copy_text(value: str) -> str:
    """A text value in COPY's text format: backslash, tab, newline and CR escaped."""
    if value.isprintable() and "\\" not in value:  # no tab, newline or CR either
        return value
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))  # fmt: skip


def _copy_line(r: Row) -> str:
    # one line of text per row, joined for the whole chunk: psycopg's write_row per row
    # measured ~4.6 µs a row, this ~2 (the scan is bound by this process's CPU)
    t = _copy_text
    return (f"{r.pk}\t{r.job_id}\t{r.job_pass_id}\t{r.kind}\t{t(r.source_path)}\t"
            f"{t(r.dest_path)}\t{r.size}\t{r.mtime_ns}\t{r.state}\t{t(r.reason)}\t"
            f"{t(r.message)}\t0\t{t(r.md5)}\t{t(r.crc32c)}\t{t(r.renamed_from)}\t"
            f"{t(r.rules)}\t{t(r.dest_key)}\t{t(r.name_key)}\t{r.change}\n")  # fmt: skip
