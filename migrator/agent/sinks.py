"""The engine's sinks over HTTP: what the scan and a batch produce is posted in bulk."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from migrator.engine.copy import CopyTask, Outcome
from migrator.engine.scan import Row
from migrator.engine.sink import NewAclRecord
from migrator.engine.wire import outcome_to_wire, row_to_wire
from migrator.storage import StorageError

from .client import AgentError, Client


class HttpScanSink:
    """A scan's chunks, each naming the cursor it continues from (a post retried after a
    lost answer is recognised and counted once)."""

    def __init__(self, client: Client, pass_id: int, lease: str, cursor: str) -> None:
        self.client, self.pass_id, self.lease, self.after = client, pass_id, lease, cursor

    def scan_chunk(self, rows: list[Row], cursor: str) -> bool:
        body = {
            "lease": self.lease,
            "after": self.after,
            "cursor": cursor,
            "rows": [row_to_wire(r) for r in rows],
        }
        try:
            answer = self.client.post_durable(f"scan/{self.pass_id}/chunk/", body)
        except AgentError:  # the scan is someone else's now (409), or gone (404)
            return False
        self.after = cursor
        return bool(answer.get("ok"))

    def scan_interrupted(self, error: StorageError) -> None:
        self.client.post(
            f"scan/{self.pass_id}/interrupted/",
            {"lease": self.lease, "path": error.path, "error": str(error)},
        )

    def lease_renew(self) -> bool:
        answer = self.client.post(
            "lease/", {"kind": "scan", "id": self.pass_id, "lease": self.lease}
        )
        return bool(answer.get("held"))

    def done(self) -> bool:
        done = self.client.post_durable(f"scan/{self.pass_id}/done/", {"lease": self.lease})
        return bool(done["ok"])


class HttpBatchSink:
    """One batch: its lease renewed from a thread of its own, which also learns when the
    job stopped (paused, cancelled) or the lease was lost, so the copy stops between
    files; the outcomes posted once at the end."""

    def __init__(self, client: Client, batch_id: int, lease: str, renew_every: float) -> None:
        self.client, self.batch_id, self.lease = client, batch_id, lease
        self._stop = threading.Event()
        self._done = threading.Event()
        self._watch = threading.Thread(target=self._renew, args=(renew_every,), daemon=True)
        self._watch.start()

    def _renew(self, every: float) -> None:
        while not self._done.wait(every):
            try:
                answer = self.client.post(
                    "lease/",
                    {"kind": "batch", "id": self.batch_id, "lease": self.lease},
                    patience=every,
                )
            except AgentError:
                continue  # the server is away: the copy goes on, the record waits for it
            if not (answer.get("held") and answer.get("running")):
                self._stop.set()

    def close(self) -> None:
        self._done.set()
        self._watch.join(timeout=5)

    def should_stop(self) -> bool:
        return self._stop.is_set()

    def event(self, message: str, level: str = "info", once: bool = False) -> None:
        self.client.post(
            f"batch/{self.batch_id}/event/",
            {"lease": self.lease, "message": message, "level": level, "once": once},
        )

    def acl_records(self, keys: Iterable[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        return {}  # permissions are not migrated through an agent yet (see the README)

    def acl_records_add(self, records: Sequence[NewAclRecord]) -> None:
        pass

    def halt(self, error: StorageError) -> None:
        self._stop.set()
        self.client.post(
            f"batch/{self.batch_id}/halt/",
            {"lease": self.lease, "path": error.path, "error": str(error)},
        )

    def batch_record(self, tasks: Sequence[CopyTask], outcomes: list[Outcome], acl: Any) -> bool:
        body = {"lease": self.lease, "outcomes": [outcome_to_wire(o) for o in outcomes]}
        answer = self.client.post_durable(f"batch/{self.batch_id}/record/", body)
        return bool(answer.get("recorded"))
