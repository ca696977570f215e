"""Reads: who may see which job (the one place that decides it), progress from counters
(never COUNT(*) over the manifest), summaries, keyset pages of the manifest and events."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from dataclasses import fields as dataclass_fields
from datetime import datetime
from typing import NamedTuple

from django.db import connection
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Window
from django.db.models.functions import Coalesce, RowNumber
from django.shortcuts import get_object_or_404
from django.utils import timezone

from accounts.selectors import sees_all_customers

from . import fixes, permissions, plain
from .choices import (
    CONNECTION_REASONS,
    JOB_FINISHED,
    EventLevel,
    ItemKind,
    ItemState,
    JobState,
    PassKind,
    Reason,
)
from .models import Batch, Endpoint, Event, FileItem, MigrationJob, Pass, ProgressSample, Tally

FINISHED = JOB_FINISHED
PAGE_SIZE = 100
MANIFEST_COLUMNS = ["id", "kind", "source_path", "dest_path", "size", "mtime_ns", "state",
                    "reason", "message", "attempts", "md5", "crc32c"]  # fmt: skip
EVENT_COLUMNS = ["id", "created_at", "level", "message", "path"]


# --- who sees what: every portal page, report, CSV and API view asks these, and answers
# 404 for anything outside them, so ids cannot be probed --------------------------------


def _of_visible_customers(queryset: QuerySet, user) -> QuerySet:
    """All rows for staff, none for nobody, else the rows of the user's customers."""
    if sees_all_customers(user):
        return queryset
    if not (user and user.is_authenticated and user.is_active):
        return queryset.none()
    return queryset.filter(customer__memberships__user=user)


def jobs_visible_to(user) -> QuerySet[MigrationJob]:
    """Migration jobs `user` may see: all for staff, their customers' for viewers."""
    return _of_visible_customers(MigrationJob.objects.all(), user)


def endpoints_visible_to(user) -> QuerySet[Endpoint]:
    return _of_visible_customers(Endpoint.objects.all(), user)


def job_get_for(*, user, pk: int) -> MigrationJob:
    """One job `user` may see, or Http404 (never 403: ids must not be probeable)."""
    return get_object_or_404(
        # the continuous-mode panel reads job.continuous on every job page: joined here
        jobs_visible_to(user).select_related("customer", "source", "destination", "continuous"),
        pk=pk,
    )


def pass_prior(job_pass: Pass) -> Pass | None:
    """The pass a catch-up pass compares with: the job's latest earlier copy pass whose
    scan finished (its manifest says what was at the source and what we wrote)."""
    return (
        Pass.objects.filter(
            job_id=job_pass.job_id,
            number__lt=job_pass.number,
            kind__in=(PassKind.COPY, PassKind.RETRY),
            scan_finished=True,
        )
        .order_by("-number")
        .first()
    )


def passes_count() -> Coalesce:
    """For .annotate(): the job's passes so far, as a subquery (a Count over a join would
    be multiplied by the membership join of jobs_visible_to)."""
    counted = (
        Pass.objects.filter(job=OuterRef("pk"))
        .order_by()
        .values("job")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)


def job_events_for(*, user, job: MigrationJob) -> QuerySet[Event]:
    """The job's events that `user` may read: viewers do not see staff-only events."""
    return events_queryset(job_id=job.pk, staff=sees_all_customers(user))


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h {m:02d}m"


def latest_samples(pass_ids) -> dict[int, list[ProgressSample]]:
    """The last two progress samples of each pass, newest first, in one query (a list of
    jobs asks once, whatever its length)."""
    ids = [pk for pk in pass_ids if pk is not None]
    if not ids:
        return {}
    newest = Window(RowNumber(), partition_by=F("job_pass_id"), order_by=F("id").desc())
    rows = (
        ProgressSample.objects.filter(job_pass_id__in=ids)
        .annotate(newest=newest)
        .filter(newest__lte=2)
        .order_by("job_pass_id", "-id")
    )
    found: dict[int, list[ProgressSample]] = {}
    for sample in rows:
        found.setdefault(sample.job_pass_id, []).append(sample)
    return found


def job_progress(
    *, job: MigrationJob, job_pass: Pass | None = None, samples: list | None = None
) -> dict:
    """Everything a progress bar needs, from the pass counters and the last two samples
    (read here unless given: `latest_samples` reads them for many passes at once)."""
    p = job_pass or (
        Pass.objects.filter(pk=job.current_pass_id).first() if job.current_pass_id else None
    )
    if p is None:
        return {
            "seen": 0, "done": 0, "fraction": 0.0, "bytes_fraction": 0.0, "bytes_seen": 0,
            "bytes_done": 0, "bytes_done_h": "0 B", "bytes_seen_h": "0 B", "rate_h": "—",
            "files_rate": None, "bytes_rate": None, "avg_files_rate": None, "eta_seconds": None,
            "eta_h": "—", "pass": None,
        }  # fmt: skip
    done = p.copied + p.unchanged + p.excluded + p.failed
    elapsed = ((p.finished_at or timezone.now()) - p.started_at).total_seconds()
    avg_files = done / elapsed if elapsed > 0 else None
    avg_bytes = p.bytes_done / elapsed if elapsed > 0 else None
    if samples is None:
        samples = list(ProgressSample.objects.filter(job_pass=p).order_by("-id")[:2])
    files_rate, bytes_rate = avg_files, avg_bytes
    if len(samples) == 2 and p.finished_at is None:
        dt = (samples[0].at - samples[1].at).total_seconds()
        if dt > 0:
            files_rate = (samples[0].files_done - samples[1].files_done) / dt
            bytes_rate = (samples[0].bytes_done - samples[1].bytes_done) / dt
    eta = None
    if p.finished_at is None and p.scan_finished and p.pending and files_rate:
        eta = p.pending / files_rate
    return {
        "pass": p,
        "seen": p.seen,
        "done": done,
        "pending": p.pending,
        "fraction": done / p.seen if p.seen else (1.0 if p.scan_finished else 0.0),
        "bytes_fraction": p.bytes_done / p.bytes_seen if p.bytes_seen else 0.0,
        "bytes_seen": p.bytes_seen,
        "bytes_done": p.bytes_done,
        "bytes_seen_h": human_bytes(p.bytes_seen),
        "bytes_done_h": human_bytes(p.bytes_done),
        "files_rate": files_rate,
        "bytes_rate": bytes_rate,
        "avg_files_rate": avg_files,
        "avg_bytes_rate": avg_bytes,
        "rate_h": f"{files_rate:,.0f} files/s · {human_bytes(bytes_rate or 0)}/s"
        if files_rate
        else "—",
        "avg_rate_h": f"{avg_files:,.0f} files/s · {human_bytes(avg_bytes or 0)}/s"
        if avg_files
        else "—",
        "eta_seconds": eta,
        "eta_h": human_duration(eta) if eta is not None else "—",
        "elapsed_h": human_duration(elapsed),
        "waiting": _waiting(p),  # "waiting for confirmation of N deletions", or ""
    }


def job_public_error(job: MigrationJob) -> str:
    """Why a failed job could not start, in the plain words customers read (jobs.plain):
    never job.error, which names hosts and accounts. One query, for failed jobs only."""
    if job.state != JobState.FAILED:
        return ""
    event = (
        Event.objects.filter(
            job=job,
            staff_only=False,
            level=EventLevel.ERROR,
            message__startswith=plain.CANNOT_START,
        )
        .order_by("-id")
        .values_list("message", flat=True)
        .first()
    )
    return event or f"{plain.CANNOT_START}."


def job_summary(*, job: MigrationJob) -> dict:
    """The CLI's --json object: state and the counts of the job's current pass."""
    p = Pass.objects.filter(pk=job.current_pass_id).first() if job.current_pass_id else None
    failed_by_reason: dict[str, int] = {}
    if p is not None and p.failed:
        failed_by_reason = dict(
            FileItem.objects.filter(job_pass=p, kind=ItemKind.FILE, state=ItemState.FAILED)
            .values_list("reason")
            .annotate(n=Count("id"))
            .values_list("reason", "n")
        )
    fields = ("seen", "copied", "unchanged", "excluded", "failed", "pending")
    return {
        "job_id": job.pk,
        "state": job.state,
        "pass": p.number if p else None,
        **{f: getattr(p, f) if p else 0 for f in fields},
        # a catch-up pass: new and changed at the source, changed at the destination
        **{f: getattr(p, f) if p else 0 for f in ("delta_new", "delta_changed", "conflicts")},
        "failed_by_reason": failed_by_reason,
        "folders_seen": p.folders_seen if p else 0,
        "folders_created": p.folders_created if p else 0,
        "folders_failed": p.folders_failed if p else 0,
        "bytes_seen": p.bytes_seen if p else 0,
        "bytes_copied": p.bytes_copied if p else 0,
        "renamed": _renamed_by_rule(p),
        "excluded_by_reason": _excluded_by_reason(p),
        "error": job.error,
        **_deletion_fields(p),
        **({"assessment": _assessment_summary(p.assessment)} if p and p.assessment else {}),
        **permissions.summary_fields(job=job, job_pass=p),
    }


def _waiting(p: Pass) -> str:
    if not p.deletes_state:  # no query for a pass without deletions
        return ""
    from .deletions import waiting_words  # deletions reads this module

    return waiting_words(p)


def _deletion_fields(p: Pass | None) -> dict:
    """Deleted at source: ours found gone, deleted (or trashed) and failed at the
    destination, by action, and what the pass waits for."""
    if p is None:
        return {"deleted_at_source": 0, "deletes_done": 0, "deletes_failed": 0,
                "deletes_state": "", "deletions": {}, "waiting": ""}  # fmt: skip
    from .deletions import deletion_counts

    return {
        "deleted_at_source": p.deleted_at_source,
        "deletes_done": p.deletes_done,
        "deletes_failed": p.deletes_failed,
        "deletes_state": p.deletes_state,
        "deletions": deletion_counts(p),
        "waiting": _waiting(p),
    }


def _renamed_by_rule(p: Pass | None) -> dict[str, int]:
    """Renames by rule, from the rows that carry rules (few: a scan of those only)."""
    if p is None:
        return {}
    counts: dict[str, int] = {}
    rows = FileItem.objects.filter(job_pass=p).exclude(rules="").values_list("rules", flat=True)
    for rules in rows.iterator(chunk_size=5000):
        for rule in rules.split(","):
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def _excluded_by_reason(p: Pass | None) -> dict[str, int]:
    if p is None or not p.excluded:
        return {}
    return dict(
        FileItem.objects.filter(job_pass=p, state=ItemState.EXCLUDED)
        .exclude(reason="assessment_only")
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )


def _assessment_summary(figures: dict) -> dict:
    keys = ("files", "folders", "bytes", "renames_by_rule", "refused_by_rule",
            "excluded_by_reason", "too_large", "empty_folders", "recent_7_days", "unreadable",
            "estimate")  # fmt: skip
    summary = {k: figures.get(k) for k in keys}
    if "permissions" in figures:  # SID figures, when the job migrates permissions
        summary["permissions"] = figures["permissions"]
    return summary


# --- the manifest and the events, keyset paged and streamed (the admin's pages and CSVs):
# never COUNT(*) or OFFSET over millions of rows, pages go by id -------------------------


@dataclass(frozen=True)
class ManifestFilter:
    state: str = ""
    reason: str = ""
    prefix: str = ""
    kind: str = ""

    @classmethod
    def from_query(cls, query) -> ManifestFilter:
        return cls(**{f.name: query.get(f.name, "") for f in dataclass_fields(cls)})


def manifest_queryset(*, job_pass: Pass, filters: ManifestFilter) -> QuerySet[FileItem]:
    qs = FileItem.objects.filter(job_pass=job_pass)
    if filters.state:
        qs = qs.filter(state=filters.state)
    if filters.reason:
        qs = qs.filter(reason=filters.reason)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.prefix:
        qs = qs.filter(job_id=job_pass.job_id)
        qs = starting_with(qs, "source_path", filters.prefix)
    return qs


def starting_with(qs: QuerySet[FileItem], field: str, prefix: str) -> QuerySet[FileItem]:
    """A prefix match an index answers: LIKE 'p%' on PostgreSQL's text_pattern_ops
    indexes, a range on SQLite (whose LIKE ignores case and skips the index)."""
    if connection.vendor == "postgresql":
        return qs.filter(**{f"{field}__startswith": prefix})
    return qs.filter(**{f"{field}__gte": prefix, f"{field}__lt": prefix + "\U0010ffff"})


def manifest_page(
    *, job_pass: Pass, filters: ManifestFilter, after: int = 0, limit: int = PAGE_SIZE
) -> tuple[list[FileItem], int | None]:
    """One page after id `after`, and the id to continue from (None on the last page)."""
    rows = list(
        manifest_queryset(job_pass=job_pass, filters=filters)
        .filter(id__gt=after)
        .order_by("id")[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].pk if more and rows else None)


def manifest_rows(*, job_pass: Pass, filters: ManifestFilter) -> Iterator[tuple]:
    """Every row, streamed in id order (for CSV)."""
    return (
        manifest_queryset(job_pass=job_pass, filters=filters)
        .order_by("id")
        .values_list(*MANIFEST_COLUMNS)
        .iterator(chunk_size=5000)
    )


def events_queryset(*, job_id: int, level: str = "", staff: bool = True) -> QuerySet[Event]:
    qs = Event.objects.filter(job_id=job_id)
    if level:
        qs = qs.filter(level=level)
    if not staff:
        qs = qs.filter(staff_only=False)
    return qs


def events_page(
    *, job_id: int, level: str = "", before: int | None = None, limit: int = PAGE_SIZE,
    staff: bool = True,
) -> tuple[list[Event], int | None]:  # fmt: skip
    qs = events_queryset(job_id=job_id, level=level, staff=staff)
    if before:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].pk if more and rows else None)


def event_rows(*, job_id: int, level: str = "", staff: bool = True) -> Iterator[tuple]:
    return (
        events_queryset(job_id=job_id, level=level, staff=staff)
        .order_by("id")
        .values_list(*EVENT_COLUMNS)
        .iterator(chunk_size=5000)
    )


def manifest_truth(*, pass_id: int) -> dict[str, int]:
    """Files of the pass by state, counted from the manifest itself: one GROUP BY over
    every row of the pass (10 s at 10M rows), the slow verification of the counters
    (`manage.py accounting_verify`, MIGRATOR_ACCOUNTING_FULL); never for progress."""
    return dict(
        FileItem.objects.filter(job_pass_id=pass_id, kind=ItemKind.FILE)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )


TALLIED = ("seen", "copied", "unchanged", "excluded", "failed", "pending")
PENDING_ROWS_MAX = 1000  # a failed check says how many, up to this


def pass_tallies(*, pass_id: int) -> dict[str, int]:
    """Files of the pass by state (and seen), summed from what each unit of work recorded
    in the transaction of the rows it wrote: the scan chunks, retries and catch-up
    decisions (Tally rows) and the batches (files recorded by state). Two aggregates over
    hundreds or thousands of rows, whatever the pass's size."""
    tallies = Tally.objects.filter(job_pass_id=pass_id).aggregate(
        **{name: Coalesce(Sum(name), 0) for name in TALLIED}
    )
    recorded = Batch.objects.filter(job_pass_id=pass_id).aggregate(
        **{name: Coalesce(Sum(f"files_{name}"), 0) for name in TALLIED[1:5]}
    )
    for name, n in recorded.items():
        tallies[name] += n
        tallies["pending"] -= n  # a recorded file left pending
    return tallies


def accounting_mismatch(*, job_pass: Pass, full: bool = False) -> dict[str, tuple[int, int]]:
    """The pass's counters that disagree with what was counted, as {counter: (counter's
    value, counted)}; {} when the identity holds. Counted from the units of work's sums
    and the pending rows on the index (constant cost), or with `full` from the manifest
    itself (one GROUP BY over the pass: the slow verification)."""
    counted = {name: getattr(job_pass, name) for name in TALLIED}
    if full:
        truth = manifest_truth(pass_id=job_pass.pk)
        truth["seen"] = sum(truth.values())
    else:
        truth = pass_tallies(pass_id=job_pass.pk)
        if not job_pass.pending:  # at a pass's end no row may be left pending
            truth["pending"] = pending_rows(pass_id=job_pass.pk) or truth["pending"]
    return {k: (v, truth.get(k, 0)) for k, v in counted.items() if v != truth.get(k, 0)}


def pending_rows(*, pass_id: int, limit: int = PENDING_ROWS_MAX) -> int:
    """Rows of the pass still pending (files or folders), counted up to `limit` on the
    (job_pass, state, id) index alone: at a pass's end there must be none."""
    return (
        FileItem.objects.filter(job_pass_id=pass_id, state=ItemState.PENDING)
        .values_list("id")[:limit]
        .count()
    )


# --- failures grouped by cause: reason x folder x the source's error text normalised, the
# largest first, each told in words (jobs.fixes). Two queries whatever the pass's size:
# the failed rows streamed (memory bounded by the number of groups), then the batches
# that say when the groups were first and last seen -------------------------------------

ERROR_GROUPS_MAX = 50  # groups held at most; the rest are one "other causes" group
ERROR_GROUP_EXAMPLES = 3
ERROR_GROUP_DEPTH = 2  # folders of an item's parent path that name its group's folder
OTHER_CAUSES = "other"
_ERROR_COLUMNS = ("id", "kind", "source_path", "dest_path", "size", "reason", "message",
                  "attempts")  # fmt: skip
# failures the copy records without counting an attempt (the connector could not be
# opened, permissions): all others with no attempt were met by the scan
_COPY_ONLY_REASONS = {*CONNECTION_REASONS, Reason.ACL_FAILED, Reason.DENY_ACE, "unavailable"}
_NORMALISED_CACHE = 10_000  # distinct error texts remembered while streaming


@dataclass
class ErrorGroup:
    """Failed files and folders of one cause. `error` is the source's error text with
    what names one item replaced: staff only; customers read `cause` and `fix`."""

    key: str
    reason: str
    folder: str
    error: str
    count: int = 0
    files: int = 0
    bytes: int = 0
    attempts: int = 0  # the most any of its items was tried
    examples: list[str] = dataclass_field(default_factory=list)
    seen_at_scan: bool = False
    first_copy_id: int | None = None
    last_copy_id: int | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    cause: str = ""
    fix: str = ""

    @property
    def other(self) -> bool:
        return self.key == OTHER_CAUSES

    @property
    def reason_label(self) -> str:
        if self.other:
            return "Other causes"
        return Reason(self.reason).label if self.reason in Reason.values else self.reason

    @property
    def words(self) -> str:
        return f"{self.cause} {self.fix}"

    @property
    def bytes_h(self) -> str:
        return human_bytes(self.bytes)


class ItemRef(NamedTuple):
    pk: int
    size: int


def error_group_key(reason: str, folder: str, error: str) -> str:
    """A group's name in URLs and forms: the same cause has the same key in every pass."""
    return hashlib.sha256(f"{reason}\x1f{folder}\x1f{error}".encode()).hexdigest()[:16]


def error_folder(source_path: str) -> str:
    """'Finance/2024/q1/a.txt' -> 'Finance/2024': the first folders of the parent path."""
    parent = source_path.rpartition("/")[0]
    return "/".join(parent.split("/")[:ERROR_GROUP_DEPTH])


def _failed_rows(job_pass: Pass) -> Iterator[tuple]:
    return (
        FileItem.objects.filter(job_pass=job_pass, state=ItemState.FAILED)
        .order_by("id")
        .values_list(*_ERROR_COLUMNS)
        .iterator(chunk_size=5000)
    )


def _grouped(job_pass: Pass, limit: int) -> Iterator[tuple[tuple, ErrorGroup]]:
    """Each failed row of the pass, in id order, with its group: the first `limit` causes
    met are groups of their own, the rest share the "other causes" group."""
    groups: dict[tuple[str, str, str], ErrorGroup] = {}
    other: ErrorGroup | None = None
    normalised: dict[str, str] = {}
    for row in _failed_rows(job_pass):
        _pk, _kind, source_path, dest_path, _size, reason, message, _attempts = row
        text = fixes.strip_paths(message, source_path, dest_path) if message else ""
        error = normalised.get(text)
        if error is None:
            if len(normalised) >= _NORMALISED_CACHE:
                normalised.clear()
            error = normalised[text] = fixes.normalise(text)
        cause = (reason, error_folder(source_path), error)
        group = groups.get(cause)
        if group is None:
            if len(groups) < limit:
                group = groups[cause] = ErrorGroup(error_group_key(*cause), *cause)
            else:
                other = other or ErrorGroup(OTHER_CAUSES, "", "", "")
                group = other
        yield row, group


def error_groups(
    *, job_pass: Pass | None, profile: str = "", limit: int = ERROR_GROUPS_MAX
) -> list[ErrorGroup]:
    """The pass's failed files and folders grouped by cause, the largest first (the
    "other causes" group last). `profile`: the job's naming profile, for the words."""
    if job_pass is None:
        return []
    found: dict[str, ErrorGroup] = {}
    for (pk, kind, path, _dest, size, reason, _message, attempts), group in _grouped(
        job_pass, limit
    ):
        found[group.key] = group
        group.count += 1
        if kind == ItemKind.FILE:
            group.files += 1
            group.bytes += size
        group.attempts = max(group.attempts, attempts)
        if len(group.examples) < ERROR_GROUP_EXAMPLES:
            group.examples.append(path)
        if attempts == 0 and reason not in _COPY_ONLY_REASONS:
            group.seen_at_scan = True
        else:
            group.first_copy_id = group.first_copy_id or pk
            group.last_copy_id = pk
    groups = list(found.values())
    _error_group_times(job_pass, groups)
    for group in groups:
        if group.other:
            group.cause = f"Failures of more causes than the {limit} groups shown."
            group.fix = "Filter the errors below by reason or folder, or download them as CSV."
        else:
            group.cause, group.fix = fixes.advice(
                group.reason, group.error, folder=group.folder, attempts=group.attempts,
                profile=profile,
            )  # fmt: skip
    groups.sort(key=lambda g: (g.other, -g.count, -g.bytes, g.reason, g.folder, g.error))
    return groups


def _error_group_times(job_pass: Pass, groups: list[ErrorGroup]) -> None:
    """First and last seen: the manifest has no time, so the finish of the batch that
    holds the group's first and last item (the latest, when a retry copied it again), and
    the pass's start for what the scan met. One query."""
    ids = {i for g in groups for i in (g.first_copy_id, g.last_copy_id) if i is not None}
    finished: dict[int, datetime] = {}
    if ids:
        holds = Q()
        for pk in ids:
            holds |= Q(first_id__lte=pk, last_id__gte=pk)
        batches = Batch.objects.filter(holds, job_pass=job_pass, finished_at__isnull=False)
        for first, last, at in batches.values_list("first_id", "last_id", "finished_at"):
            for pk in ids:
                if first <= pk <= last and (pk not in finished or at > finished[pk]):
                    finished[pk] = at
    start = job_pass.started_at
    for g in groups:
        first = finished.get(g.first_copy_id or 0, start)
        last = finished.get(g.last_copy_id or 0, start)
        g.first_seen = start if g.seen_at_scan else first
        g.last_seen = last if g.last_copy_id is not None else start


def error_group_files(
    *, job_pass: Pass, key: str, limit: int = ERROR_GROUPS_MAX
) -> tuple[ErrorGroup | None, list[ItemRef]]:
    """One group (as error_groups makes them; None when no failure has that cause) and
    its failed files that can be copied again, those with a destination path, in id
    order."""
    found: ErrorGroup | None = None
    files: list[ItemRef] = []
    for row, group in _grouped(job_pass, limit):
        if group.key != key:
            continue
        found = group
        if row[1] == ItemKind.FILE and row[3]:
            files.append(ItemRef(row[0], row[4]))
    return found, files


# --- pass history and the verify pass (issue 15) -----------------------------------------

DELTA_COUNTERS = ("delta_new", "delta_changed", "deleted_at_source", "conflicts")


@dataclass(frozen=True)
class PassRow:
    """One pass as the history shows it; a delta counter is None where the pass (or this
    version of the schema) has none, shown as "—"."""

    id: int
    number: int
    kind: str
    kind_label: str
    state: str
    state_label: str
    started_at: datetime | None
    finished_at: datetime | None
    duration: str
    seen: int
    copied: int
    unchanged: int
    excluded: int
    failed: int
    pending: int
    bytes_copied: int
    bytes_copied_human: str
    delta_new: int | None
    delta_changed: int | None
    deleted_at_source: int | None
    conflicts: int | None


def pass_history_row(p: Pass, now: datetime | None = None) -> PassRow:
    now = now or timezone.now()
    end = p.finished_at or (now if p.state == "running" else None)
    seconds = (end - p.started_at).total_seconds() if end and p.started_at else None
    return PassRow(
        id=p.pk, number=p.number, kind=p.kind, kind_label=p.get_kind_display(),
        state=p.state, state_label=p.get_state_display(), started_at=p.started_at,
        finished_at=p.finished_at, duration=human_duration(seconds), seen=p.seen,
        copied=p.copied, unchanged=p.unchanged, excluded=p.excluded, failed=p.failed,
        pending=p.pending, bytes_copied=p.bytes_copied,
        bytes_copied_human=human_bytes(p.bytes_copied),
        **{name: getattr(p, name, None) for name in DELTA_COUNTERS},
    )  # fmt: skip


def pass_history(*, job: MigrationJob, limit: int = 200) -> list[PassRow]:
    """The job's passes, newest first (one query; at most `limit`: a job has few)."""
    now = timezone.now()
    return [pass_history_row(p, now) for p in job.passes.order_by("-number")[:limit]]


def verify_known_hashes(*, job_pass_id: int, job_id: int, tasks: list) -> dict[int, tuple]:
    """For a verify pass's files: the hashes an earlier pass of the job recorded for the
    same source path, size and mtime (what we wrote; the file has not changed since), so
    a destination that reports md5/crc32c is compared by hash. {item id: hashes}."""
    files = {t.source_path: t for t in tasks if t.kind == ItemKind.FILE}
    if not files:
        return {}
    known: dict[int, tuple] = {}
    rows = (
        FileItem.objects.filter(job_id=job_id, source_path__in=list(files))
        .exclude(job_pass_id=job_pass_id)
        .exclude(md5="", crc32c="")
        .order_by("id")  # the latest wins
        .values_list("source_path", "size", "mtime_ns", "md5", "crc32c")
    )
    for path, size, mtime_ns, md5, crc32c in rows:
        task = files[path]
        if size == task.size and mtime_ns == task.mtime_ns:
            known[task.item_id] = tuple((a, h) for a, h in (("md5", md5), ("crc32c", crc32c)) if h)
    return known
