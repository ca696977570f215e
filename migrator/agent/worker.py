"""The agent's loop: heartbeat, ask for work, run the engine on it, post the results."""

from __future__ import annotations

import logging
import shutil
import socket
import sys
import threading
import time
from typing import Any

from migrator.engine.batch import run_batch
from migrator.engine.copy import CopyOptions, Outcome, Policy, State
from migrator.engine.filters import Filters
from migrator.engine.scan import Mapping, Planner, scan
from migrator.engine.wire import task_from_wire
from migrator.sanitize import Sanitizer
from migrator.storage import Connector, StorageError, capabilities_of, connector_for
from migrator.storage.upload import SessionUploads

from . import VERSION
from .client import AgentError, Client
from .sinks import HttpBatchSink, HttpScanSink

log = logging.getLogger("migrator.agent")


class _WithDecided:
    """The batch's sink, with the outcomes the server decided (already at the destination)
    added to those the engine produced: the batch is recorded whole, in one post."""

    def __init__(self, sink: HttpBatchSink, decided: list[Outcome]) -> None:
        self.sink, self.decided = sink, decided

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)

    def batch_record(self, tasks, outcomes, acl) -> bool:
        return self.sink.batch_record(tasks, [*self.decided, *outcomes], acl)


class Agent:
    def __init__(self, client: Client, *, bwlimit: int | None = None, spool: str = ".") -> None:
        self.client = client
        self.bwlimit = bwlimit
        self.spool = spool
        self.poll = 5.0
        self.holding: dict[str, Any] = {}
        self.copied_bytes = 0
        self.started = time.monotonic()
        self._stop = threading.Event()

    def status(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 0.001)
        return {
            "version": VERSION,
            "host": socket.gethostname(),
            "free_disk": shutil.disk_usage(self.spool).free,
            "bytes_per_s": round(self.copied_bytes / elapsed),
            "holding": dict(self.holding),
        }

    def heartbeats(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                answer = self.client.post("heartbeat/", {"status": self.status()}, patience=30)
                self.poll = float(answer.get("poll_seconds", self.poll))
            except AgentError as exc:
                log.warning("heartbeat: %s", exc)
                if exc.status == 401:  # revoked: nothing more to do here
                    self._stop.set()

    def run(self, *, idle_exit: float | None = None) -> int:
        """Work until stopped (or idle for `idle_exit` seconds); 0, or 3 when revoked."""
        threading.Thread(target=self.heartbeats, daemon=True).start()
        idle_since = time.monotonic()
        while not self._stop.is_set():
            try:
                work = self.client.post("work/", {"status": self.status()})
            except AgentError as exc:
                log.error("the server refused this agent: %s", exc)
                sys.stderr.write(f"migrator-agent: the server refused this agent: {exc}\n")
                return 3 if exc.status == 401 else 2
            if work["kind"] == "none":
                if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                    return 0
                self._stop.wait(float(work.get("poll_seconds", self.poll)))
                continue
            try:
                if work["kind"] == "scan":
                    self.scan(work)
                else:
                    self.batch(work)
            except StorageError as exc:  # told to the server; the lease lets others retry
                log.warning(
                    "%s %s stopped: %s",
                    work["kind"],
                    work.get("pass_id") or work.get("batch_id"),
                    exc,
                )
            finally:
                self.holding.clear()
            idle_since = time.monotonic()
        return 3

    def scan(self, work: dict) -> None:
        options = work["options"] or {}
        planner = Planner(
            job_id=work["job_id"],
            pass_id=work["pass_id"],
            sanitizer=Sanitizer.from_options(work["destination_kind"], options),
            filters=Filters.from_dict(options.get("filters")),
        )
        mappings = [Mapping(pos, src, prefix) for pos, src, prefix in work["mappings"]]
        self.holding = {"scan": work["pass_id"]}
        sink = HttpScanSink(self.client, work["pass_id"], work["lease"], work["cursor"])
        source = work["source"]
        with connector_for(source["url"], source["secret"]) as conn:
            conn.check()
            if scan(conn, mappings, planner, sink, cursor=work["cursor"]):
                sink.done()
                log.info("scanned pass %s", work["pass_id"])

    def batch(self, work: dict) -> None:
        tasks = [task_from_wire(values) for values in work["tasks"]]
        o = work["options"]
        limits = [x for x in (o.get("bwlimit"), self.bwlimit) if x]
        sink = HttpBatchSink(
            self.client, work["batch_id"], work["lease"], renew_every=max(1.0, self.poll)
        )
        self.holding = {"batch": work["batch_id"], "files": len(tasks)}
        options = CopyOptions(
            policy=Policy(o["policy"]),
            bwlimit=min(limits) if limits else None,
            threads=int(o["threads"]),
            retry_attempts=int(o["retry_attempts"]),
            backoff=float(o["backoff"]),
            should_stop=sink.should_stop,
        )
        source, destination = work["source"], work["destination"]
        given = {int(pk): value for pk, value in (work.get("given") or {}).items()}
        if destination.get("kind") == "sessions":  # a cloud: sessions, never its keys
            caps = capabilities_of(destination["url"])

            def opener() -> Connector:
                return SessionUploads(destination["sessions"], caps)
        else:

            def opener() -> Connector:
                return connector_for(destination["url"], destination["secret"])

        decided = [
            Outcome(t.item_id, State(given[t.item_id][0]), given[t.item_id][1])
            for t in tasks
            if t.item_id in given
        ]
        recorder = _WithDecided(sink, decided)
        try:
            outcomes = run_batch(
                [t for t in tasks if t.item_id not in given],
                source=lambda: connector_for(source["url"], source["secret"]),
                destination=opener,
                options=options,
                sink=recorder,  # type: ignore[arg-type]
            )
        finally:
            sink.close()
        self.copied_bytes += sum(out.bytes for out in outcomes)
        if sys.stderr.isatty():
            sys.stderr.write(
                f"\rbatch {work['batch_id']}: {len(outcomes)} of {len(tasks)} "
                f"items, {self.copied_bytes:,} bytes so far   "
            )
        log.info("batch %s: %d of %d items", work["batch_id"], len(outcomes), len(tasks))
