"""Continuous mode: after its first full pass, a job follows its source's change
notifications and writes each change through the same batch path as a pass.

`continuous_start` / `continuous_stop` (admin, API) switch it; `continuous_run` (the
task jobs.tasks.continuous_run, one at a time by its lease, handed out again by the
reaper when the lease lapses) opens the source's `watch()`, coalesces bursts per path
(migrator.engine.watch), plans each changed path with the engine's Planner into the
job's SYNC pass and copies it in-process with `run_batch` and the database BatchSink.
Deleted at the source: the job's deletion policy (options.deletes: keep, mirror, trash)
applied by migrator.engine.deletes.apply and recorded as Deletions of the SYNC pass.
Moves: `dst.move` where the destination can rename, else copy then delete (mirror,
trash). A GCS source is listed every options.watch_seconds (default 5). A
reconciliation (a catch-up pass, `services.job_start`) runs every
options.reconcile_minutes (default 60) and at once after a watch error; what it copied
or deleted is what notifications missed, shown with the state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from accounts.choices import AuditAction
from accounts.services import audit_record
from migrator.engine import deletes
from migrator.engine import scan as engine_scan
from migrator.engine.batch import run_batch
from migrator.engine.copy import CopyOptions, CopyTask, Policy
from migrator.engine.watch import Change, Coalescer, WatchError
from migrator.storage import Connector, NotFound, ScanError, StorageError, capabilities_of

from . import services, windows
from .choices import (
    JOB_ACTIVE,
    JOB_FINISHED,
    BatchState,
    EventLevel,
    ItemKind,
    ItemState,
    PassKind,
    PassState,
)
from .connectors import open_endpoint
from .dispatch import enqueue
from .manifest import insert_rows
from .models import Batch, ContinuousState, Deletion, FileItem, MigrationJob, Pass
from .options import filters_for, sanitizer_for
from .services import JobStateError

log = logging.getLogger(__name__)

LEASE_BATCH = 600  # a batch of changes, copied in this process while it runs
HEARTBEAT_SECONDS = 1.0  # lease, enabled flag and shown state, this often
WINDOW_RECHECK_SECONDS = 2.0  # while changes wait: is the transfer window open again?
RECONCILE_MINUTES = 60
PEERS_SECONDS = 10.0  # how often a runner looks for other jobs' runners whose lease lapsed
AGENT_REFUSAL = (
    "Continuous mode is not available for a job whose source is reached through an "
    "on-premises agent: run catch-up passes instead."
)


def run_seconds() -> float:
    """How long one task follows the source before it hands over to the next: under the
    queue's task timeout (the task is killed there)."""
    timeout = float(settings.MIGRATOR_TASK_TIMEOUT)
    return timeout * 0.5 if timeout < 180 else timeout - 30 - HANDOVER_WAIT


def handover_seconds() -> float:
    """How long a runner whose time is up waits for its successor's watch."""
    return min(HANDOVER_WAIT, float(settings.MIGRATOR_TASK_TIMEOUT) * 0.3)


def lease_seconds() -> float:
    """How long a runner's lease lasts without a heartbeat (one a second): a killed
    runner's job is sent again by the reaper once it lapses."""
    return max(5.0, min(15.0, settings.MIGRATOR_LEASE_SECONDS / 2))


# --- people's actions ---------------------------------------------------------------------


def _first_pass_done(job: MigrationJob) -> bool:
    return Pass.objects.filter(
        job=job, kind__in=(PassKind.COPY, PassKind.RETRY), state=PassState.DONE
    ).exists()


def continuous_start(*, job: MigrationJob, user=None) -> ContinuousState:
    """Put the job in continuous mode; it starts following its source once its first
    full pass has finished (at once when it has)."""
    if job.agent_pool_id is not None:
        raise JobStateError(AGENT_REFUSAL)
    if not capabilities_of(job.source.url).watch:
        raise JobStateError(
            f"The source of job “{job.name}” cannot report its changes: run catch-up passes."
        )
    with transaction.atomic():
        state, _ = ContinuousState.objects.select_for_update().get_or_create(job=job)
        if state.enabled:
            raise JobStateError(f"Job “{job.name}” is already in continuous mode.")
        state.enabled = True
        state.last_error = ""
        state.save(update_fields=["enabled", "last_error", "updated_at"])
        services.event_add_by(job_id=job.pk, done="Continuous mode started", user=user)
        audit_record(action=AuditAction.EDIT, obj=job, user=user,
                     detail="continuous mode started")  # fmt: skip
        if _first_pass_done(job):
            enqueue("jobs.tasks.continuous_run", job.pk)
    return state


def continuous_stop(*, job: MigrationJob, user=None) -> ContinuousState:
    """Stop following the source; the runner finishes what it holds and lets go within
    a second or two. Its SYNC pass is closed (the cutover calls this)."""
    with transaction.atomic():
        state, _ = ContinuousState.objects.select_for_update().get_or_create(job=job)
        if not state.enabled:
            raise JobStateError(f"Job “{job.name}” is not in continuous mode.")
        state.enabled = False
        state.watching_since = None
        state.save(update_fields=["enabled", "watching_since", "updated_at"])
        services.event_add_by(job_id=job.pk, done="Continuous mode stopped", user=user)
        audit_record(action=AuditAction.EDIT, obj=job, user=user,
                     detail="continuous mode stopped")  # fmt: skip
    return state


def continuous_reconcile(*, job: MigrationJob, user=None) -> None:
    """Ask the runner for a reconciliation (a catch-up pass) now."""
    updated = ContinuousState.objects.filter(job=job, enabled=True).update(reconcile_due=True)
    if not updated:
        raise JobStateError(f"Job “{job.name}” is not in continuous mode.")
    audit_record(action=AuditAction.EDIT, obj=job, user=user, detail="reconciliation asked")


def continuous_due() -> int:
    """For the reaper: send a runner for every enabled job whose runner's lease lapsed
    (a killed worker, a task that ended) and whose first pass has finished."""
    now = timezone.now()
    sent = 0
    states = ContinuousState.objects.filter(enabled=True).filter(
        Q(lease_expires__isnull=True) | Q(lease_expires__lt=now)
    )
    for job_id in states.values_list("job_id", flat=True):
        job = MigrationJob.objects.get(pk=job_id)
        if job.agent_pool_id is None and _first_pass_done(job):
            enqueue("jobs.tasks.continuous_run", job_id)
            sent += 1
    return sent


# --- the runner -----------------------------------------------------------------------------


def _lease_expiry():
    return timezone.now() + timedelta(seconds=lease_seconds())


def _lease(job_id: int, token: str) -> bool:
    now = timezone.now()
    return bool(
        ContinuousState.objects.filter(job_id=job_id, enabled=True)
        .filter(Q(lease_expires__isnull=True) | Q(lease_expires__lt=now) | Q(lease_owner=token))
        .update(lease_owner=token, lease_expires=now + timedelta(seconds=lease_seconds()))
    )


def _sync_pass(job: MigrationJob, state: ContinuousState) -> Pass:
    """The job's running SYNC pass (one for the whole time it is in continuous mode)."""
    if state.sync_pass_id:
        p = Pass.objects.filter(pk=state.sync_pass_id, state=PassState.RUNNING).first()
        if p is not None:
            return p
    with transaction.atomic():
        number = (Pass.objects.filter(job=job).aggregate(n=Max("number"))["n"] or 0) + 1
        p = Pass.objects.create(job=job, number=number, kind=PassKind.SYNC)
        ContinuousState.objects.filter(pk=state.pk).update(sync_pass=p)
    return p


def _close_sync_pass(state: ContinuousState) -> None:
    """Continuous mode ended: the SYNC pass is done (its rows are what was applied)."""
    Pass.objects.filter(pk=state.sync_pass_id, state=PassState.RUNNING).update(
        state=PassState.DONE, scan_finished=True, finished_at=timezone.now()
    )
    ContinuousState.objects.filter(pk=state.pk).update(sync_pass=None)


def continuous_run(*, job_id: int, stop: threading.Event | None = None) -> None:
    """Follow the job's source for up to run_seconds(), applying its changes; then hand
    over to a new task. `stop` (tests, the bench) ends it from outside."""
    token = services_token()
    before = ContinuousState.objects.filter(job_id=job_id).values_list("lease_owner", flat=True)
    lapsed = (before.first() or "") not in ("", token)  # a runner died: no hand-over
    early = None
    if not _lease(job_id, token):
        early = _standby(job_id, token)  # the runner ending asked for a successor
        if early is None:
            return
        lapsed = False
    job = MigrationJob.objects.select_related("source", "destination").get(pk=job_id)
    if lapsed:  # what changed while nobody watched was not reported: reconcile
        ContinuousState.objects.filter(job_id=job_id).update(reconcile_due=True)
        services.event_add(
            job_id=job_id, level=EventLevel.WARNING,
            message="Continuous mode: the runner following the source stopped without "
            "handing over; a new one took its place and a reconciliation pass catches what "
            "changed in between.",
        )  # fmt: skip
    state = ContinuousState.objects.get(job_id=job_id)
    if early is not None and (job.agent_pool_id is not None or not _first_pass_done(job)):
        early[1].close()  # (cannot happen after a hand-over; never leave a watch open)
        early[0].close()
    if job.agent_pool_id is not None:
        ContinuousState.objects.filter(pk=state.pk).update(
            enabled=False, last_error=AGENT_REFUSAL, last_error_at=timezone.now(), lease_owner=""
        )
        return
    if not _first_pass_done(job):
        ContinuousState.objects.filter(pk=state.pk, lease_owner=token).update(
            lease_owner="", lease_expires=None
        )
        return
    runner = Runner(job, state, token, stop or threading.Event(), early=early)
    try:
        again = runner.run()
    finally:
        runner.close()
    if again:
        enqueue("jobs.tasks.continuous_run", job_id)


# --- hand-over without a gap ----------------------------------------------------------------
# A runner's time is up before the queue's task timeout. It asks for a successor and keeps
# applying; the successor opens its own watch first (changes buffer in it), says so, and
# takes the lease once the old runner, seeing that, has let go. What both saw is applied
# twice at most (found unchanged the second time); nothing falls between the two watches.

HANDOVER_WAIT = 60.0  # seconds a successor waits for the lease, the old runner for it


def _handover_key(job_id: int, what: str) -> str:
    return f"migrator:continuous:{job_id}:{what}"


def _open_watch(job: MigrationJob, source: Connector):
    opts = job.options or {}
    options = {}
    if job.source.kind == "gs" and opts.get("watch_seconds"):
        # an object store is listed this often (GCSConnector.watch)
        options["interval"] = float(opts["watch_seconds"])
    return source.watch("", **options)


def _standby(job_id: int, token: str):
    """A successor asked for by the runner ending: watch first, say so, then wait for the
    lease. Returns (source, watch) once the lease is ours, else None."""
    from django.core.cache import cache

    if not cache.get(_handover_key(job_id, "wanted")):
        return None
    job = MigrationJob.objects.select_related("source", "destination").get(pk=job_id)
    source = open_endpoint(job.source)
    try:
        watch = _open_watch(job, source)
    except StorageError:
        source.close()
        return None  # the old runner waits for nobody: its lease lapses, the reaper sends one
    cache.set(_handover_key(job_id, "armed"), token, HANDOVER_WAIT * 2)
    ends = time.monotonic() + HANDOVER_WAIT + 5
    mine = ContinuousState.objects.filter(job_id=job_id, enabled=True, lease_owner="")
    while time.monotonic() < ends:
        # only a lease let go: one that lapsed (the old runner died) is the reaper's, whose
        # runner reconciles what nobody watched
        if mine.update(lease_owner=token, lease_expires=_lease_expiry()):
            cache.delete_many([_handover_key(job_id, "wanted"), _handover_key(job_id, "armed")])
            return source, watch
        if not ContinuousState.objects.filter(job_id=job_id, enabled=True).exists():
            break
        if ContinuousState.objects.filter(job_id=job_id, lease_expires__lt=timezone.now()).exists():
            break  # lapsed: the old runner died
        time.sleep(0.05)
    watch.close()
    source.close()
    return None


def services_token() -> str:
    from .sink import _token

    return _token()


class Runner:
    """One task's worth of following a source (see the module's docstring)."""

    def __init__(
        self, job: MigrationJob, state: ContinuousState, token: str, stop, early=None
    ) -> None:
        self.job, self.state, self.token, self.stop = job, state, token, stop
        self.early = early  # (source, watch) opened before the lease, at a hand-over
        self.opts = job.options or {}
        self.deletes = self.opts.get("deletes", "keep")
        self.reconcile_every = timedelta(
            minutes=float(self.opts.get("reconcile_minutes", RECONCILE_MINUTES))
        )
        self.mappings = [
            engine_scan.Mapping(m.position, m.source_path.strip("/"), m.destination_prefix)
            for m in job.mappings.order_by("position")
        ] or [engine_scan.Mapping(0, "", "")]
        self.coalescer = Coalescer()
        self.source: Connector | None = None
        self.destination: Connector | None = None
        self.watch = None
        self.seen = self.applied = 0  # since the last heartbeat
        self.closing = threading.Event()
        self.peers_checked = time.monotonic()
        self.successor_asked = False
        self.keeper: threading.Thread | None = None
        self.job_pass: Pass | None = None

    # the loop

    def run(self) -> bool:
        """True when this task's time is up and another should go on."""
        ends = time.monotonic() + run_seconds()
        self.keeper = threading.Thread(target=self._keep_lease, daemon=True, name="lease")
        self.keeper.start()
        self.job_pass = _sync_pass(self.job, self.state)
        self.destination = open_endpoint(self.job.destination)
        if self.early is not None:
            self.source, self.watch = self.early
        else:
            self.source = open_endpoint(self.job.source)
            self._watch_open()
        now = timezone.now()
        ContinuousState.objects.filter(pk=self.state.pk).update(
            watching_since=F("watching_since") if self.state.watching_since else now
        )
        if not self.state.last_reconcile_at:  # the first pass counts as the first one
            ContinuousState.objects.filter(pk=self.state.pk).update(last_reconcile_at=now)
        beat = 0.0
        while not self.stop.is_set():
            item = self.watch.get(timeout=0.05) if self.watch is not None else None
            while item is not None:
                self._take(item)
                item = self.watch.get(timeout=0) if self.watch is not None else None
            if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                beat = time.monotonic()
                if not self._heartbeat():
                    return False
                if beat >= ends and self._handed_over(beat - ends):
                    self._apply(self.coalescer.drain())
                    self._heartbeat()
                    return False
            if self._pass_running():
                continue  # a reconciliation is copying: changes wait for it to finish
            if self._window_closed():
                continue  # outside the job's transfer window: changes wait (the lag shows)
            due = self.coalescer.due()
            if due:
                self._apply(due)
        self._apply(self.coalescer.drain())
        self._heartbeat()
        return False

    def _handed_over(self, overdue: float) -> bool:
        """Time is up: ask for a successor (once) and go on until its watch is armed, or
        HANDOVER_WAIT has passed (then its lease lapses and the reaper sends one)."""
        from django.core.cache import cache

        if not self.successor_asked:
            self.successor_asked = True
            cache.set(_handover_key(self.job.pk, "wanted"), self.token, HANDOVER_WAIT * 2)
            cache.delete(_handover_key(self.job.pk, "armed"))
            enqueue("jobs.tasks.continuous_run", self.job.pk)
            return False
        armed = cache.get(_handover_key(self.job.pk, "armed"))
        return bool(armed) or overdue > handover_seconds()

    def _take(self, item) -> None:
        if isinstance(item, WatchError):
            self._watch_error(f"{item.kind}: {item.message}")
            return
        self.coalescer.add(item)
        self.seen += 1

    def _watch_open(self) -> None:
        try:
            self.watch = _open_watch(self.job, self.source)
        except StorageError as exc:
            self.watch = None
            self._watch_error(f"the watch could not start: {exc}")

    def _watch_error(self, message: str) -> None:
        """Changes may have been lost: record it, reconcile, and watch again."""
        now = timezone.now()
        ContinuousState.objects.filter(pk=self.state.pk).update(
            last_error=message[:2000], last_error_at=now, reconcile_due=True
        )
        services.event_add(
            job_id=self.job.pk, level=EventLevel.WARNING, staff_only=True,
            message=f"Continuous mode: the watch of the source failed ({message}); "
            "a reconciliation pass will catch what it missed.",
        )  # fmt: skip
        if self.watch is not None:
            self.watch.close()
        self._watch_open()

    def _keep_lease(self) -> None:
        """The lease, renewed from a thread of its own: copying a large change holds the
        loop (and its heartbeat) for longer than the lease lasts."""
        try:
            while not self.closing.wait(HEARTBEAT_SECONDS):
                expires = timezone.now() + timedelta(seconds=lease_seconds())
                mine = ContinuousState.objects.filter(pk=self.state.pk, lease_owner=self.token)
                mine.filter(enabled=True).update(lease_expires=expires)
        except Exception:  # noqa: BLE001 - the loop's heartbeat keeps it too
            log.exception("continuous mode: renewing the runner's lease failed")
        finally:
            connection.close()

    def close(self) -> None:
        self.closing.set()
        if self.keeper is not None:
            self.keeper.join(timeout=10)
        if self.watch is not None:
            self.watch.close()
        for conn in (self.source, self.destination):
            if conn is not None:
                conn.close()
        ContinuousState.objects.filter(pk=self.state.pk, lease_owner=self.token).update(
            lease_owner="", lease_expires=None
        )
        state = ContinuousState.objects.get(pk=self.state.pk)
        if not state.enabled and state.sync_pass_id:
            _close_sync_pass(state)
        connection.close()

    # the state shown, the lease, reconciliation

    def _window_closed(self) -> bool:
        """Whether the job (or its pool) is outside its transfer window now: asked again
        every few seconds, and only while changes wait."""
        if not self.coalescer.pending:
            return False
        at = time.monotonic()
        if at - getattr(self, "_window_at", float("-inf")) >= WINDOW_RECHECK_SECONDS:
            self._window_at = at
            self._closed = not windows.job_window(job_id=self.job.pk).open
        return self._closed

    def _pass_running(self) -> bool:
        return (
            MigrationJob.objects.filter(pk=self.job.pk, state__in=JOB_ACTIVE).exists()
            if self.coalescer.pending
            else False
        )

    def _heartbeat(self) -> bool:
        """Keep the lease, show the state, start or read reconciliations. False when the
        job left continuous mode or another runner holds it."""
        now = timezone.now()
        minute = str(int(now.timestamp() // 60))
        state = ContinuousState.objects.get(pk=self.state.pk)
        if not state.enabled or state.lease_owner != self.token:
            return False
        if time.monotonic() - self.peers_checked >= PEERS_SECONDS:
            # another job's runner that died is sent again by any live runner, before
            # the reaper's schedule (once a minute) comes round
            self.peers_checked = time.monotonic()
            continuous_due()
        minutes = {
            k: {m: n for m, n in (state.minutes or {}).get(k, {}).items()
                if int(m) > int(minute) - 60}
            for k in ("seen", "applied")
        }  # fmt: skip
        for k, n in (("seen", self.seen), ("applied", self.applied)):
            if n:
                minutes[k][minute] = minutes[k].get(minute, 0) + n
        oldest = self.coalescer.oldest()
        updates = {
            "lease_expires": now + timedelta(seconds=lease_seconds()),
            "minutes": minutes,
            "changes_seen": F("changes_seen") + self.seen,
            "changes_applied": F("changes_applied") + self.applied,
            "oldest_unapplied_at": (
                now - timedelta(seconds=time.monotonic() - oldest) if oldest else None
            ),
        }
        if self.seen:
            updates["last_change_at"] = now
        if state.watching_since is None:
            updates["watching_since"] = now
        self.seen = self.applied = 0
        updates.update(self._reconcile(state, now))
        ContinuousState.objects.filter(pk=state.pk, lease_owner=self.token).update(**updates)
        self.state = state
        return True

    def _reconcile(self, state: ContinuousState, now) -> dict:
        """Start a catch-up pass when one is due; read what a finished one found."""
        if state.reconcile_pass_id:
            p = Pass.objects.get(pk=state.reconcile_pass_id)
            if p.state == PassState.RUNNING:
                return {}
            found = {
                "pass": p.number,
                "copied": p.copied,
                "deleted": getattr(p, "deleted_at_source", 0),
                "failed": p.failed,
            }
            missed = found["copied"] + found["deleted"]
            services.event_add(
                job_id=self.job.pk,
                message=f"Continuous mode: reconciliation pass {p.number} found {missed} "
                f"change(s) that notifications missed ({found['copied']} copied, "
                f"{found['deleted']} deleted at the source).",
            )
            return {"reconcile_pass": None, "last_reconcile_at": now,
                    "last_reconcile_found": found}  # fmt: skip
        job = MigrationJob.objects.get(pk=self.job.pk)
        if state.reconcile_after:  # started: its pass, once the queue has made it
            started = (
                Pass.objects.filter(job=job, number__gt=state.reconcile_after)
                .exclude(kind=PassKind.SYNC)
                .order_by("number")
                .first()
            )
            if started is not None:
                return {"reconcile_pass": started, "reconcile_after": 0}
            if job.state not in JOB_ACTIVE:  # refused or cancelled before it began
                return {"reconcile_after": 0}
            return {}
        due = state.reconcile_due or (
            state.last_reconcile_at is not None
            and now - state.last_reconcile_at >= self.reconcile_every
        )
        if not due or job.state not in JOB_FINISHED:
            return {}
        after = Pass.objects.filter(job=job).aggregate(n=Max("number"))["n"] or 0
        try:
            services.job_start(job=job)
        except JobStateError:
            return {}
        services.event_add(
            job_id=job.pk,
            message="Continuous mode: a reconciliation pass compares the source with the "
            "destination, for changes that notifications may have missed.",
        )
        return {"reconcile_due": False, "reconcile_after": after}

    # applying changes

    def _mapping_of(self, path: str) -> engine_scan.Mapping | None:
        for m in self.mappings:
            if not m.source_path or path == m.source_path or path.startswith(m.source_path + "/"):
                return m
        return None

    def _known_dest(self, source_path: str) -> str:
        row = (
            FileItem.objects.filter(job_id=self.job.pk, source_path=source_path)
            .exclude(dest_path="")
            .order_by("-id")
            .values_list("dest_path", flat=True)
            .first()
        )
        return row or ""

    def _apply(self, changes: list[Change]) -> None:
        if not changes:
            return
        planner = engine_scan.Planner(
            job_id=self.job.pk,
            pass_id=self.job_pass.pk,
            sanitizer=sanitizer_for(self.job),
            filters=filters_for(self.job),
        )
        rows: list[engine_scan.Row] = []
        self._planned: set[str] = set()
        after: list[Callable[[], None]] = []  # deletions of old names once copies are made
        for ch in changes:
            try:
                self._plan(ch, planner, rows, after)
            except StorageError as exc:
                services.event_add(
                    job_id=self.job.pk, level=EventLevel.ERROR, path=ch.path,
                    message=f"Continuous mode: {ch.kind} {ch.path} could not be applied: {exc}",
                )  # fmt: skip
        if rows:
            self._copy(rows)
        for step in after:
            step()
        self.applied += len(changes)

    def _plan(self, ch: Change, planner, rows: list, after: list) -> None:
        src, dst = self.source, self.destination
        if ch.kind == "deleted":
            self._delete(ch.path)
            return
        path = ch.new_path if ch.kind == "moved" else ch.path
        mapping = self._mapping_of(path)
        if mapping is None:
            if ch.kind == "moved":  # moved out of what the job copies
                self._delete(ch.path)
            return
        try:
            entry = src.stat(path)
        except NotFound:
            return  # gone again: its deletion follows
        items = [entry]
        if entry.is_dir and ch.kind != "moved":
            items += [i for i in src.scan(path) if not isinstance(i, ScanError)]
        planned = [planner.plan(mapping, i) for i in items]
        if ch.kind == "moved":
            old = self._known_dest(ch.path)
            new = planned[0].dest_path
            if old and new and old != new:
                if getattr(dst.capabilities, "rename", False):
                    dst.move(old, new)  # then copied below: found unchanged, so verified
                    if entry.is_dir:
                        items += [i for i in src.scan(path) if not isinstance(i, ScanError)]
                        planned = [planner.plan(mapping, i) for i in items]
                elif self.deletes in ("mirror", "trash"):
                    after.append(lambda old=old, p=ch.path: self._delete(p, dest=old))
        for row, item in zip(planned, items, strict=True):
            if item.path in self._planned:  # a folder's scan and its own file's change
                continue
            self._planned.add(item.path)
            known = self._known_dest(item.path) if ch.kind == "modified" else ""
            if known:
                row.dest_path = known
            rows.append(row)

    def _delete(self, source_path: str, dest: str = "") -> None:
        """Deleted at the source: the job's deletion policy applied to its copy by
        migrator.engine.deletes.apply, the one deletion path (keep: recorded and kept;
        mirror: deleted; trash: moved to .migrator-trash/<pass>/), each outcome recorded
        as a Deletion of the SYNC pass, as jobs.deletions records a catch-up pass's."""
        dest = dest or self._known_dest(source_path)
        if not dest:
            return
        policy = self.deletes if self.deletes in deletes.POLICIES else deletes.KEEP
        gone = self._gone(dest, source_path, policy)
        outcomes = deletes.apply(self.destination, gone, policy, self.job_pass.number)
        self._record_deletions(gone, outcomes)
        failed = [o for o in outcomes if o.action == deletes.FAILED]
        if failed:
            services.event_add(
                job_id=self.job.pk, level=EventLevel.ERROR, path=source_path,
                message=f"Continuous mode: the copy of deleted {source_path} could not be "
                f"removed: {failed[0].message}",
            )  # fmt: skip
            return
        done = {
            deletes.KEEP: "is kept (deletions are not propagated for this job)",
            deletes.MIRROR: "was deleted",
            deletes.TRASH: "was moved to the trash",
        }[policy]
        services.event_add(
            job_id=self.job.pk, path=source_path,
            message=f"Continuous mode: {source_path} was deleted at the source; its copy {done}.",
        )  # fmt: skip

    def _gone(self, dest: str, source_path: str, policy: str) -> list[deletes.Gone]:
        """The copy (a file, or a folder with what is in it at the destination)."""
        try:
            entry = self.destination.stat(dest)
        except NotFound:
            return [deletes.Gone(dest, "file", 0, source_path, True)]  # already gone
        top = deletes.Gone(dest, "dir" if entry.is_dir else "file", entry.size, source_path, True)
        if not entry.is_dir or policy == deletes.KEEP:
            return [top]
        inside = [i for i in self.destination.scan(dest) if not isinstance(i, ScanError)]
        return [top] + [
            deletes.Gone(i.path, "dir" if i.is_dir else "file", i.size, "", True) for i in inside
        ]

    def _record_deletions(
        self, gone: list[deletes.Gone], outcomes: list[deletes.DeleteOutcome]
    ) -> None:
        """One Deletion row per object in the SYNC pass (a path deleted again replaces
        its row), and the pass's deletion counters."""
        by_path = {g.dest_path: g for g in gone}
        files = [o for o in outcomes if by_path[o.dest_path].kind != "dir"]
        with transaction.atomic():
            Deletion.objects.filter(
                job_pass=self.job_pass, dest_path__in=[o.dest_path for o in outcomes]
            ).delete()
            Deletion.objects.bulk_create(
                Deletion(
                    job_id=self.job.pk, job_pass=self.job_pass, dest_path=o.dest_path,
                    source_path=by_path[o.dest_path].source_path,
                    kind=ItemKind.DIR if by_path[o.dest_path].kind == "dir" else ItemKind.FILE,
                    size=by_path[o.dest_path].size, ours=True, action=o.action,
                    reason=o.reason, message=o.message[:2000], trash_path=o.trash_path,
                )
                for o in outcomes
            )  # fmt: skip
            Pass.objects.filter(pk=self.job_pass.pk).update(
                deleted_at_source=F("deleted_at_source") + len(files),
                deletes_done=F("deletes_done")
                + sum(o.action in (deletes.DELETED, deletes.TRASHED) for o in files),
                deletes_failed=F("deletes_failed")
                + sum(o.action == deletes.FAILED for o in outcomes),
            )

    def _copy(self, rows: list[engine_scan.Row]) -> None:
        """The rows into the SYNC pass (a path seen before is set pending again), one
        batch leased to us, copied now with the database BatchSink."""
        from .sink import BatchSink

        job_pass = self.job_pass
        by_key = {r.dest_key: r for r in rows if r.dest_key}
        rows = list(by_key.values()) + [r for r in rows if not r.dest_key]
        with transaction.atomic():
            existing = dict(
                FileItem.objects.filter(job_pass=job_pass, dest_key__in=list(by_key)).values_list(
                    "dest_key", "id"
                )
            )
            again = [r for r in rows if r.dest_key in existing]
            new = [r for r in rows if r.dest_key not in existing]
            old_states = {}
            for r in again:
                r.pk = existing[r.dest_key]
                old = FileItem.objects.filter(pk=r.pk).values_list("state", "kind").first()
                old_states[r.pk] = old
                FileItem.objects.filter(pk=r.pk).update(
                    state=r.state, reason=r.reason, message=r.message, size=r.size,
                    mtime_ns=r.mtime_ns, attempts=0, dest_path=r.dest_path,
                )  # fmt: skip
            insert_rows(new)
            counts = {"seen": 0, "pending": 0, "excluded": 0, "failed": 0, "copied": 0,
                      "unchanged": 0, "bytes_seen": 0, "folders_seen": 0}  # fmt: skip
            for r in new:
                if r.kind == ItemKind.FILE:
                    counts["seen"] += 1
                    counts["bytes_seen"] += r.size
                    if r.state in counts:
                        counts[r.state] += 1
                else:
                    counts["folders_seen"] += 1
            for r in again:
                was, kind = old_states[r.pk]
                if kind == ItemKind.FILE:
                    if was in counts:
                        counts[was] -= 1
                    if r.state in counts:
                        counts[r.state] += 1
            pending = [r for r in rows if r.state == ItemState.PENDING]
            batch = None
            updates = {k: F(k) + n for k, n in counts.items() if n}
            if pending:
                ids = [r.pk for r in pending]
                batch = Batch.objects.create(
                    job_id=self.job.pk, job_pass=job_pass, first_id=min(ids), last_id=max(ids),
                    files=len(pending), bytes=sum(r.size for r in pending),
                    state=BatchState.LEASED, lease_owner=self.token, attempts=1,
                    lease_expires=timezone.now() + timedelta(seconds=LEASE_BATCH),
                )  # fmt: skip
                updates["batches_total"] = F("batches_total") + 1
            if updates:
                Pass.objects.filter(pk=job_pass.pk).update(**updates)
        if batch is None:
            return
        tasks = [
            CopyTask(
                item_id=r.pk,
                source_path=r.source_path,
                dest_path=r.dest_path,
                kind=r.kind,
                size=r.size,
                mtime_ns=r.mtime_ns,
            )  # fmt: skip
            for r in sorted(pending, key=lambda r: (r.kind != ItemKind.DIR, r.pk))
        ]
        on_exists = self.job.on_exists
        policy = (
            Policy(on_exists)
            if on_exists in ("newer", "keep_both", "overwrite")
            else (Policy.SKIP_IDENTICAL)
        )
        stop = SimpleNamespace(stop=threading.Event())
        sink = BatchSink(batch, self.job, self.token, stop)
        # the job's bwlimit and its window's limit, the lower, shared with its workers
        bucket = windows.shared_bucket_for(job=self.job)
        with bucket or contextlib.nullcontext():
            self._run_batch(tasks, policy, stop, sink, bucket)

    def _run_batch(self, tasks, policy, stop, sink, bucket) -> None:
        run_batch(
            tasks,
            source=lambda: open_endpoint(self.job.source),
            destination=lambda: open_endpoint(self.job.destination),
            options=CopyOptions(
                policy=policy,
                threads=max(1, min(len(tasks), settings.MIGRATOR_COPY_THREADS)),
                retry_attempts=settings.MIGRATOR_RETRY_ATTEMPTS,
                backoff=settings.MIGRATOR_RETRY_BACKOFF,
                should_stop=stop.stop.is_set,
                shared_rate=bucket,
            ),
            sink=sink,
        )
