"""A whole pass in plain Python, into memory: the engine with no database and no server.

`MemorySink` keeps what the engine hands over (manifest rows, outcomes, ACL records,
events) in lists and dicts; `run_pass` scans a source, cuts the planned rows into batches
and runs each batch, as a worker cluster or the agent does. For tests and scripts; a pass
of millions of files wants a sink that writes somewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from migrator.sanitize import Sanitizer
from migrator.storage import Connector, StorageError, connector_for, kind_of

from .batch import run_batch
from .copy import CopyOptions, CopyTask, Outcome
from .filters import Filters
from .scan import Mapping, Planner, Row, scan
from .sink import NewAclRecord

FILE_STATES = ("copied", "unchanged", "excluded", "failed", "pending")


@dataclass
class MemorySink:
    """Both sinks (scan and batch) over plain Python collections."""

    rows: dict[int, Row] = field(default_factory=dict)  # by id, in scan order
    cursor: str = ""
    events: list[tuple[str, str]] = field(default_factory=list)  # (level, message)
    records: dict[str, tuple[int, NewAclRecord]] = field(default_factory=dict)
    batches_recorded: int = 0
    stop: bool = False

    # scan

    def scan_chunk(self, rows: list[Row], cursor: str) -> bool:
        for row in rows:
            row.pk = len(self.rows) + 1
            self.rows[row.pk] = row
        self.cursor = cursor
        return not self.stop

    def scan_interrupted(self, error: StorageError) -> None:
        self.events.append(("warning", f"Scan interrupted: {error}"))

    def lease_renew(self) -> bool:
        return not self.stop

    # batch

    def should_stop(self) -> bool:
        return self.stop

    def event(self, message: str, level: str = "info", once: bool = False) -> None:
        if once and (level, message) in self.events:
            return
        self.events.append((level, message))

    def halt(self, error: StorageError) -> None:
        self.stop = True
        self.events.append(("error", f"Halted: {error}"))

    def acl_records(self, keys: Iterable[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        return {k: (self.records[k][0], self.records[k][1].stored) for k in keys
                if k in self.records}  # fmt: skip

    def acl_records_add(self, records: Sequence[NewAclRecord]) -> None:
        for record in records:
            self.records.setdefault(record.key, (len(self.records) + 1, record))

    def batch_record(self, tasks: Sequence[CopyTask], outcomes: list[Outcome], acl: Any) -> bool:
        for outcome in outcomes:
            row = self.rows[outcome.item_id]
            row.state, row.reason, row.message = (
                outcome.state.value,
                outcome.reason,
                outcome.message,
            )
            if outcome.dest_path:
                row.dest_path = outcome.dest_path
            if outcome.md5 or outcome.crc32c:
                row.md5, row.crc32c = outcome.md5, outcome.crc32c
        self.batches_recorded += 1
        return True

    # what a person asks

    def counts(self) -> dict[str, int]:
        """Files by state, and `seen`: seen = copied + unchanged + excluded + failed + pending."""
        by_state = Counter(r.state for r in self.rows.values() if r.kind == "file")
        out = {state: by_state.get(state, 0) for state in FILE_STATES}
        out["seen"] = sum(by_state.values())
        return out

    def pending_tasks(self) -> list[CopyTask]:
        return [
            CopyTask(r.pk, r.source_path, r.dest_path, r.kind, r.size, r.mtime_ns,
                     tuple((a, h) for a, h in (("md5", r.md5), ("crc32c", r.crc32c)) if h))
            for r in self.rows.values()
            if r.state == "pending"
        ]  # fmt: skip


def run_pass(
    source_url: str,
    destination_url: str,
    *,
    source_secret: str | None = None,
    destination_secret: str | None = None,
    mappings: Sequence[Mapping] = (Mapping(0, ""),),
    profile: str | None = None,
    filters: Filters | None = None,
    options: CopyOptions | None = None,
    batch_files: int = 500,
    sink: MemorySink | None = None,
) -> MemorySink:
    """Scan the source and copy everything planned to the destination, in batches of
    `batch_files`; returns the sink with every row's final state."""

    def source() -> Connector:
        return connector_for(source_url, source_secret)

    def destination() -> Connector:
        return connector_for(destination_url, destination_secret)

    sink = sink or MemorySink()
    planner = Planner(
        job_id=0,
        pass_id=0,
        sanitizer=Sanitizer.for_destination(kind_of(destination_url), profile),
        filters=filters or Filters(),
    )
    with source() as conn:
        scan(conn, mappings, planner, sink)
    options = options or CopyOptions()
    options.should_stop = sink.should_stop
    tasks = sink.pending_tasks()
    for start in range(0, len(tasks), batch_files):
        run_batch(
            tasks[start : start + batch_files],
            source=source,
            destination=destination,
            options=options,
            sink=sink,
        )
    return sink
