"""The engine's sinks over HTTP: what the scan and a batch produce is posted in bulk."""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import IO, Any

from migrator.engine.copy import CopyTask, Outcome
from migrator.engine.permissions import BatchAcl
from migrator.engine.scan import Row
from migrator.engine.sink import NewAclRecord
from migrator.engine.wire import outcome_to_wire, row_to_wire
from migrator.storage import StorageError

from .client import AgentError, Client

ASSESSMENT_ONLY = "assessment_only"  # the reason of what an assessment would copy


class HttpScanSink:
    """A scan's chunks, each naming the cursor it continues from (a post retried after a
    lost answer is recognised and counted once)."""

    def __init__(
        self, client: Client, pass_id: int, lease: str, cursor: str, keep: IO[str] | None = None
    ) -> None:
        self.client, self.pass_id, self.lease, self.after = client, pass_id, lease, cursor
        self.keep = keep  # an assessment's planned items, (path, kind) per line, kept here

    def scan_chunk(self, rows: list[Row], cursor: str) -> bool:
        if self.keep is not None:
            for r in rows:
                if r.reason == ASSESSMENT_ONLY:
                    self.keep.write(json.dumps([r.source_path, r.kind]) + "\n")
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

    def done(self, assessment: dict | None = None) -> bool:
        body = {"lease": self.lease, "assessment": assessment}
        done = self.client.post_durable(f"scan/{self.pass_id}/done/", body)
        return bool(done["ok"])


class PassRecords:
    """The ACL records this agent process made in one pass, by key: a descriptor met in an
    earlier batch is found here instead of having its SIDs resolved again. The ids are
    this process's own; the server finds or stores each record by its key when the batch
    that uses it is recorded. A bounded number kept (few distinct per pass)."""

    def __init__(self, size: int = 20000) -> None:
        self.size = size
        self._by_key: OrderedDict[str, tuple[int, NewAclRecord]] = OrderedDict()
        self._last_id = 0

    def find(self, keys: Iterable[str]) -> dict[str, tuple[int, NewAclRecord]]:
        found = {}
        for key in keys:
            if key in self._by_key:
                self._by_key.move_to_end(key)
                found[key] = self._by_key[key]
        return found

    def add(self, records: Sequence[NewAclRecord]) -> None:
        for record in records:
            if record.key in self._by_key:
                continue
            self._last_id += 1
            self._by_key[record.key] = (self._last_id, record)
            if len(self._by_key) > self.size:
                self._by_key.popitem(last=False)


class HttpBatchSink:
    """One batch: its lease renewed from a thread of its own, which also learns when the
    job stopped (paused, cancelled) or the lease was lost, so the copy stops between
    files; the outcomes posted once at the end, with the ACL records they use."""

    def __init__(
        self,
        client: Client,
        batch_id: int,
        lease: str,
        renew_every: float,
        records: PassRecords | None = None,
    ) -> None:
        self.client, self.batch_id, self.lease = client, batch_id, lease
        self.records = records if records is not None else PassRecords()
        self._used: dict[int, NewAclRecord] = {}  # the records this batch's items use
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
        found = self.records.find(keys)
        for record_id, record in found.values():
            self._used[record_id] = record
        return {key: (record_id, record.stored) for key, (record_id, record) in found.items()}

    def acl_records_add(self, records: Sequence[NewAclRecord]) -> None:
        self.records.add(records)  # posted with the outcomes of the batch using them

    def halt(self, error: StorageError) -> None:
        self._stop.set()
        self.client.post(
            f"batch/{self.batch_id}/halt/",
            {"lease": self.lease, "path": error.path, "error": str(error)},
        )

    def batch_record(self, tasks: Sequence[CopyTask], outcomes: list[Outcome], acl: Any) -> bool:
        body: dict[str, Any] = {
            "lease": self.lease,
            "outcomes": [outcome_to_wire(o) for o in outcomes],
        }
        if isinstance(acl, BatchAcl):
            body["acl"] = self._acl_wire(acl, outcomes)
        answer = self.client.post_durable(f"batch/{self.batch_id}/record/", body)
        return bool(answer.get("recorded"))

    def _acl_wire(self, acl: BatchAcl, outcomes: list[Outcome]) -> dict[str, Any]:
        """What permissions did in this batch, by record key: the records its items use
        (the server stores those it does not have; a retried post finds them stored), each
        item's record, and the items whose permissions were applied (or already so)."""
        items, keys = [], {}
        for outcome in outcomes:
            record_id = acl.item_acl.get(outcome.item_id)
            record = self._used.get(record_id) if record_id is not None else None
            if record is None:
                continue
            items.append([outcome.item_id, record.key])
            keys[record.key] = record
        records = [
            [r.key, base64.b64encode(r.source_sd).decode("ascii"), r.stored] for r in keys.values()
        ]
        linked = {item for item, _ in items}
        applied = sorted(i for i in acl.applied if i in linked)
        return {"records": records, "items": items, "applied": applied}
