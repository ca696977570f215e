"""What the engine hands its results to, and asks whether it may go on.

The engine (scan, batch) never writes anywhere itself: planned manifest rows, a batch's
outcomes, permission records and events go to a sink. The database sink (`jobs/sink.py`)
writes the manifest and the pass counters, only while its lease holds; the on-premises
agent's sink posts them over HTTP; `memory.MemorySink` keeps them in lists for tests and
scripts. A sink answers False (or `should_stop()` True) when the work must stop: the
lease was lost, the job was paused or cancelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from migrator.storage import StorageError

from .copy import CopyTask, Outcome
from .scan import Row


@dataclass(frozen=True, slots=True)
class NewAclRecord:
    """A distinct security descriptor of a pass, translated once: `key` identifies it
    (the descriptor's bytes and the item kind), `stored` is AclPlan.stored()."""

    key: str
    source_sd: bytes
    stored: dict[str, Any]


class ScanSink(Protocol):
    def scan_chunk(self, rows: list[Row], cursor: str) -> bool:
        """Keep one chunk of planned rows; `cursor` resumes after its last entry.
        False: stop scanning (the lease was lost, the job stopped)."""
        ...

    def scan_interrupted(self, error: StorageError) -> None:
        """The source failed mid-scan; the scan will resume after the last cursor."""
        ...

    def lease_renew(self) -> bool:
        """Long work between chunks (an assessment's ACL reads): keep the lease."""
        ...


class BatchSink(Protocol):
    def should_stop(self) -> bool:
        """True once the batch must stop between files (paused, cancelled, lease lost)."""
        ...

    def event(self, message: str, level: str = "info", once: bool = False) -> None:
        """Something to tell staff and customers; `once`: at most once per pass."""
        ...

    def acl_records(self, keys: Iterable[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        """The pass's ACL records among `keys`: {key: (record id, stored fields)}."""
        ...

    def acl_records_add(self, records: Sequence[NewAclRecord]) -> None:
        """Store new records; one another worker stored meanwhile is as good."""
        ...

    def halt(self, error: StorageError) -> None:
        """Nothing more can be written (the destination is full): stop the job's work
        until a person makes room and resumes it. Nothing is failed for it."""
        ...

    def batch_record(self, tasks: Sequence[CopyTask], outcomes: list[Outcome], acl: Any) -> bool:
        """Record the batch's outcomes (and what permissions did, `acl`: a BatchAcl or
        None) exactly once. False when the lease was lost: another holder counts them."""
        ...
