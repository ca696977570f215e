"""The agent's loop: heartbeat, ask for work, run the engine on it, post the results."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import OrderedDict, deque
from typing import Any

from migrator.acl.directory import DirectoryError, LdapDirectory
from migrator.acl.mapping import Identity, IdentityMap
from migrator.engine.batch import run_batch
from migrator.engine.copy import CopyOptions, Outcome, Policy, State
from migrator.engine.filters import Filters
from migrator.engine.permissions import (
    NO_DIRECTORY_MESSAGE,
    BatchPermissions,
    NoDirectory,
    PermissionOptions,
    Resolver,
    acl_survey,
)
from migrator.engine.plan import Assessment
from migrator.engine.scan import Mapping, Planner, estimate, scan
from migrator.engine.streams import parse_hashes
from migrator.engine.wire import task_from_wire
from migrator.sanitize import Sanitizer
from migrator.storage import Connector, StorageError, capabilities_of, connector_for
from migrator.storage.upload import SessionUploads

from . import VERSION
from .client import AgentError, Client
from .sinks import HttpBatchSink, HttpScanSink, PassRecords

log = logging.getLogger("migrator.agent")

PASSES_KEPT = 8  # directories and ACL records of this many passes kept in memory
DIRECTORY_ARGS = ("uri", "bind_dn", "bind_password", "base_dn", "start_tls", "ca_file")


class _WithDecided:
    """The batch's sink, with the outcomes the server decided (already at the destination)
    added to those the engine produced: the batch is recorded whole, in one post."""

    def __init__(self, sink: HttpBatchSink, decided: list[Outcome]) -> None:
        self.sink, self.decided = sink, decided

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)

    def batch_record(self, tasks, outcomes, acl) -> bool:
        return self.sink.batch_record(tasks, [*self.decided, *outcomes], acl)


class Rate:
    """The current throughput: bytes of the work finished within the last `window`
    seconds, over the time that work took (never over idle time before it), so an agent
    that stopped copying shows 0 once the window has passed."""

    def __init__(self, window: float = 45.0) -> None:
        self.window = window
        self._done: deque[tuple[float, float, int]] = deque()  # (started, ended, bytes)
        self._lock = threading.Lock()

    def add(self, started: float, ended: float, nbytes: int) -> None:
        with self._lock:
            self._done.append((started, ended, nbytes))

    def bytes_per_s(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        since = now - self.window
        with self._lock:
            while self._done and self._done[0][1] < since:
                self._done.popleft()
            recent = list(self._done)
        if not recent:
            return 0.0
        began = max(since, min(started for started, _, _ in recent))
        return sum(n for _, _, n in recent) / max(now - began, 1.0)


PROGRESS_FIELDS = 4  # per process: entries scanned, files done, bytes done, bytes/s now


class _Counted:
    """The scan's sink, counting the entries it is handed, for the terminal's line."""

    def __init__(self, sink: HttpScanSink, counted: Any) -> None:
        self.sink, self.counted = sink, counted

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)

    def scan_chunk(self, rows: list, cursor: str) -> bool:
        self.counted(len(rows))
        return self.sink.scan_chunk(rows, cursor)


class Agent:
    def __init__(
        self,
        client: Client,
        *,
        bwlimit: int | None = None,
        spool: str = ".",
        progress: Any = None,
        slot: int = 0,
    ) -> None:
        self.client = client
        self.bwlimit = bwlimit
        self.spool = spool
        self.poll = 5.0
        self.holding: dict[str, Any] = {}
        self.copied_bytes = 0
        self.rate = Rate()
        self.scanned = self.files_done = 0
        # where this process's figures go for the terminal's live line (__main__ draws it):
        # a shared array, PROGRESS_FIELDS per process, or None
        self.progress, self.slot = progress, slot
        self._stop = threading.Event()
        # per pass, in memory only (the directory's password is never written anywhere):
        # its SIDs resolved once for every batch, and the ACL records made
        self._directories: OrderedDict[int, Resolver] = OrderedDict()
        self._records: OrderedDict[int, PassRecords] = OrderedDict()
        self._lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        host = socket.gethostname()
        return {
            "version": VERSION,
            "host": host,
            # each process of the agent (run --workers N) reports as itself: the server
            # keeps the latest status of each and shows the agent's totals
            "process": f"{host}:{os.getpid()}",
            "free_disk": shutil.disk_usage(self.spool).free,
            "bytes_per_s": round(self.rate.bytes_per_s()),
            "holding": dict(self.holding),
        }

    def report(self) -> None:
        """This process's figures, for the terminal's line."""
        if self.progress is not None:
            at = self.slot * PROGRESS_FIELDS
            self.progress[at : at + PROGRESS_FIELDS] = [
                self.scanned, self.files_done, self.copied_bytes, self.rate.bytes_per_s()
            ]  # fmt: skip

    def _counted(self, entries: int) -> None:
        self.scanned += entries
        self.report()

    def heartbeats(self) -> None:
        while not self._stop.wait(self.poll):
            self.report()  # the rate falls while idle
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
            started, before = time.monotonic(), self.copied_bytes
            try:
                if work["kind"] == "scan":
                    log.info("scanning pass %s", work["pass_id"])
                    self.scan(work)
                else:
                    log.info("batch %s: %d items to do", work["batch_id"], len(work["tasks"]))
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
                # batch() adds its outcomes' bytes to copied_bytes
                self.rate.add(started, time.monotonic(), self.copied_bytes - before)
                if work["kind"] != "scan":
                    self.files_done += len(work["tasks"])
                self.report()
            idle_since = time.monotonic()
        return 3

    def scan(self, work: dict) -> None:
        options = work["options"] or {}
        given = work.get("assess")  # an assessment: figures, nothing to copy
        assessment = (
            Assessment(now_ns=time.time_ns(), max_file_size=given.get("max_file_size"))
            if given
            else None
        )
        planner = Planner(
            job_id=work["job_id"],
            pass_id=work["pass_id"],
            sanitizer=Sanitizer.from_options(work["destination_kind"], options),
            filters=Filters.from_dict(options.get("filters")),
            assess=assessment is not None,
            assessment=assessment,
        )
        mappings = [Mapping(pos, src, prefix) for pos, src, prefix in work["mappings"]]
        self.holding = {"scan": work["pass_id"]}
        source = work["source"]
        # an assessment's permissions survey reads what the scan planned: kept on disk
        # meanwhile (bounded memory), removed at the end
        with tempfile.TemporaryFile("w+", dir=self.spool) as planned:
            keep = planned if given and given.get("permissions") else None
            sink = HttpScanSink(
                self.client, work["pass_id"], work["lease"], work["cursor"], keep=keep
            )
            with connector_for(source["url"], source["secret"]) as conn:
                conn.check()
                counted = _Counted(sink, self._counted)
                if not scan(conn, mappings, planner, counted, cursor=work["cursor"]):  # type: ignore[arg-type]
                    return
                figures = None
                if assessment is not None:
                    figures = assessment.finish()
                    rate = given.get("last_rate")
                    figures["estimate"] = estimate(
                        conn, figures, assessment.samples, tuple(rate) if rate else None
                    )
                    if keep is not None:
                        figures["permissions"] = self._survey(work, given, keep, sink)
            sink.done(figures)
            log.info("scanned pass %s", work["pass_id"])

    def _survey(self, work: dict, given: dict, planned: Any, sink: HttpScanSink) -> dict:
        """An assessment's SID figures, as a worker makes them: every planned item's
        descriptor read, the distinct SIDs resolved in the customer's AD, from here."""
        perms = given["permissions"]
        options = PermissionOptions.parse(perms["options"]) or PermissionOptions()
        planned.seek(0)
        items = (tuple(json.loads(line)) for line in planned)
        source = work["source"]
        survey = acl_survey(
            items,
            lambda: connector_for(source["url"], source["secret"]),
            int(given.get("threads") or 4),
            renew=sink.lease_renew,
        )
        directory = self._directory(int(work["pass_id"]), perms.get("directory"))
        try:
            principals, error = directory.resolve(survey.sids()), ""
        except DirectoryError as exc:
            principals, error = {}, str(exc)
        overrides = {s: Identity(t, kind, "csv") for s, t, kind in perms.get("overrides") or ()}
        result = survey.figures(
            principals, IdentityMap(options.rules, overrides), target=str(perms["target"])
        )
        if isinstance(directory, NoDirectory):
            error = error or NO_DIRECTORY_MESSAGE
        if error:
            result["directory_error"] = error
        result["deny_policy"] = options.deny_policy.value
        return result

    def batch(self, work: dict) -> None:
        tasks = [task_from_wire(values) for values in work["tasks"]]
        o = work["options"]
        limits = [x for x in (o.get("bwlimit"), self.bwlimit) if x]
        perms = self.permissions(work)
        sink = HttpBatchSink(
            self.client,
            work["batch_id"],
            work["lease"],
            renew_every=max(1.0, self.poll),
            records=self._pass_records(int(work["pass_id"])) if perms else None,
        )
        self.holding = {"batch": work["batch_id"], "files": len(tasks)}
        options = CopyOptions(
            policy=Policy(o["policy"]),
            bwlimit=min(limits) if limits else None,
            threads=int(o["threads"]),
            retry_attempts=int(o["retry_attempts"]),
            backoff=float(o["backoff"]),
            should_stop=sink.should_stop,
            hashes=parse_hashes(o.get("hashes")),  # what the job asks for besides the default
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
        recorder: Any = _WithDecided(sink, decided)
        todo = [t for t in tasks if t.item_id not in given]
        if perms is not None:  # what is already there still gets its permissions
            perms.given = {o.item_id: o for o in decided}
            recorder, todo = sink, tasks
        try:
            outcomes = run_batch(
                todo,
                source=lambda: connector_for(source["url"], source["secret"]),
                destination=opener,
                options=options,
                sink=recorder,
                permissions=perms,
                only=bool(work.get("only")),
            )
        finally:
            sink.close()
        self.copied_bytes += sum(out.bytes for out in outcomes)
        log.info("batch %s: %d of %d items", work["batch_id"], len(outcomes), len(tasks))

    # --- permissions: read, resolved and applied here, where the share and the AD are

    def permissions(self, work: dict) -> BatchPermissions | None:
        """The batch's BatchPermissions, as a worker builds them, from what the server
        sent: the job's options, the destination's model, the directory's settings (the
        customer's AD, reachable from here) and the identity CSV's lines."""
        given = work.get("permissions")
        if not given:
            return None
        options = PermissionOptions.parse(given["options"])
        if options is None:
            return None
        pass_id = int(work["pass_id"])
        conf = given.get("directory")
        overrides = {s: Identity(t, kind, "csv") for s, t, kind in given.get("overrides") or ()}
        target = str(given["target"])
        return BatchPermissions(
            options=options,
            target=target,
            pass_id=pass_id,
            directory=lambda: self._directory(pass_id, conf),
            identities=lambda: IdentityMap(options.rules, overrides),
            only=bool(work.get("only")),
            # a bucket's object ACLs need its key, which an agent never holds: the plans
            # go with the batch's records and the server sets them
            apply=target != "gs",
        )

    def _directory(self, pass_id: int, conf: dict | None) -> Resolver:
        """One directory per pass (its cache of SIDs serves every batch of the pass)."""
        with self._lock:
            found = self._directories.get(pass_id)
            if found is not None:
                self._directories.move_to_end(pass_id)
                return found
            args = {k: v for k, v in (conf or {}).items() if k in DIRECTORY_ARGS and v}
            directory: Resolver = LdapDirectory(**args) if args.get("uri") else NoDirectory()
            self._directories[pass_id] = directory
            while len(self._directories) > PASSES_KEPT:
                _, old = self._directories.popitem(last=False)
                old.close()
            return directory

    def _pass_records(self, pass_id: int) -> PassRecords:
        with self._lock:
            records = self._records.get(pass_id)
            if records is None:
                records = self._records[pass_id] = PassRecords()
                while len(self._records) > PASSES_KEPT:
                    self._records.popitem(last=False)
            self._records.move_to_end(pass_id)
            return records
