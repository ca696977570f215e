"""The scan's hot path: writing manifest rows at the database's own speed.

Measured: bulk_create spends ~25 µs of Python per row preparing values field by field;
SQLite's multi-row INSERT and PostgreSQL's COPY take rows as plain tuples. Ids are
reserved first (batches need them), inside the scan's transaction.
"""

from __future__ import annotations

import json
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


# A catch-up chunk's pending rows (c) against the last pass's rows by path (p): the rows
# engine.delta.classify would call UNCHANGED (a folder: the last pass made it), as a list
# of positions whose own destination key and hashes are the last pass's, and a JSON list
# of [position, dest_key, md5, crc32c] for the others (they keep what we wrote)
_UNCHANGED_SQL = """
WITH c(i, kind, path, dpath, dkey, size, mtime, md5, crc) AS (VALUES {values})
SELECT group_concat(c.i) FILTER (WHERE c.kind <> 'file' OR (p.dest_key = c.dkey
           AND p.md5 = c.md5 AND p.crc32c = c.crc)),
       json_group_array(json_array(c.i, p.dest_key, p.md5, p.crc32c)) FILTER (
           WHERE c.kind = 'file' AND NOT (p.dest_key = c.dkey AND p.md5 = c.md5
           AND p.crc32c = c.crc))
FROM c CROSS JOIN {table} AS p ON p.job_pass_id = ? AND p.source_path = c.path
WHERE p.kind = c.kind AND +p.state IN ('copied', 'unchanged')
  AND (c.kind <> 'file' OR (p.size = c.size AND p.dest_path = c.dpath AND CASE
       WHEN c.md5 <> '' AND p.md5 <> '' THEN c.md5 = p.md5
       WHEN c.crc <> '' AND p.crc32c <> '' THEN c.crc = p.crc32c
       ELSE abs(c.mtime - p.mtime_ns) < ? END))
"""


UNCHANGED_PART = 512  # rows per query (4,610 parameters, under SQLite's limit)


def _parts(count: int) -> list[tuple[int, int]]:
    """(start, end) of the parts of `count` rows: UNCHANGED_PART each, then the rest in
    powers of two, so that the connection's statement cache holds a few texts only
    (a text per length grew the memory by ~100 MB)."""
    parts: list[tuple[int, int]] = []
    start, size = 0, UNCHANGED_PART
    while start < count:
        while size > count - start:
            size //= 2
        parts.append((start, start + size))
        start += size
    return parts


# PostgreSQL: the same query over the chunk's columns as arrays, one query per chunk
_UNCHANGED_PG = """
SELECT string_agg(c.i::text, ',') FILTER (WHERE c.kind <> 'file' OR (p.dest_key = c.dkey
           AND p.md5 = c.md5 AND p.crc32c = c.crc)),
       json_agg(json_build_array(c.i, p.dest_key, p.md5, p.crc32c)) FILTER (
           WHERE c.kind = 'file' AND NOT (p.dest_key = c.dkey AND p.md5 = c.md5
           AND p.crc32c = c.crc))::text
FROM unnest(%s::int[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[],
            %s::bigint[], %s::text[], %s::text[])
     AS c(i, kind, path, dpath, dkey, size, mtime, md5, crc)
JOIN {table} AS p ON p.job_pass_id = %s AND p.source_path = c.path
WHERE p.kind = c.kind AND p.state IN ('copied', 'unchanged')
  AND (c.kind <> 'file' OR (p.size = c.size AND p.dest_path = c.dpath AND CASE
       WHEN c.md5 <> '' AND p.md5 <> '' THEN c.md5 = p.md5
       WHEN c.crc <> '' AND p.crc32c <> '' THEN c.crc = p.crc32c
       ELSE abs(c.mtime - p.mtime_ns) < %s::bigint END))
"""


def _mark(rows: list[Row], done: bytearray, same: str | None, other: str | None) -> None:
    for i in map(int, same.split(",")) if same else ():
        rows[i].state = "unchanged"
        done[i] = 1
    for i, dest_key, md5, crc32c in json.loads(other or "[]"):
        r = rows[i]
        r.state, r.dest_key, r.md5, r.crc32c = "unchanged", dest_key, md5, crc32c
        done[i] = 1


def unchanged_marked(rows: list[Row], prior_pass_id: int, precision: int) -> list[Row]:
    """A catch-up pass: mark unchanged (state, and the last pass's destination
    key and hashes: what we wrote) the pending `rows` the database finds so against the
    last pass's rows, before they are inserted; returns the others, for the Python
    classification (new, changed, kept, written beside). Only what engine.delta.classify
    calls UNCHANGED is marked: same kind, written, same size and destination path, then a
    hash both sides know, else the mtime within `precision`. One query per part of the
    chunk (item_pass_path per row), answered as two texts: the join runs in C without
    the GIL (fetching rows one by one takes it back per row, measured slower)."""
    done = bytearray(len(rows))
    if connection.vendor == "postgresql":
        columns = [list(range(len(rows)))] + [
            [getattr(r, name) for r in rows]
            for name in ("kind", "source_path", "dest_path", "dest_key", "size", "mtime_ns",
                         "md5", "crc32c")
        ]  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute(_UNCHANGED_PG.format(table=TABLE), [*columns, prior_pass_id, precision])
            _mark(rows, done, *cursor.fetchone())
        return [r for r, d in zip(rows, done, strict=True) if not d]
    raw = connection.connection
    cursor = raw.cursor()
    try:
        for start, end in _parts(len(rows)):
            part = rows[start:end]
            params: list = []
            for i, r in enumerate(part, start):
                params += (i, r.kind, r.source_path, r.dest_path, r.dest_key, r.size,
                           r.mtime_ns, r.md5, r.crc32c)  # fmt: skip
            values = ",".join(["(?,?,?,?,?,?,?,?,?)"] * len(part))
            cursor.execute(
                _UNCHANGED_SQL.format(table=TABLE, values=values),
                [*params, prior_pass_id, precision],
            )
            _mark(rows, done, *cursor.fetchone())
    finally:
        cursor.close()
    return [r for r, d in zip(rows, done, strict=True) if not d]
