"""Deleted at source: what the catch-up pass found at the destination with no source
entry (`gone_record`), and the job's deletion policy applied at the pass's end.

`options.deletes`: "keep" (default: what we wrote is recorded as deleted at source and
kept; extras we never wrote are neither touched nor recorded), "mirror" (every gone
object is deleted, so the destination equals the source) or "trash" (moved to
`.migrator-trash/<pass number>/<path>` at the destination). `options.max_delete` ("5%"
default, of the files at the destination before the pass, or a count): a pass that would
delete or trash more deletes nothing and waits for staff to confirm or skip.

services.pass_finish asks `pass_hold` before it finishes a pass; the worker task
jobs.tasks.apply_deletions runs `deletions_apply`. This module does not import
jobs.services (which imports it)."""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from accounts.choices import AuditAction
from accounts.services import audit_record
from migrator.engine import deletes as engine
from migrator.engine.deletes import Gone
from migrator.storage import StorageError
from migrator.web.query import query_int

from .choices import DeletionAction, EventLevel, ItemKind, ItemState, PassState
from .dispatch import enqueue
from .models import Deletion, Event, FileItem, MigrationJob, Pass
from .notifications import notify

POLICY_KEY, CAP_KEY = "deletes", "max_delete"
DEFAULT_POLICY, DEFAULT_CAP = engine.KEEP, "5%"

# Pass.deletes_state
AWAITING, CONFIRMED, SKIPPED, DONE = "awaiting_confirmation", "confirmed", "skipped", "done"

CHUNK = 500
OPEN = (DeletionAction.PENDING, DeletionAction.AWAITING_CONFIRMATION)
NOT_APPLIED_AGENT = "not_applied_agent"
EXCLUDED = "excluded"
EXCLUDED_WORDS = "excluded by the job's filters at the source: kept at the destination"
_EXCLUDED = {"action": DeletionAction.KEPT, "reason": EXCLUDED, "message": EXCLUDED_WORDS}
SKIPPED_REASON = "skipped"
CONFLICT_KEPT = "conflict_kept"  # migrator.engine.delta's: a keep-both conflict's own version


class DeletionStateError(Exception):
    """The job has no deletions in the state the action needs (said in words)."""


# --- options --------------------------------------------------------------------------------


def policy_of(options: dict | None) -> str:
    """The job's `options.deletes`, checked (ValueError, in words, for a bad value)."""
    value = (options or {}).get(POLICY_KEY) or DEFAULT_POLICY
    if value not in engine.POLICIES:
        allowed = ", ".join(engine.POLICIES)
        raise ValueError(f"Unknown deletes policy “{value}”: use one of {allowed}.")
    return value


def cap_of(options: dict | None) -> tuple[str, float]:
    """The job's `options.max_delete` as ("percent", 5.0) or ("count", 100); ValueError,
    in words, for anything else."""
    raw = (options or {}).get(CAP_KEY, DEFAULT_CAP)
    if raw is None or raw == "":
        raw = DEFAULT_CAP
    bad = ValueError(
        f"max_delete “{raw}” is not a percentage (such as 5%) or a number of files (such as 100)."
    )
    if isinstance(raw, bool):
        raise bad
    if isinstance(raw, int):
        if raw < 0:
            raise bad
        return "count", raw
    if not isinstance(raw, str):
        raise bad
    text = raw.strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if not 0 <= percent <= 100 or math.isnan(percent):
                raise bad
            return "percent", percent
        count = int(text)
    except ValueError:
        raise bad from None
    if count < 0:
        raise bad
    return "count", count


def options_check(options: dict) -> None:
    """Raise ValueError, in words, for deletion options a job could not run with."""
    policy_of(options)
    cap_of(options)


# --- recording --------------------------------------------------------------------------------


def gone_record(
    *, job_pass: Pass, items: Sequence[Gone], kept: Mapping[str, str] | None = None
) -> None:
    """Store destination objects that have no source entry in this pass. Called in chunks,
    and again for the same items when the check is run again: one row per (pass, path).
    In keep mode only what we wrote is recorded (as kept); the trash folder never is.
    `kept`: {dest path: the source's keep-both path} of items that are the destination's
    own version of a conflict the job keeps both of: recorded as kept (conflict_kept),
    whatever the policy, never deleted."""
    job = MigrationJob.objects.select_related("destination").get(pk=job_pass.job_id)
    policy = policy_of(job.options)
    kept = kept or {}
    wanted = [g for g in items if not engine.in_trash(g.dest_path)]
    wanted += _folders_gone(job, job_pass, wanted)
    if policy == engine.KEEP:
        wanted = [g for g in wanted if g.ours or g.dest_path in kept]
    if not wanted:
        return
    action = DeletionAction.KEPT if policy == engine.KEEP else DeletionAction.PENDING
    excluded = _excluded_at_source(job_pass, wanted)
    with transaction.atomic():
        # one writer per pass at a time: the existing paths read below stay true
        Pass.objects.select_for_update().filter(pk=job_pass.pk).values_list("pk").first()
        ours = 0
        for start in range(0, len(wanted), CHUNK):
            chunk = {g.dest_path: g for g in wanted[start : start + CHUNK]}
            there = set(
                Deletion.objects.filter(job_pass_id=job_pass.pk, dest_path__in=list(chunk))
                .values_list("dest_path", flat=True)
            )  # fmt: skip
            new = [g for path, g in chunk.items() if path not in there]
            Deletion.objects.bulk_create(
                Deletion(
                    job_id=job_pass.job_id, job_pass_id=job_pass.pk, dest_path=g.dest_path,
                    source_path=g.source_path, size=g.size, ours=g.ours,
                    kind=ItemKind.DIR if g.kind == "dir" else ItemKind.FILE,
                    **(_conflict_kept(kept[g.dest_path]) if g.dest_path in kept
                       else _EXCLUDED if g.dest_path in excluded else {"action": action}),
                )
                for g in new
            )  # fmt: skip
            # an excluded source is not deleted: it is no longer copied
            ours += sum(1 for g in new if g.ours and g.dest_path not in excluded)
        if ours:
            Pass.objects.filter(pk=job_pass.pk).update(
                deleted_at_source=F("deleted_at_source") + ours
            )


def _conflict_kept(beside: str) -> dict[str, str]:
    where = f" as {beside}" if beside else ""
    return {
        "action": DeletionAction.KEPT,
        "reason": CONFLICT_KEPT,
        "message": "the destination's own version of a file changed there and at the "
        f"source: kept, the source's version is beside it{where} (conflicts: keep both)",
    }


def _excluded_at_source(job_pass: Pass, items: Sequence[Gone]) -> set[str]:
    """The destination paths of `items` whose source (or a folder above it) is still at
    the source but excluded by the job's filters in this pass: never deleted for that
    (rclone keeps excluded files too). The source path is the last manifest's where we
    wrote the object, else the destination path."""
    guesses = {g.dest_path: (g.source_path or g.dest_path).split("/") for g in items}
    candidates = sorted(
        {"/".join(parts[:i]) for parts in guesses.values() for i in range(1, len(parts) + 1)}
    )
    excluded: set[str] = set()
    for start in range(0, len(candidates), CHUNK):  # by the (job, source_path) index
        excluded.update(
            FileItem.objects.filter(
                job_id=job_pass.job_id, source_path__in=candidates[start : start + CHUNK],
                job_pass_id=job_pass.pk, state=ItemState.EXCLUDED,
            ).values_list("source_path", flat=True)
        )  # fmt: skip
    if not excluded:
        return set()
    return {
        dest
        for dest, parts in guesses.items()
        if any("/".join(parts[:i]) in excluded for i in range(1, len(parts) + 1))
    }


def _folders_gone(job: MigrationJob, job_pass: Pass, files: Sequence[Gone]) -> list[Gone]:
    """The folders holding `files` that have no row in this pass either (the listing the
    catch-up pass compares is of files): gone with them, ours when the last pass had them."""
    from .options import sanitizer_for
    from .selectors import pass_prior

    parents = set()
    for g in files:
        parts = g.dest_path.split("/")[:-1]
        parents.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    parents = {path for path in parents if not engine.in_trash(path)}
    if not parents:
        return []
    key = sanitizer_for(job).collision_key
    by_key = {key(path): path for path in parents}
    items = FileItem.objects.filter(dest_key__in=list(by_key))
    present = set(items.filter(job_pass_id=job_pass.pk).values_list("dest_key", flat=True))
    missing = {k: path for k, path in by_key.items() if k not in present}
    prior = pass_prior(job_pass) if missing else None
    ours = {}
    if prior is not None:
        ours = dict(
            items.filter(job_pass_id=prior.pk, dest_key__in=list(missing), kind=ItemKind.DIR)
            .values_list("dest_key", "source_path")
        )  # fmt: skip
    return [Gone(path, "dir", 0, ours.get(k, ""), k in ours) for k, path in missing.items()]


# --- at the end of the pass -------------------------------------------------------------------


def _event(job_id: int, message: str, level: str = EventLevel.INFO, staff_only=False) -> None:
    Event.objects.create(job_id=job_id, level=level, message=message, staff_only=staff_only)


def _files_before(p: Pass) -> int:
    """The files at the destination before this pass: those the last pass left there
    (copied or unchanged) and the extras found there that we never wrote."""
    from .selectors import pass_prior

    prior = pass_prior(p)
    ours = (prior.copied + prior.unchanged) if prior is not None else 0
    extras = Deletion.objects.filter(job_pass=p, ours=False, kind=ItemKind.FILE).count()
    return ours + extras


def cap_for(p: Pass, options: dict | None) -> int:
    """How many files this pass may delete (or trash) without asking."""
    unit, value = cap_of(options)
    if unit == "count":
        return int(value)
    return math.floor(_files_before(p) * value / 100)


def _verb(policy: str) -> str:
    return "move to the trash" if policy == engine.TRASH else "delete"


def pass_hold(p: Pass) -> bool:
    """Called by services.pass_finish with the pass locked, once nothing is pending: True
    while deletions keep the pass from finishing (they are being applied, or wait for
    confirmation); applies the policy's first step when they have not started."""
    if p.deletes_state in (DONE, SKIPPED):
        return False
    if p.deletes_state == AWAITING:
        return True
    if p.deletes_state == CONFIRMED:  # being applied; sent again in case its worker died
        enqueue("jobs.tasks.apply_deletions", p.pk)  # (a running one holds the lease)
        return True
    rows = Deletion.objects.filter(job_pass=p, action=DeletionAction.PENDING)
    if not rows.exists():
        if p.deleted_at_source and not p.deletes_state and _keeps(p):  # kept when recorded
            Pass.objects.filter(pk=p.pk).update(deletes_state=DONE)
            _event(
                p.job_id,
                f"Pass {p.number}: {p.deleted_at_source} object(s) deleted at the source "
                "were kept at the destination (deletions policy: keep).",
            )
        return False
    job = MigrationJob.objects.select_related("destination").get(pk=p.job_id)
    policy = policy_of(job.options)
    if policy == engine.KEEP:  # the job's policy changed since they were recorded
        rows.update(action=DeletionAction.KEPT)
        Pass.objects.filter(pk=p.pk).update(deletes_state=DONE)
        return False
    if job.agent_pool_id is not None and job.destination.kind != "gs":
        n = rows.update(
            action=DeletionAction.KEPT,
            reason=NOT_APPLIED_AGENT,
            message="the destination is reached through the on-premises agent: not applied",
        )
        Pass.objects.filter(pk=p.pk).update(deletes_state=DONE)
        _event(
            job.pk,
            f"Pass {p.number}: {n} object(s) deleted at the source were recorded but not "
            f"{'deleted' if policy == engine.MIRROR else 'moved to the trash'} at the "
            "destination: it is reached through the on-premises agent, which does not "
            "apply deletions yet.",
            EventLevel.WARNING,
        )
        return False
    files = rows.filter(kind=ItemKind.FILE).count()
    cap = cap_for(p, job.options)
    if files > cap:
        rows.update(action=DeletionAction.AWAITING_CONFIRMATION)
        Pass.objects.filter(pk=p.pk).update(deletes_state=AWAITING)
        _event(
            job.pk,
            f"Pass {p.number} would {_verb(policy)} {files} files (cap {cap}). "
            "Confirm in the admin or skip.",
            EventLevel.WARNING,
            staff_only=True,
        )
        _event(
            job.pk,
            f"Pass {p.number} is waiting for the support team to confirm {files} deletions "
            f"(more than the safety cap of {cap}).",
            EventLevel.WARNING,
        )
        notify(job, "needs_attention", message=f"Pass {p.number} would {_verb(policy)} {files} "
               f"files, more than the safety cap of {cap}: waiting for confirmation.")  # fmt: skip
        return True
    Pass.objects.filter(pk=p.pk).update(deletes_state=CONFIRMED)
    enqueue("jobs.tasks.apply_deletions", p.pk)
    return True


def _keeps(p: Pass) -> bool:
    options = MigrationJob.objects.values_list("options", flat=True).get(pk=p.job_id)
    return policy_of(options) == engine.KEEP


def awaiting_count(p: Pass | None) -> int:
    """Deletions of the pass waiting for confirmation (0 unless it waits)."""
    if p is None or p.deletes_state != AWAITING:
        return 0
    return Deletion.objects.filter(
        job_pass=p, action=DeletionAction.AWAITING_CONFIRMATION, kind=ItemKind.FILE
    ).count()


def waiting_words(p: Pass | None) -> str:
    """What the job page and progress say while the pass waits ("" when it does not)."""
    n = awaiting_count(p)
    return f"waiting for confirmation of {n} deletions" if n else ""


# --- people's decisions -----------------------------------------------------------------------


def _awaiting_pass(job: MigrationJob) -> Pass:
    p = Pass.objects.select_for_update().filter(pk=job.current_pass_id).first()
    if p is None or p.state != PassState.RUNNING or p.deletes_state != AWAITING:
        raise DeletionStateError(f"Job “{job.name}” has no deletions waiting for confirmation.")
    return p


def _said_by(job_id: int, done: str, user) -> None:
    """Staff read who did it; customers read that support did."""
    who = getattr(user, "username", None) or "the system"
    _event(job_id, f"{done} by {who}.", staff_only=True)
    _event(job_id, f"{done} by the support team." if getattr(user, "pk", None) else f"{done}.")


def deletions_confirm(job: MigrationJob, user=None) -> int:
    """Staff confirm the deletions of a pass that went over the cap: they are applied by
    a worker (jobs.tasks.apply_deletions) and the pass then finishes. Returns how many
    files will be deleted or trashed."""
    with transaction.atomic():
        p = _awaiting_pass(job)
        n = awaiting_count(p)
        Deletion.objects.filter(job_pass=p, action=DeletionAction.AWAITING_CONFIRMATION).update(
            action=DeletionAction.PENDING
        )
        Pass.objects.filter(pk=p.pk).update(deletes_state=CONFIRMED)
        _said_by(job.pk, f"Deletion of {n} files confirmed", user)
        audit_record(action=AuditAction.EDIT, obj=job, user=user,
                     detail=f"deletions confirmed: {n} file(s), pass {p.number}")  # fmt: skip
        enqueue("jobs.tasks.apply_deletions", p.pk)
    return n


def deletions_skip(job: MigrationJob, user=None) -> int:
    """Staff skip the deletions of a pass that went over the cap: nothing is deleted,
    each is recorded as kept, and the pass finishes. Returns how many were skipped."""
    with transaction.atomic():
        p = _awaiting_pass(job)
        n = awaiting_count(p)
        Deletion.objects.filter(job_pass=p, action=DeletionAction.AWAITING_CONFIRMATION).update(
            action=DeletionAction.KEPT,
            reason=SKIPPED_REASON,
            message="deletion skipped by the support team",
        )
        Pass.objects.filter(pk=p.pk).update(deletes_state=SKIPPED)
        _said_by(job.pk, f"Deletion of {n} files skipped (nothing deleted)", user)
        audit_record(action=AuditAction.EDIT, obj=job, user=user,
                     detail=f"deletions skipped: {n} file(s), pass {p.number}")  # fmt: skip
        enqueue("jobs.tasks.finish_pass", p.pk)
    return n


# --- applying (the worker task) ---------------------------------------------------------------


def _record(p: Pass, rows: list[Deletion], outcomes: list[engine.DeleteOutcome]) -> None:
    by_path = {o.dest_path: o for o in outcomes}
    done = failed = 0
    for row in rows:
        o = by_path[row.dest_path]
        row.action, row.reason, row.message = o.action, o.reason, o.message[:2000]
        row.trash_path = o.trash_path
        if row.kind == ItemKind.FILE:
            done += o.action in (engine.DELETED, engine.TRASHED)
        failed += o.action == engine.FAILED
    with transaction.atomic():
        Deletion.objects.bulk_update(rows, ["action", "reason", "message", "trash_path"])
        Pass.objects.filter(pk=p.pk).update(
            deletes_done=F("deletes_done") + done, deletes_failed=F("deletes_failed") + failed
        )


def deletions_apply(*, pass_id: int) -> None:
    """Apply the confirmed deletions of a pass at its destination (files first, then
    folders deepest first), record each outcome, and finish the pass."""
    from .connectors import open_endpoint

    token = f"deletions:{secrets.token_hex(8)}"
    if not _apply_lease(pass_id, token):
        return  # not confirmed, or another worker applies them now
    p = Pass.objects.get(pk=pass_id)
    job = MigrationJob.objects.select_related("destination").get(pk=p.job_id)
    policy = policy_of(job.options)
    pending = Deletion.objects.filter(job_pass=p, action=DeletionAction.PENDING)
    try:
        with open_endpoint(job.destination) as dst:
            files = pending.filter(kind=ItemKind.FILE).order_by("id")
            # then the folders: a path sorts after its parent's, so by path, descending,
            # deepest first
            folders = pending.filter(kind=ItemKind.DIR).order_by("-dest_path")
            for rows_of in (files, folders):
                while rows := list(rows_of[:CHUNK]):
                    if not _apply_lease(pass_id, token):
                        return  # lost (this worker was too slow): the holder goes on
                    gone = [_gone(r) for r in rows]
                    _record(p, rows, engine.apply(dst, gone, policy, p.number))
    except (StorageError, ValueError) as exc:
        n = pending.update(action=DeletionAction.FAILED, reason="connect_failed",
                           message=str(exc)[:2000])  # fmt: skip
        Pass.objects.filter(pk=p.pk).update(deletes_failed=F("deletes_failed") + n)
        _event(job.pk, f"Deletions could not be applied: {exc}", EventLevel.ERROR, staff_only=True)
    p.refresh_from_db()
    what = "deleted" if policy == engine.MIRROR else "moved to the trash"
    _event(
        job.pk,
        f"Pass {p.number}: {p.deletes_done} file(s) deleted at the source were {what} at "
        f"the destination" + (f"; {p.deletes_failed} could not be." if p.deletes_failed else "."),
        EventLevel.WARNING if p.deletes_failed else EventLevel.INFO,
    )
    with transaction.atomic():
        Pass.objects.filter(pk=p.pk, deletes_state=CONFIRMED).update(
            deletes_state=DONE, scan_lease_owner="", scan_lease_expires=None
        )
        enqueue("jobs.tasks.finish_pass", p.pk)


def _apply_lease(pass_id: int, token: str) -> bool:
    """Take (or keep) the right to apply the pass's confirmed deletions, with an expiry:
    one worker at a time, and another after a worker died. The scan's lease fields hold
    it (the scan is done by then: nothing else uses them)."""
    now = timezone.now()
    free = Q(scan_lease_expires__isnull=True) | Q(scan_lease_expires__lt=now)
    return bool(
        Pass.objects.filter(pk=pass_id, state=PassState.RUNNING, scan_finished=True,
                            deletes_state=CONFIRMED)
        .filter(free | Q(scan_lease_owner=token))
        .update(scan_lease_owner=token,
                scan_lease_expires=now + timedelta(seconds=settings.MIGRATOR_LEASE_SECONDS))
    )  # fmt: skip


def _gone(row: Deletion) -> Gone:
    return Gone(row.dest_path, row.kind, row.size, row.source_path, row.ours)


# --- reading (the Deletions report) -----------------------------------------------------------

REPORT_COLUMNS = ("path", "kind", "size", "written_by_us", "source_path", "action", "reason",
                  "message", "trash_path")  # fmt: skip
# reasons whose message is ours, in plain words; others come from the storage and can
# name a host or a share: customers read the reason code only
PLAIN_REASONS = {"", engine.ALREADY_GONE, engine.IN_TRASH, engine.UNSAFE_PATH,
                 NOT_APPLIED_AGENT, SKIPPED_REASON, EXCLUDED, CONFLICT_KEPT}  # fmt: skip
PAGE_SIZE = 100


def _shown(row: Deletion, staff: bool) -> Deletion:
    if not staff and row.reason not in PLAIN_REASONS:
        row.message = ""
    return row


def deletions_page(
    *, job_pass: Pass, cursor: str = "", staff: bool = True
) -> tuple[list[Deletion], str]:
    """One page of the pass's deletions in id order, and the next page's cursor."""
    qs = Deletion.objects.filter(job_pass=job_pass).order_by("id")
    if (after := query_int(cursor)) is not None:
        qs = qs.filter(id__gt=after)
    rows = [_shown(row, staff) for row in qs[: PAGE_SIZE + 1]]
    if len(rows) <= PAGE_SIZE:
        return rows, ""
    return rows[:PAGE_SIZE], str(rows[PAGE_SIZE - 1].pk)


def deletion_rows(*, job_pass: Pass | None, staff: bool = True):
    """Every deletion of the pass as CSV cells (REPORT_COLUMNS), streamed."""
    if job_pass is None:
        return
    qs = Deletion.objects.filter(job_pass=job_pass).order_by("id")
    for row in qs.iterator(chunk_size=2000):
        row = _shown(row, staff)
        yield (row.dest_path, row.kind, row.size, "yes" if row.ours else "no", row.source_path,
               row.action, row.reason, row.message, row.trash_path)  # fmt: skip


def deletion_counts(job_pass: Pass | None) -> dict[str, int]:
    """The pass's deletions by action (one GROUP BY: a report's head, the CLI's summary)."""
    if job_pass is None:
        return {}
    return dict(
        Deletion.objects.filter(job_pass=job_pass)
        .values_list("action")
        .annotate(n=Count("id"))
        .values_list("action", "n")
    )
