"""Catch-up (delta) passes: what changed since the last pass, at the source and at the
destination. Pure Python, no Django.

Source side (at scan): `classify` compares a planned row with the last pass's row for the
same source path (rclone's order: size, then a hash both sides know, then mtime within the
coarser precision) and says new, changed or unchanged. An unchanged file is not copied.

Destination side (after the scan): `destination_check` walks a flat listing of the
destination and compares each object with what we wrote (the row's size and hashes, kept
from the last pass; for a row changed at the source, the last pass's row at the same
destination key). An unchanged row whose object is gone is copied again ("missing"); an
object that differs from what we wrote is a conflict (changed at the destination, or on
both sides), resolved by the job's policy; an object with no row in this pass is handed on
as `Gone`, except the destination's own version of a keep-both conflict, which is kept
(`CONFLICT_KEPT`). The database is behind `DeltaSink` callbacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from migrator.storage import Capabilities, Entry

from .copy import keep_both_name
from .deletes import Gone

NEW, CHANGED, UNCHANGED = "new", "changed", "unchanged"
KEPT = "kept"  # the destination won a conflict before and the source has not changed since
DESTINATION_CHANGED = "destination_changed"  # the reason of a row the destination won
CONFLICT, MISSING = "conflict", "missing"
PENDING = "pending"
# a destination object kept beside the source's version by keep_both: never gone
CONFLICT_KEPT = "conflict_kept"
SOURCE_WINS, DESTINATION_WINS, KEEP_BOTH = "source_wins", "destination_wins", "keep_both"
POLICIES = (SOURCE_WINS, DESTINATION_WINS, KEEP_BOTH)
# the migrator's own files at the destination (the trash, the permissions manifest)
OWN_PREFIXES = (".migrator-trash/", ".migrator/")
WRITTEN_STATES = frozenset({"copied", "unchanged"})
CHECK_CHUNK = 1000  # listed objects looked up at once (one query of the sink)


class Prior(NamedTuple):
    """The last pass's row for a source path: where it went and what we wrote there."""

    dest_path: str
    dest_key: str
    size: int
    mtime_ns: int
    md5: str
    crc32c: str
    state: str
    reason: str = ""


def classify(
    row, prior: Prior | None, src_caps: Capabilities, dst_caps: Capabilities, beside: bool = False
) -> str:
    """NEW, CHANGED, UNCHANGED or KEPT for a planned file row (`row`: anything with
    dest_path, size, mtime_ns, md5, crc32c) against the last pass's row for its source
    path. A row the last pass did not write (failed, excluded, pending) or wrote elsewhere
    is CHANGED; with `beside` (the job keeps both), a row it wrote under its keep-both
    name counts as where it went; a row whose destination won a conflict stays so (KEPT)
    while the source is unchanged."""
    if prior is None:
        return NEW
    kept = prior.state == "excluded" and prior.reason == DESTINATION_CHANGED
    if not kept and prior.state not in WRITTEN_STATES:
        return CHANGED
    same = _same_source(row, prior, src_caps, dst_caps, beside)
    return CHANGED if not same else KEPT if kept else UNCHANGED


def _same_source(
    row, prior: Prior, src_caps: Capabilities, dst_caps: Capabilities, beside: bool
) -> bool:
    if row.size != prior.size:
        return False
    if prior.dest_path != row.dest_path and not (
        beside and prior.dest_path == keep_both_name(row.dest_path, row.mtime_ns)
    ):
        return False
    if row.md5 and prior.md5:
        return row.md5 == prior.md5
    if row.crc32c and prior.crc32c:
        return row.crc32c == prior.crc32c
    precision = max(src_caps.mtime_precision_ns, dst_caps.mtime_precision_ns, 1)
    return abs(row.mtime_ns - prior.mtime_ns) < precision


_BESIDE = re.compile(r" \(source \d{4}-\d\d-\d\d \d{6}\)(?=(\.[^./]*)?$)")


def planned_of(beside: str, mtime_ns: int) -> str:
    """The planned path a keep-both name was made from ("" when `beside` is not the
    keep-both name of a file with this modified time): where the destination's own
    version stays."""
    folder, slash, name = beside.rpartition("/")
    found = list(_BESIDE.finditer(name))
    if not found:
        return ""
    m = found[-1]
    planned = folder + slash + name[: m.start()] + name[m.end() :]
    return planned if keep_both_name(planned, mtime_ns) == beside else ""


class Mine(NamedTuple):
    """This pass's row for a listed object: its id, state and what we wrote there."""

    pk: int
    state: str
    dest_path: str
    size: int
    mtime_ns: int
    md5: str
    crc32c: str


def object_differs(entry: Entry, mine: Mine, src_caps: Capabilities, dst_caps: Capabilities) -> str:
    """ "" when the listed object is what we wrote, else what differs, in words."""
    precision = max(src_caps.mtime_precision_ns, dst_caps.mtime_precision_ns, 1)
    return _differs(entry, mine, precision)


def _differs(entry: Entry, mine: Mine, precision: int) -> str:
    if entry.size != mine.size:
        return f"size {mine.size} → {entry.size}"
    if entry.hashes:
        for algo, ours in (("md5", mine.md5), ("crc32c", mine.crc32c)):
            theirs = entry.hash(algo)
            if ours and theirs:
                return "" if ours == theirs else f"{algo} {ours} → {theirs}"
    if abs(entry.mtime_ns - mine.mtime_ns) < precision:
        return ""
    return f"modified time {mine.mtime_ns} → {entry.mtime_ns} ns"


@dataclass(frozen=True, slots=True)
class Decision:
    """What becomes of one row: `state` pending (copy again) or excluded, its `change`,
    and for keep-both the new destination path and key; `what` says why, in words."""

    pk: int
    state: str
    change: str
    what: str = ""
    dest_path: str = ""
    dest_key: str = ""


class DeltaSink(Protocol):
    def rows_by_key(self, keys: Sequence[str]) -> dict[str, Mine]:
        """This pass's rows (files) whose destination key is one of `keys`."""
        ...

    def prior_sources(self, keys: Sequence[str]) -> dict[str, str]:
        """{destination key: source path} of the last pass's written rows among `keys`."""
        ...

    def unchanged_count(self) -> int:
        """How many of this pass's files are unchanged now (the pass's counter)."""
        ...

    def unchanged_rows(self) -> Iterator[tuple[int, int]]:
        """(id, size) of this pass's unchanged files, in id order."""
        ...

    def decide(self, decisions: Sequence[Decision]) -> None:
        """Apply the decisions (rows, counters) in one transaction; the batches of the
        rows to copy are made when the check is done."""
        ...

    def prior_written(self, keys: Sequence[str]) -> dict[str, Mine]:
        """What the last pass wrote at `keys` (its copied or unchanged files); a file
        whose destination won a conflict comes with state "excluded" (not ours there)."""
        ...

    def kept_versions(self) -> dict[str, str]:
        """{destination key: the source's keep-both path} of the destination's own
        versions that keep_both kept (this pass's and the last pass's)."""
        ...

    def gone(self, items: Sequence[Gone], kept: Mapping[str, str]) -> None:
        """Destination objects with no row in this pass; `kept`: {dest path: keep-both
        path} of those that are the destination's own version of a conflict (kept)."""
        ...

    def lease_renew(self) -> bool:
        """Keep the scan's lease; False: stop."""
        ...


@dataclass
class RowBitmap:
    """One bit per row id in [first, last]: which rows the listing matched (1M rows:
    125 KB)."""

    first: int
    last: int
    bits: bytearray = field(init=False)

    def __post_init__(self) -> None:
        self.bits = bytearray(max(0, self.last - self.first) // 8 + 1)

    def add(self, pk: int) -> None:
        i = pk - self.first
        if 0 <= i <= self.last - self.first:
            self.bits[i >> 3] |= 1 << (i & 7)

    def __contains__(self, pk: int) -> bool:
        i = pk - self.first
        return 0 <= i <= self.last - self.first and bool(self.bits[i >> 3] & (1 << (i & 7)))


@dataclass
class CheckResult:
    listed: int = 0
    matched: int = 0
    conflicts: int = 0
    missing: int = 0
    gone: int = 0
    stopped: bool = False


def _chunked(items: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def destination_check(
    listing: Iterable[Entry],
    sink: DeltaSink,
    *,
    ids: tuple[int, int],
    policy: str,
    key: Callable[[str], str],
    src_caps: Capabilities,
    dst_caps: Capabilities,
    chunk: int = CHECK_CHUNK,
) -> CheckResult:
    """Compare a flat listing of the destination (files, paths relative to the job's
    destination root) with this pass's rows, whose ids lie in `ids` (first, last).
    `key` turns a listed path into the rows' destination key (case folding where the
    destination ignores case). Hands decisions and gone objects to `sink` chunk by chunk."""
    if policy not in POLICIES:
        raise ValueError(f"unknown conflicts policy {policy!r}")
    result = CheckResult()
    seen = RowBitmap(*ids)
    precision = max(src_caps.mtime_precision_ns, dst_caps.mtime_precision_ns, 1)
    still_unchanged = 0  # matched, unchanged and what we wrote
    kept = sink.kept_versions()
    claimed: set[str] = set()  # keys keep-both decisions write to: never gone
    for entries in _chunked(listing, chunk):
        if not sink.lease_renew():
            result.stopped = True
            return result
        entries = [e for e in entries if e.kind == "file" and not e.path.startswith(OWN_PREFIXES)]
        result.listed += len(entries)
        keys = [key(e.path) for e in entries]
        mine = sink.rows_by_key(keys)
        decisions: list[Decision] = []
        strays: list[tuple[str, Entry]] = []
        changed: list[tuple[str, Entry, Mine]] = []  # pending: judged by what we wrote
        for k, entry in zip(keys, entries, strict=True):
            row = mine.get(k)
            if row is None:
                strays.append((k, entry))
                continue
            seen.add(row.pk)
            result.matched += 1
            if row.state == PENDING:
                changed.append((k, entry, row))
                continue
            if row.state != UNCHANGED:  # copied in this pass, or not ours to judge now
                continue
            what = _differs(entry, row, precision)
            if what:
                decisions.append(_resolve(row, what, policy, key))
            else:
                still_unchanged += 1
        if changed:
            written = sink.prior_written([k for k, _, _ in changed])
            for k, entry, row in changed:
                what = _changed_there(entry, written.get(k), k in kept, precision)
                if what:
                    decisions.append(_resolve(row, what, policy, key))
        claimed.update(d.dest_key for d in decisions if d.dest_key)
        strays = [(k, e) for k, e in strays if k not in claimed]
        if strays:
            sources = sink.prior_sources([k for k, _ in strays])
            sink.gone(
                [Gone(e.path, "file", e.size, sources.get(k, ""), k in sources) for k, e in strays],
                {e.path: kept[k] for k, e in strays if k in kept and k not in sources},
            )
            result.gone += len(strays)
        if decisions:
            sink.decide(decisions)
            result.conflicts += len(decisions)
    if sink.unchanged_count() == still_unchanged:
        return result  # every unchanged file was listed: none is missing, no walk
    missing: list[Decision] = []
    for pk, _size in sink.unchanged_rows():
        if pk in seen:
            continue
        missing.append(Decision(pk, "pending", MISSING, "missing at the destination"))
        if len(missing) >= chunk:
            if not sink.lease_renew():
                result.stopped = True
                return result
            sink.decide(missing)
            result.missing += len(missing)
            missing = []
    if missing:
        sink.decide(missing)
        result.missing += len(missing)
    return result


SEPARATOR = " — "  # between what differed and what was done, in a conflict's message
KEPT_THERE = "the destination's own version, kept in an earlier conflict"


def _changed_there(entry: Entry, written: Mine | None, kept: bool, precision: int) -> str:
    """For a row to copy (new or changed at the source) whose object is listed: what
    differs from what the last pass wrote there ("" when nothing does, or we never wrote
    there and the object is not a version a conflict kept)."""
    if written is None:
        return KEPT_THERE if kept else ""
    if written.state not in WRITTEN_STATES:  # the destination won there before
        return KEPT_THERE
    return _differs(entry, written, precision)


def _resolve(row: Mine, differs: str, policy: str, key: Callable[[str], str]) -> Decision:
    if policy == DESTINATION_WINS:
        done = "the destination's version was kept, the source file not copied (destination wins)"
        return Decision(row.pk, "excluded", CONFLICT, differs + SEPARATOR + done)
    if policy == KEEP_BOTH:
        beside = keep_both_name(row.dest_path, row.mtime_ns)
        done = f"the source was written beside it as {beside} (keep both)"
        return Decision(
            row.pk, "pending", CONFLICT, differs + SEPARATOR + done, beside, key(beside)
        )
    done = "the source was copied over it (source wins)"
    return Decision(row.pk, "pending", CONFLICT, differs + SEPARATOR + done)
