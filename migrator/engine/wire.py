"""The engine's values as JSON lists, between the on-premises agent and the server: the
same field order on both sides (positional lists: a chunk of 20,000 rows stays small)."""

from __future__ import annotations

from collections.abc import Sequence

from .copy import CopyTask, Outcome, State
from .scan import Row

# a manifest row without its ids (the server sets job and pass, then the row id)
ROW_FIELDS = ("kind", "source_path", "dest_path", "size", "mtime_ns", "state", "reason",
              "message", "md5", "crc32c", "renamed_from", "rules", "dest_key",
              "name_key")  # fmt: skip
TASK_FIELDS = ("id", "kind", "source_path", "dest_path", "size", "mtime_ns", "md5", "crc32c")
OUTCOME_FIELDS = ("item_id", "state", "reason", "message", "bytes", "md5", "crc32c",
                  "dest_path", "attempts")  # fmt: skip


def row_to_wire(row: Row) -> list:
    return [getattr(row, name) for name in ROW_FIELDS]


def row_from_wire(job_id: int, pass_id: int, values: Sequence) -> Row:
    """ValueError for a list that is not a row."""
    if len(values) != len(ROW_FIELDS):
        raise ValueError("a row does not have the manifest's fields")
    kind, src, dst, size, mtime, state, reason, message, md5, crc, renamed, rules, key, name = (
        values
    )
    return Row(job_id, pass_id, str(kind), str(src), str(dst), int(size), int(mtime), str(state),
               str(reason), str(message), str(md5), str(crc), str(renamed), str(rules),
               str(key), str(name))  # fmt: skip


def task_from_wire(values: Sequence) -> CopyTask:
    pk, kind, src, dst, size, mtime, md5, crc = values
    hashes = tuple((a, h) for a, h in (("md5", md5), ("crc32c", crc)) if h)
    return CopyTask(int(pk), src, dst, kind, int(size), int(mtime), hashes)


def outcome_to_wire(o: Outcome) -> list:
    return [o.item_id, o.state.value, o.reason, o.message, o.bytes, o.md5, o.crc32c,
            o.dest_path or "", o.attempts]  # fmt: skip


def outcome_from_wire(values: Sequence) -> Outcome:
    """ValueError for a list that is not an outcome."""
    if len(values) != len(OUTCOME_FIELDS):
        raise ValueError("an outcome does not have its fields")
    pk, state, reason, message, nbytes, md5, crc, dest, attempts = values
    return Outcome(int(pk), State(state), str(reason), str(message)[:2000], int(nbytes),
                   str(md5), str(crc), str(dest) or None, int(attempts))  # fmt: skip
