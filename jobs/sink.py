"""The database sink: where the engine's results land when it runs in a worker.

`pass_scan` and `batch_copy` (called by jobs.tasks) take a lease, build the engine's
inputs from the job (connectors, planner, options), run the engine, and give it a sink
that writes what it hands over: manifest rows (COPY/executemany, jobs.manifest), the pass
counters (`F()` updates, in the same transaction as the rows they count), batches, ACL
records, events, progress samples. Every write happens only while the lease is held, so
a killed worker loses nothing and a batch delivered twice is counted once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from migrator.acl.apply import LinesReader, manifest_lines, manifest_path, target_of
from migrator.acl.directory import DirectoryError
from migrator.engine import scan as engine_scan
from migrator.engine.batch import run_batch
from migrator.engine.copy import CopyOptions, CopyTask, Outcome, Policy, State
from migrator.engine.permissions import (
    NO_ACL_SOURCE_MESSAGE,
    NO_DIRECTORY_MESSAGE,
    BatchAcl,
    BatchPermissions,
    NewAclRecord,
    NoDirectory,
    acl_survey,
)
from migrator.engine.plan import Assessment
from migrator.engine.streams import parse_hashes
from migrator.storage import Entry, StorageError

from . import delta, permissions, plain, selectors, services, windows
from .choices import (
    CONNECTION_REASONS,
    JOB_RUNNING,
    BatchState,
    EventLevel,
    ItemKind,
    ItemState,
    JobState,
    PassKind,
    PassState,
    Reason,
)
from .connectors import check_endpoint, open_endpoint
from .dispatch import enqueue
from .manifest import insert_rows
from .models import AclRecord, Batch, FileItem, MigrationJob, Pass, ProgressSample, Tally
from .options import PERMISSIONS, filters_for, sanitizer_for

log = logging.getLogger(__name__)

HOST = socket.gethostname()
SAMPLE_EVERY = timedelta(seconds=3)
STOP_POLL_SECONDS = 1.0
SCAN_RESUME_SECONDS = 10  # after a source error mid-scan, the reaper hands it out again
# a scan task hands itself on (lease back, its continuation enqueued) after the first chunk
# committed past this share of the task timeout, before django-q kills it and the scan
# stands still until its lease lapses
HAND_OVER_AT = 0.8


def _token() -> str:
    # the pid now, not at import: qcluster imports this (URL checks) before it forks its
    # workers, and every lease named the parent instead of the worker holding it
    return f"{HOST}:{os.getpid()}:{threading.get_ident() % 10000}:{uuid.uuid4().hex[:8]}"


# --- scan ------------------------------------------------------------------------------


class ScanSink:
    """Writes each chunk of the manifest with its counters, batches and cursor."""

    def __init__(self, job_pass: Pass, token: str, hand_over_at: float | None = None) -> None:
        self.job_pass, self.token = job_pass, token
        self.job_id = job_pass.job_id
        self._delta: delta.ScanDelta | None = None  # found at the first chunk
        # time.monotonic() past which the chunk being written is this task's last (a
        # worker's task timeout; an agent has none)
        self.hand_over_at = hand_over_at
        self.handed_over = False

    def time_is_up(self) -> bool:
        return self.hand_over_at is not None and time.monotonic() >= self.hand_over_at

    def scan_chunk(self, rows: list[engine_scan.Row], cursor: str) -> bool:
        hand_over = bool(rows) and self.time_is_up()  # each task moves the cursor on
        return self._flush(rows, cursor, hand_over=hand_over) and not hand_over

    def hand_over(self) -> bool:
        """Give the scan's lease back and enqueue its continuation, which resumes after
        the last committed chunk at once; False when the lease was already lost."""
        with transaction.atomic():
            if not Pass.objects.filter(pk=self.job_pass.pk, scan_lease_owner=self.token).update(
                scan_lease_owner="", scan_lease_expires=None
            ):
                return False
            self._handed_over_event()
            enqueue("jobs.tasks.scan_pass", self.job_pass.pk)
        self.handed_over = True
        return True

    def _handed_over_event(self) -> None:
        services.event_add(
            job_id=self.job_id,
            level=EventLevel.INFO,
            staff_only=True,
            message="Scan handed on to a new task before the task timeout "
            f"({settings.MIGRATOR_TASK_TIMEOUT} s); it continues where it stopped.",
        )

    def scan_done(self, assessment: dict | None) -> bool:
        return self._flush([], None, final=True, assessment=assessment)

    def scan_interrupted(self, error: StorageError) -> None:
        # resume after the cursor soon, not when the lease would lapse (the task timeout)
        services.scan_lease_renew(
            pass_id=self.job_pass.pk, token=self.token, seconds=SCAN_RESUME_SECONDS
        )
        services.event_add_detail(  # the error names the host or the share
            job_id=self.job_id,
            level=EventLevel.WARNING,
            detail=f"Scan interrupted: {error}. It resumes where it stopped in "
            f"{SCAN_RESUME_SECONDS} s.",
            public=plain.scan_interrupted_words(SCAN_RESUME_SECONDS),
        )

    def lease_renew(self) -> bool:
        return services.scan_lease_renew(pass_id=self.job_pass.pk, token=self.token)

    def _flush(
        self,
        rows: list[engine_scan.Row],
        cursor: str | None,
        final: bool = False,
        assessment: dict | None = None,
        hand_over: bool = False,
    ) -> bool:
        """False when the scan must stop (lease lost, job cancelled or failed). With
        `hand_over`, the chunk also gives the lease back and enqueues the continuation."""
        job_pass = self.job_pass
        now = timezone.now()
        with transaction.atomic():
            locked = (
                Pass.objects.select_for_update()
                .filter(pk=job_pass.pk, scan_lease_owner=self.token, state=PassState.RUNNING)
                .first()
            )
            if locked is None:
                return False
            job = MigrationJob.objects.get(pk=job_pass.job_id)
            if job.state not in (*JOB_RUNNING, JobState.QUEUED, JobState.PAUSED):
                return False
            if self._delta is None:
                self._delta = delta.ScanDelta(job_pass)
            delta_new, delta_changed = self._delta.classify(rows)  # catch-up: vs last pass
            insert_rows(rows)
            # one pass over the chunk for every counter
            by_state: Counter[str] = Counter()
            folders = folders_failed = bytes_seen = bytes_done = 0
            pending: list[engine_scan.Row] = []
            file_kind, pending_state = ItemKind.FILE, ItemState.PENDING
            failed_state = ItemState.FAILED
            for r in rows:
                if r.state == pending_state:
                    pending.append(r)
                if r.kind == file_kind:
                    by_state[r.state] += 1
                    bytes_seen += r.size
                    if r.state != pending_state:
                        bytes_done += r.size
                else:
                    folders += 1
                    folders_failed += r.state == failed_state
            updates: dict[str, Any] = {
                "seen": F("seen") + sum(by_state.values()),
                "pending": F("pending") + by_state[ItemState.PENDING],
                "unchanged": F("unchanged") + by_state[ItemState.UNCHANGED],
                "excluded": F("excluded") + by_state[ItemState.EXCLUDED],
                "failed": F("failed") + by_state[ItemState.FAILED],
                "bytes_seen": F("bytes_seen") + bytes_seen,
                "bytes_done": F("bytes_done") + bytes_done,
                "folders_seen": F("folders_seen") + folders,
                "folders_failed": F("folders_failed") + folders_failed,
                "scan_lease_expires": now + timedelta(seconds=settings.MIGRATOR_LEASE_SECONDS),
            }
            # a catch-up pass whose destination is listed: batched after that check
            later = self._delta.later
            batches = [] if later else services.batches_create(job_pass=job_pass, pending=pending)
            if batches:
                updates["batches_total"] = F("batches_total") + len(batches)
            if delta_new or delta_changed:
                updates["delta_new"] = F("delta_new") + delta_new
                updates["delta_changed"] = F("delta_changed") + delta_changed
            # an empty chunk (a mapping's end, resumed past its last entry) says "<pos>/":
            # kept, that cursor would resume from the mapping's start
            if cursor is not None and rows:
                updates["scan_cursor"] = cursor
                updates["current_folder"] = cursor.partition("/")[2].rpartition("/")[0]
            if final:
                updates.update(scan_finished=True, scan_lease_owner="", scan_lease_expires=None)
                if assessment is not None:
                    updates["assessment"] = assessment
            elif hand_over:  # the continuation takes the lease as soon as this commits
                updates.update(scan_lease_owner="", scan_lease_expires=None)
                enqueue("jobs.tasks.scan_pass", job_pass.pk)
                self._handed_over_event()
                self.handed_over = True
            Pass.objects.filter(pk=job_pass.pk).update(**updates)
            if by_state:  # the chunk's own sums, for the pass-end accounting check
                Tally.objects.create(
                    job_pass_id=job_pass.pk,
                    unit="scan",
                    seen=sum(by_state.values()),
                    pending=by_state[ItemState.PENDING],
                    unchanged=by_state[ItemState.UNCHANGED],
                    excluded=by_state[ItemState.EXCLUDED],
                    failed=by_state[ItemState.FAILED],
                )
            for row in rows:
                if row.state == ItemState.FAILED:
                    _event_for_scan_failure(job.pk, row)
            _events_for_renames_and_exclusions(job.pk, rows)
            MigrationJob.objects.filter(pk=job.pk).update(last_activity=now)
            if final:
                MigrationJob.objects.filter(pk=job.pk, state=JobState.SCANNING).update(
                    state=JobState.COPYING
                )
                MigrationJob.objects.filter(pk=job.pk, state=JobState.ASSESSING).update(
                    state=JobState.VERIFYING
                )
                enqueue("jobs.tasks.finish_pass", job_pass.pk)
            if job.state != JobState.PAUSED and job.agent_pool_id is None:  # agents poll
                for batch in batches:
                    enqueue("jobs.tasks.copy_batch", batch.pk)
        return True


def _events_for_renames_and_exclusions(job_id: int, rows: list[engine_scan.Row]) -> None:
    """One event per chunk and kind: counts by rule, and an example (every row holds its own)."""
    renamed = [r for r in rows if r.rules]
    if renamed:
        rules = Counter(rule for r in renamed for rule in r.rules.split(","))
        first = renamed[0]
        services.event_add(
            job_id=job_id,
            level=EventLevel.INFO,
            message=f"{len(renamed)} name(s) changed for the destination "
            f"({', '.join(f'{k} ×{n}' for k, n in rules.most_common())}); "
            f"e.g. “{first.renamed_from}” → “{first.dest_path}”.",
            path=first.source_path,
        )
    excluded = [r for r in rows if r.state == ItemState.EXCLUDED and r.reason != "assessment_only"]
    if excluded:
        reasons = Counter(r.reason for r in excluded)
        services.event_add(
            job_id=job_id,
            level=EventLevel.INFO,
            message=f"{len(excluded)} item(s) excluded "
            f"({', '.join(f'{k} ×{n}' for k, n in reasons.most_common())}); "
            f"e.g. {excluded[0].source_path}.",
            path=excluded[0].source_path,
        )


def _event_for_scan_failure(job_id: int, row: engine_scan.Row) -> None:
    what = "Folder could not be read" if row.kind == ItemKind.DIR else "File skipped"
    services.event_add(
        job_id=job_id,
        level=EventLevel.ERROR,
        message=f"{what} ({row.reason}): {row.message}",
        path=row.source_path,
    )


def pass_scan(*, pass_id: int) -> None:
    """Lease the pass's scan and run the engine's scan into the manifest, creating batches
    as it goes so copying starts at once. Resumes after the last committed entry when
    handed out again."""
    started = time.monotonic()  # the task timeout counts from here (near enough)
    if Pass.objects.filter(pk=pass_id, job__agent_pool__isnull=False).exists():
        return  # the source is behind an agent: one of its pool scans it
    token = _token()
    if not services.scan_lease(pass_id=pass_id, token=token):
        return
    job_pass = Pass.objects.select_related("job__source", "job__destination").get(pk=pass_id)
    job = job_pass.job
    assess = job_pass.kind == PassKind.ASSESS
    try:
        assessment = (
            Assessment(
                now_ns=time.time_ns(),
                max_file_size=engine_scan.MAX_FILE_SIZE.get(job.destination.kind),
            )
            if assess
            else None
        )
        planner = engine_scan.Planner(
            job_id=job.pk,
            pass_id=job_pass.pk,
            sanitizer=sanitizer_for(job),
            filters=filters_for(job),
            assess=assess,
            assessment=assessment,
        )
    except ValueError as exc:
        services.job_cannot_start(job_id=job.pk, where="options", error=exc)
        return
    if not assess:
        try:
            check_endpoint(job.destination, destination=True)
        except (StorageError, ValueError) as exc:
            services.job_cannot_start(job_id=job.pk, where="destination", error=exc)
            return
    try:
        source = open_endpoint(job.source)
    except (StorageError, ValueError) as exc:
        services.job_cannot_start(job_id=job.pk, where="source", error=exc)
        return
    with source:
        try:
            source.check()
        except StorageError as exc:
            services.job_cannot_start(job_id=job.pk, where="source", error=exc)
            return
        MigrationJob.objects.filter(pk=job.pk, state=JobState.QUEUED).update(
            state=JobState.ASSESSING if assess else JobState.SCANNING, started_at=timezone.now()
        )
        mappings = [
            engine_scan.Mapping(m.position, m.source_path, m.destination_prefix)
            for m in job.mappings.all()
        ]
        timeout = settings.MIGRATOR_TASK_TIMEOUT
        sink = ScanSink(job_pass, token, hand_over_at=started + HAND_OVER_AT * timeout)
        if not engine_scan.scan(source, mappings, planner, sink, cursor=job_pass.scan_cursor):
            return
        # a catch-up pass: the destination listed and compared before the scan is done.
        # It is not resumable: started with less than half the task timeout left, it is
        # the continuation's, with all of it
        if (
            job_pass.kind == PassKind.COPY
            and time.monotonic() - started > timeout / 2
            and selectors.pass_prior(job_pass) is not None
            and not Pass.objects.filter(pk=job_pass.pk, delta_checked=True).exists()
        ):
            sink.hand_over()
            return
        if not delta.destination_check(job_pass=job_pass, token=token):
            return
        figures = None
        if assessment is not None:
            figures = assessment.finish()
            figures["estimate"] = engine_scan.estimate(
                source, figures, assessment.samples, _last_rate(job)
            )
            _assessment_permissions(job=job, job_pass=job_pass, figures=figures, sink=sink)
    sink.scan_done(figures)


def _last_rate(job: MigrationJob) -> tuple[float, float] | None:
    """Files/s and bytes/s of the last finished copy of this job's source."""
    last = (
        Pass.objects.filter(job__source=job.source, kind=PassKind.COPY, state=PassState.DONE)
        .exclude(copied=0)
        .order_by("-finished_at")
        .first()
    )
    if last is None or not last.finished_at:
        return None
    seconds = max((last.finished_at - last.started_at).total_seconds(), 0.001)
    return last.copied / seconds, last.bytes_copied / seconds


def _assessment_permissions(
    *, job: MigrationJob, job_pass: Pass, figures: dict, sink: ScanSink
) -> None:
    """Add the SID figures to an assessment: every item's descriptor read (rows streamed
    from the manifest), the distinct SIDs resolved in a few batched directory calls,
    mapped by the job's rules. The scan's lease is renewed meanwhile."""
    opts = permissions.options_of(job)
    if opts is None:
        return
    if not permissions.source_has_acls(job.source):
        figures[PERMISSIONS] = {"error": "the source has no ACLs"}
        return
    rows = (
        FileItem.objects.filter(job_pass=job_pass, reason="assessment_only")
        .order_by("id")
        .values_list("source_path", "kind")
        .iterator(chunk_size=2000)
    )
    survey = acl_survey(
        rows,
        lambda: open_endpoint(job.source),
        settings.MIGRATOR_COPY_THREADS,
        renew=sink.lease_renew,
    )
    directory = permissions.directory_for(job, job_pass.pk)
    try:
        principals = directory.resolve(survey.sids())
        error = ""
    except DirectoryError as exc:
        principals, error = {}, str(exc)
    result = survey.figures(
        principals,
        permissions.identity_map_for(job, opts),
        target=target_of(job.destination.kind),
    )
    if isinstance(directory, NoDirectory):
        error = error or NO_DIRECTORY_MESSAGE
    if error:
        result["directory_error"] = error
    result["deny_policy"] = opts.deny_policy.value
    figures[PERMISSIONS] = result


# --- copy ------------------------------------------------------------------------------


class _StopWatch:
    """Polls the job's state from its own thread, so copy threads can stop between files
    when the job is paused or cancelled, without each opening a database connection."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._done.wait(STOP_POLL_SECONDS):
                state = (
                    MigrationJob.objects.filter(pk=self.job_id)
                    .values_list("state", flat=True)
                    .first()
                )
                if state not in JOB_RUNNING:
                    self.stop.set()
                    return
        finally:
            connection.close()

    def __enter__(self) -> _StopWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


_RECORD_SQL = (
    # an empty message keeps the row's (a catch-up conflict says there what differed)
    f"UPDATE {FileItem._meta.db_table} SET state = %s, reason = %s, "
    "message = COALESCE(NULLIF(%s, ''), message), "
    "attempts = attempts + %s, md5 = %s, crc32c = %s, dest_path = %s WHERE id = %s"
)
# PostgreSQL: the same for the whole batch in one statement. A statement per row made the
# server's CPU the pipeline's ceiling (an executor start for each of 2,000 rows); the rows
# go as one JSON text (json.dumps is C; arrays were quoted value by value in Python by
# the client-side binding Django uses: 12 % of a cluster's samples)
_RECORD_SQL_PG = (
    f"UPDATE {FileItem._meta.db_table} AS f SET state = v->>0, reason = v->>1, "
    "message = COALESCE(NULLIF(v->>2, ''), f.message), "
    "attempts = f.attempts + (v->>3)::int, md5 = v->>4, crc32c = v->>5, "
    "dest_path = v->>6 FROM json_array_elements(%s::json) AS v WHERE f.id = (v->>7)::bigint"
)


def _record_rows(rows: list[tuple]) -> None:
    """Write the outcomes, (state, reason, message, attempts, md5, crc32c, dest_path, id)
    each, in the caller's transaction: one statement on PostgreSQL, executemany by primary
    key elsewhere (the ORM's bulk_update builds one CASE per column and row, which cost
    more CPU than copying the files: measured with py-spy)."""
    if not rows:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(_RECORD_SQL_PG, [json.dumps(rows)])
        else:
            cursor.executemany(_RECORD_SQL, rows)


class BatchSink:
    """Records one leased batch: its outcomes, the pass counters, the ACL records."""

    def __init__(self, batch: Batch, job: MigrationJob, token: str, watch: _StopWatch) -> None:
        self.batch, self.job, self.token, self.watch = batch, job, token, watch
        self._started = None

    def should_stop(self) -> bool:
        return self.watch.stop.is_set()

    def event(self, message: str, level: str = EventLevel.INFO, once: bool = False) -> None:
        if once:
            if self._started is None:
                self._started = Pass.objects.values_list("started_at", flat=True).get(
                    pk=self.batch.job_pass_id
                )
            services.event_add_once(
                job_id=self.job.pk, since=self._started, message=message, level=level
            )
        else:
            services.event_add(job_id=self.job.pk, message=message, level=level)

    def halt(self, error: StorageError) -> None:
        detail = f"Paused: {error}. Make room at the destination, then Resume the job."
        services.job_halt(job_id=self.job.pk, detail=detail, public=plain.DESTINATION_FULL)
        self.watch.stop.set()  # this worker's other threads stop between files too

    def acl_records(self, keys: Iterable[str]) -> dict[str, tuple[int, dict[str, Any]]]:
        rows = AclRecord.objects.filter(
            job_pass_id=self.batch.job_pass_id, key__in=list(keys)
        ).values("pk", "key", *permissions.PLAN_FIELDS)
        return {row["key"]: (row["pk"], row) for row in rows}

    def acl_records_add(self, records: Sequence[NewAclRecord]) -> None:
        # another worker may have made the same record meanwhile: theirs is as good
        AclRecord.objects.bulk_create(
            [
                AclRecord(
                    job_id=self.job.pk,
                    job_pass_id=self.batch.job_pass_id,
                    key=r.key,
                    source_sd=r.source_sd,
                    **r.stored,
                )
                for r in records
            ],  # fmt: skip
            ignore_conflicts=True,
        )

    def batch_record(
        self, tasks: Sequence[CopyTask], outcomes: list[Outcome], acl: BatchAcl | None
    ) -> bool:
        batch, job = self.batch, self.job
        by_id = {t.item_id: t for t in tasks}
        now = timezone.now()
        outcomes, later = _retry_later(outcomes, batch.attempts)
        finished = len(outcomes) == len(tasks)
        with transaction.atomic():
            held = (
                Batch.objects.select_for_update()
                .filter(pk=batch.pk, lease_owner=self.token, state=BatchState.LEASED)
                .first()
            )
            if held is None:  # our lease lapsed and another worker took the batch: it counts
                log.warning("batch %s: lease lost, outcomes discarded", batch.pk)
                return False
            # a row another batch recorded meanwhile (a catch-up pass puts rows back to
            # pending in ranges other batches may span) is counted once
            outcomes = _still_pending(outcomes)
            rows = []
            file_states: Counter[str] = Counter()
            dir_states: Counter[str] = Counter()
            bytes_copied = bytes_done = 0
            for o in outcomes:
                task = by_id[o.item_id]
                rows.append(
                    (
                        o.state.value,
                        o.reason,
                        o.message[:2000],
                        o.attempts,
                        o.md5 or task.hash_of("md5"),
                        o.crc32c or task.hash_of("crc32c"),
                        o.dest_path or task.dest_path,
                        o.item_id,
                    )
                )
                if task.kind == "dir":
                    dir_states[o.state] += 1
                else:
                    file_states[o.state] += 1
                    bytes_copied += o.bytes
                    bytes_done += task.size
            _record_rows(rows)
            Pass.objects.filter(pk=batch.job_pass_id).update(
                pending=F("pending") - sum(file_states.values()),
                copied=F("copied") + file_states[State.COPIED],
                unchanged=F("unchanged") + file_states[State.UNCHANGED],
                excluded=F("excluded") + file_states[State.EXCLUDED],
                failed=F("failed") + file_states[State.FAILED],
                bytes_copied=F("bytes_copied") + bytes_copied,
                bytes_done=F("bytes_done") + bytes_done,
                folders_created=F("folders_created") + dir_states[State.COPIED],
                folders_failed=F("folders_failed") + dir_states[State.FAILED],
                batches_done=F("batches_done") + (1 if finished else 0),
            )
            if acl is not None:  # item -> ACL record links and the permissions counters
                _acl_record(acl, outcomes)
            # the batch's own sums of what it recorded, for the pass-end accounting check
            recorded = {
                "files_copied": F("files_copied") + file_states[State.COPIED],
                "files_unchanged": F("files_unchanged") + file_states[State.UNCHANGED],
                "files_excluded": F("files_excluded") + file_states[State.EXCLUDED],
                "files_failed": F("files_failed") + file_states[State.FAILED],
            }
            if finished:
                Batch.objects.filter(pk=batch.pk).update(
                    state=BatchState.DONE, finished_at=now, lease_owner="", **recorded
                )
            else:
                if file_states:
                    Batch.objects.filter(pk=batch.pk).update(**recorded)
                delay = settings.MIGRATOR_RETRY_LATER_SECONDS if later else None
                services.batch_release(batch_id=batch.pk, token=self.token, delay=delay)
            if later:
                _later_record(later, batch)
            MigrationJob.objects.filter(pk=job.pk).update(last_activity=now)
            _sample_progress(batch.job_pass_id, now)
            self._failure_event(by_id, outcomes)
            if finished and _pass_may_finish(batch.job_pass_id):
                enqueue("jobs.tasks.finish_pass", batch.job_pass_id)
        return True

    def _failure_event(self, by_id: dict[int, CopyTask], outcomes: list[Outcome]) -> None:
        failures = [o for o in outcomes if o.state == State.FAILED]
        if not failures:
            return
        reasons = Counter(o.reason for o in failures)
        summary = ", ".join(f"{r} ×{n}" for r, n in reasons.most_common())
        example = by_id[failures[0].item_id].source_path
        said = f"{len(failures)} item(s) failed in batch {self.batch.pk}: {summary}. First:"
        detail = f"{said} {failures[0].message}"
        if failures[0].reason in CONNECTION_REASONS:  # the message names a host
            public = f"{said} {plain.item_message(failures[0].reason, failures[0].message)}."
            services.event_add_detail(job_id=self.job.pk, level=EventLevel.ERROR,
                                      detail=detail, public=public, path=example)  # fmt: skip
        else:
            services.event_add(
                job_id=self.job.pk, level=EventLevel.ERROR, message=detail, path=example
            )


def _still_pending(outcomes: list[Outcome]) -> list[Outcome]:
    if not outcomes:
        return outcomes
    ids = [o.item_id for o in outcomes]
    marks = ",".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {FileItem._meta.db_table} WHERE state = 'pending' AND id IN ({marks})",
            ids,
        )
        pending = {pk for (pk,) in cursor.fetchall()}
    return [o for o in outcomes if o.item_id in pending]


def _retry_later(outcomes: list[Outcome], attempts: int) -> tuple[list[Outcome], list[Outcome]]:
    """(what to record now, what to leave pending): files that failed only because an
    endpoint was away after their retries, or because they changed while they were read,
    wait for the batch's next try, until the batch has had its cap of tries for that
    reason (see later_cap); then they fail with their reason."""
    now, later = [], []
    for o in outcomes:
        waits = o.state == State.FAILED and attempts < later_cap(o.reason)
        (later if waits else now).append(o)
    return now, later


RETRY_LATER = {"destination_unavailable", "source_unavailable"}
CHANGED = Reason.CHANGED_DURING_COPY.value


def later_cap(reason: str) -> int:
    """How many tries of its batch a file failed with `reason` may have (0: none later).
    A file still being written gets fewer than an endpoint that is away: it is the
    same file each time, and it may never settle."""
    if reason in RETRY_LATER:
        return settings.MIGRATOR_BATCH_ATTEMPTS
    if reason == CHANGED:
        return min(settings.MIGRATOR_CHANGED_ATTEMPTS, settings.MIGRATOR_BATCH_ATTEMPTS)
    return 0


def _later_record(later: list[Outcome], batch: Batch) -> None:
    """In the batch's transaction: the left-pending files keep the count of their tries
    (their state and reason stay as they are), and staff are told they wait."""
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {FileItem._meta.db_table} SET attempts = attempts + %s WHERE id = %s",
            [(o.attempts, o.item_id) for o in later],
        )
    away = [o for o in later if o.reason != CHANGED]
    changed = [o for o in later if o.reason == CHANGED]
    if away:
        services.event_add(
            job_id=batch.job_id, level=EventLevel.WARNING, staff_only=True,
            message=f"{len(away)} item(s) of batch {batch.pk} wait for their endpoint "
            f"(attempt {batch.attempts} of {settings.MIGRATOR_BATCH_ATTEMPTS}): "
            f"{away[0].message}",
        )  # fmt: skip
    if changed:
        services.event_add(
            job_id=batch.job_id, level=EventLevel.WARNING, staff_only=True,
            message=f"{len(changed)} item(s) of batch {batch.pk} changed while they were "
            f"copied and will be tried again in {settings.MIGRATOR_RETRY_LATER_SECONDS} s "
            f"(attempt {batch.attempts} of {later_cap(CHANGED)}): {changed[0].message}",
        )  # fmt: skip


def _pass_may_finish(pass_id: int) -> bool:
    """After this batch: is the pass's scan done and nothing pending? (finish_pass
    checks again under a lock; this only spares a task per batch)."""
    return Pass.objects.filter(pk=pass_id, scan_finished=True, pending=0).exists()


def _acl_record(acl: BatchAcl, outcomes: Iterable[Outcome]) -> None:
    """Link items to their records and add the counters, in the batch's transaction."""
    links, counts, per_record = acl.counts(outcomes)
    if not links:
        return
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {FileItem._meta.db_table} SET acl_id = %s WHERE id = %s", links)
    Pass.objects.filter(pk=acl.pass_id).update(
        **{name: F(name) + n for name, n in counts.items() if n}
    )
    for record_id, n in per_record.items():
        AclRecord.objects.filter(pk=record_id).update(items=F("items") + n)


def _sample_progress(pass_id: int, now) -> None:
    last = ProgressSample.objects.filter(job_pass_id=pass_id).order_by("-id").first()
    if last is not None and now - last.at < SAMPLE_EVERY:
        return
    p = Pass.objects.filter(pk=pass_id).values("copied", "unchanged", "excluded", "failed")
    counts = p.first() or {}
    files = sum(counts.values())
    bytes_done = Pass.objects.filter(pk=pass_id).values_list("bytes_done", flat=True).first()
    ProgressSample.objects.create(job_pass_id=pass_id, files_done=files, bytes_done=bytes_done)


def _batch_permissions(
    job: MigrationJob, job_pass_id: int, sink: BatchSink
) -> tuple[BatchPermissions | None, bool]:
    """How the batch migrates permissions (None: it does not), and whether the pass is
    permissions-only."""
    pass_kind = Pass.objects.filter(pk=job_pass_id).values_list("kind", flat=True).first()
    only = pass_kind == PassKind.PERMISSIONS
    opts = permissions.options_of(job)
    if opts is None:
        return None, only
    if not permissions.source_has_acls(job.source):
        sink.event(NO_ACL_SOURCE_MESSAGE, level=EventLevel.WARNING, once=True)
        return None, only
    return BatchPermissions(
        options=opts,
        target=target_of(job.destination.kind),
        pass_id=job_pass_id,
        directory=lambda: permissions.directory_for(job, job_pass_id),
        identities=lambda: permissions.identity_map_for(job, opts),
        only=only,
    ), only


def batch_copy(*, batch_id: int) -> None:
    """Lease a batch, run the engine on its pending rows, record the outcomes."""
    if Batch.objects.filter(pk=batch_id, job__agent_pool__isnull=False).exists():
        return  # the source is behind an agent: one of its pool copies it
    token = _token()
    if not services.batch_lease(batch_id=batch_id, token=token):
        return
    batch = Batch.objects.get(pk=batch_id)
    job = MigrationJob.objects.select_related("source", "destination", "customer").get(
        pk=batch.job_id
    )
    if job.state not in JOB_RUNNING:
        services.batch_release(batch_id=batch_id, token=token)
        return
    rows = (
        FileItem.objects.filter(
            job_pass_id=batch.job_pass_id,
            id__gte=batch.first_id,
            id__lte=batch.last_id,
            state=ItemState.PENDING,
        )
        .order_by("id")
        .values_list("id", "kind", "source_path", "dest_path", "size", "mtime_ns", "md5", "crc32c")
    )
    tasks = [
        CopyTask(
            item_id=pk,
            source_path=src,
            dest_path=dst,
            kind=kind,
            size=size,
            mtime_ns=mtime,
            hashes=tuple((a, h) for a, h in (("md5", md5), ("crc32c", crc)) if h),
        )
        for pk, kind, src, dst, size, mtime, md5, crc in rows
    ]
    verify = Pass.objects.filter(pk=batch.job_pass_id, kind=PassKind.VERIFY).exists()
    if verify:  # compared by the hashes an earlier pass wrote, where the file is unchanged
        known = selectors.verify_known_hashes(
            job_pass_id=batch.job_pass_id, job_id=job.pk, tasks=tasks
        )
        tasks = [replace(t, hashes=t.hashes or known.get(t.item_id, ())) for t in tasks]
    # the job's bwlimit and its window's limit, the lower, shared by all its workers
    bucket = windows.shared_bucket_for(job=job)
    with _StopWatch(job.pk) as watch, bucket or contextlib.nullcontext():
        sink = BatchSink(batch, job, token, watch)
        options = CopyOptions(
            policy=Policy.VERIFY if verify else Policy(job.on_exists),
            shared_rate=bucket,
            threads=settings.MIGRATOR_COPY_THREADS,
            retry_attempts=settings.MIGRATOR_RETRY_ATTEMPTS,
            backoff=settings.MIGRATOR_RETRY_BACKOFF,
            should_stop=sink.should_stop,
            hashes=parse_hashes((job.options or {}).get("hashes")),
        )
        perms, only = _batch_permissions(job, batch.job_pass_id, sink)
        if verify:  # a verify pass applies nothing
            perms, only = None, False
        run_batch(
            tasks,
            source=lambda: open_endpoint(job.source),
            destination=lambda: open_endpoint(job.destination),
            options=options,
            sink=sink,
            permissions=perms,
            only=only,
        )
    services.leases_reap_if_due()


# --- the end of a pass: the permissions manifest ----------------------------------------------


def permissions_manifest_write(*, pass_id: int) -> None:
    """Write the pass's permissions manifest next to the data (JSON Lines, one object per
    path that reached the destination), streamed from the database; then finish the pass."""
    job_pass = Pass.objects.select_related("job__destination").get(pk=pass_id)
    job = job_pass.job
    path = manifest_path(job.pk)
    where = f"{job.destination.url.rstrip('/')}/{path}"
    reader = LinesReader(manifest_lines(permissions.manifest_entries(job_pass)))
    try:
        with open_endpoint(job.destination) as destination:
            destination.write(path, reader, Entry(path, "file", 0, time.time_ns()))  # type: ignore[arg-type]
    except (StorageError, ValueError) as exc:
        where = f"failed: {exc}"
        said = f"The permissions manifest could not be written: {exc}"
        services.event_add(job_id=job.pk, level=EventLevel.ERROR, message=said)
    else:
        written = f"Permissions manifest written ({reader.bytes} bytes): {where}"
        services.event_add(job_id=job.pk, message=written)
    services.pass_manifest_recorded(pass_id=pass_id, where=where, batches=job_pass.batches_done)
