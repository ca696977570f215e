"""The one CSV helper: every CSV the project produces (the admins of accounts and jobs,
the reports, `manage.py migrator_report`) goes through here.

Streamed (StreamingHttpResponse over a pseudo-buffer, rows from an iterator), UTF-8 with
a header row, a filename naming what it holds, and cells that a spreadsheet would run as a
formula neutralised with a leading apostrophe.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

from django.http import StreamingHttpResponse

DANGEROUS_START = ("=", "+", "-", "@", "\t", "\r")
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def neutralise(value: Any) -> str:
    """A cell as text; one that begins like a formula gets a leading apostrophe."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if text.startswith(DANGEROUS_START):
        return "'" + text
    return text


class _Echo:
    """A file-like object whose write() returns what it is given (Django docs' pattern)."""

    def write(self, value: str) -> str:
        return value


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """Yield the CSV text line by line: header first, every cell neutralised."""
    writer = csv.writer(_Echo())
    yield writer.writerow([neutralise(h) for h in header])
    for row in rows:
        yield writer.writerow([neutralise(v) for v in row])


def csv_filename(*parts: Any) -> str:
    """'job-12-files.csv' from ('job', 12, 'files'): safe in a Content-Disposition."""
    name = "-".join(_FILENAME_UNSAFE.sub("_", str(p)).strip("_") for p in parts if p != "")
    return f"{name or 'export'}.csv"


def _chunks(lines: Iterable[str], size: int = 1 << 16) -> Iterator[bytes]:
    """Lines joined into pieces of about `size` characters: a WSGI server writes each piece
    it is given with a system call of its own, one per row of a million-row CSV else."""
    buffer: list[str] = []
    held = 0
    for line in lines:
        buffer.append(line)
        held += len(line)
        if held >= size:
            yield "".join(buffer).encode("utf-8")
            buffer, held = [], 0
    if buffer:
        yield "".join(buffer).encode("utf-8")


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]):
    """A streamed CSV download; `rows` should come from `.iterator()` or a generator."""
    response = StreamingHttpResponse(
        _chunks(csv_lines(header, rows)),
        content_type="text/csv; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def write_csv(out: TextIO, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """The same CSV to a text stream (management commands); returns the rows written."""
    lines = 0
    for line in csv_lines(header, rows):
        out.write(line)
        lines += 1
    return lines - 1
