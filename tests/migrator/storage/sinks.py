"""A memory sink that counts each file's attempts, and what the connector tests ask of a
whole pass through it: shared by the object stores' bad-input tests (S3, Azure)."""

from __future__ import annotations

from migrator.engine.memory import MemorySink


class AttemptsSink(MemorySink):
    """A memory sink that also keeps how many attempts each file took."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: dict[str, int] = {}

    def batch_record(self, tasks, outcomes, acl) -> bool:
        for outcome in outcomes:
            row = self.rows[outcome.item_id]
            if row.kind == "file":
                self.attempts[row.source_path] = outcome.attempts
        return super().batch_record(tasks, outcomes, acl)


def by_path(sink: MemorySink) -> dict[str, tuple[str, str]]:
    return {r.source_path: (r.state, r.reason) for r in sink.rows.values() if r.kind == "file"}


def assert_accounted(sink: MemorySink) -> None:
    counts = sink.counts()
    parts = ("copied", "unchanged", "excluded", "failed", "pending")
    assert counts["seen"] == sum(counts[p] for p in parts), counts
