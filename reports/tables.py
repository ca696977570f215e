"""The rows of a job's reports, defined once: the same rows feed the page, the CSV download
and `manage.py migrator_report` (reports.registry says which report uses which). Pages go
by keyset (id or path), never OFFSET or COUNT(*)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.db.models import Count, F, Min, Q, QuerySet
from django.db.models.functions import Collate

from jobs import plain
from jobs import selectors as job_selectors
from jobs.choices import ItemState
from jobs.models import Event, FileItem, MigrationJob, Pass
from migrator.web.query import query_int

PAGE_SIZE = 100
SORTS = ("id", "-id", "path")


def mtime_text(mtime_ns: int) -> str:
    """ISO 8601 in UTC to the second; gmtime and strftime, half the cost of a datetime's
    isoformat, per row of a CSV of millions."""
    if not mtime_ns:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(mtime_ns // 1_000_000_000))


@dataclass(frozen=True)
class Filters:
    state: str = ""
    reason: str = ""
    ext: str = ""
    prefix: str = ""
    level: str = ""
    sort: str = "id"

    @classmethod
    def from_query(cls, query) -> Filters:
        sort = query.get("sort", "id")
        return cls(
            state=query.get("state", "")[:20],
            reason=query.get("reason", "")[:40],
            ext=query.get("ext", "").lstrip(".")[:20],
            prefix=query.get("prefix", ""),
            level=query.get("level", "")[:10],
            sort=sort if sort in SORTS else "id",
        )


# md5 is empty where the copy did not compute it (a destination that checks crc32c only)
FILE_COLUMNS = ("source_path", "dest_path", "kind", "size", "mtime", "state", "reason",
                "attempts", "md5", "renamed_from", "rules", "message", "crc32c",
                "change")  # fmt: skip


def manifest(job_pass: Pass, report: str, f: Filters) -> QuerySet[FileItem]:
    qs = FileItem.objects.filter(job_pass=job_pass)
    if report == "errors":
        qs = qs.filter(state=ItemState.FAILED)
    elif report == "renames":
        qs = qs.filter(~Q(rules="") | Q(state=ItemState.EXCLUDED)).exclude(reason="assessment_only")
    if f.state:
        qs = qs.filter(state=f.state)
    if f.reason:
        qs = qs.filter(reason=f.reason)
    if f.ext:
        qs = qs.filter(source_path__endswith=f".{f.ext}")
    if f.prefix:
        qs = job_selectors.starting_with(qs.filter(job_id=job_pass.job_id), "source_path", f.prefix)
    return qs


def manifest_page(
    job_pass: Pass, report: str, f: Filters, cursor: str = "", *, staff: bool = True
) -> tuple[list[FileItem], str]:
    """One page and the cursor of the next ('' at the end). The cursor is the last id, or
    'path\\x1fid' when sorted by path."""
    qs = manifest(job_pass, report, f)
    if f.sort == "path":
        qs = by_path(qs, cursor)
    elif f.sort == "-id":
        if (before := query_int(cursor)) is not None:
            qs = qs.filter(id__lt=before)
        qs = qs.order_by("-id")
    else:
        if (after := query_int(cursor)) is not None:
            qs = qs.filter(id__gt=after)
        qs = qs.order_by("id")
    rows = list(qs[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if not staff:
        for row in rows:
            row.message = plain.item_message(row.reason, row.message)
    if not more or not rows:
        return rows, ""
    last = rows[-1]
    return rows, (f"{last.source_path}\x1f{last.pk}" if f.sort == "path" else str(last.pk))


def path_key() -> Collate | F:
    """The source path in byte order, as the index item_pass_path (jobs migration 0015)
    holds it: COLLATE "C" on PostgreSQL, SQLite's default BINARY collation."""
    if connection.vendor == "postgresql":
        return Collate("source_path", "C")
    return F("source_path")


def by_path(qs: QuerySet[FileItem], cursor: str = "") -> QuerySet[FileItem]:
    """Rows of one pass by path, then id, from the cursor 'path\\x1fid' on: a walk of the
    (pass, path, id) index from where the page starts, never a sort of the pass."""
    qs = qs.alias(path_key=path_key())
    path, _, pk = cursor.rpartition("\x1f")
    if (after := query_int(pk)) is not None:
        # the range starts the index walk; the OR only breaks ties between equal paths
        qs = qs.filter(path_key__gte=path).filter(Q(path_key__gt=path) | Q(id__gt=after))
    return qs.order_by("path_key", "id")


def manifest_rows(
    job_pass: Pass, report: str, f: Filters, *, staff: bool = True
) -> Iterator[tuple]:
    qs = manifest(job_pass, report, f)
    qs = by_path(qs) if f.sort == "path" else qs.order_by("-id" if f.sort == "-id" else "id")
    rows = (
        qs
        .values_list(
            "source_path",
            "dest_path",
            "kind",
            "size",
            "mtime_ns",
            "state",
            "reason",
            "attempts",
            "md5",
            "renamed_from",
            "rules",
            "message",
            "crc32c",
            "change",
        )  # fmt: skip
        .iterator(chunk_size=5000)
    )
    for r in rows:
        message = r[11] if staff else plain.item_message(r[6], r[11])
        yield (*r[:4], mtime_text(r[4]), *r[5:11], message, r[12], r[13])


# --- the errors report's groups: failures by cause, largest first (jobs.selectors) ----------

GROUP_COLUMNS = ("reason", "folder", "items", "files", "bytes", "first_seen", "last_seen",
                 "example_1", "example_2", "example_3", "cause", "fix")  # fmt: skip
GROUP_ERROR_COLUMN = "error"  # the source's error text, normalised: staff only


def error_groups(job: MigrationJob, job_pass: Pass | None, *, staff: bool) -> list:
    """The groups as a page shows them: customers read the words, never the error text
    (it can name a host, a share or an account)."""
    groups = job_selectors.error_groups(job_pass=job_pass, profile=job_profile(job))
    if not staff:
        for group in groups:
            group.error = ""
    return groups


def job_profile(job: MigrationJob) -> str:
    options = job.options if isinstance(job.options, dict) else {}
    return str(options.get("profile") or "")


def group_columns(*, staff: bool) -> tuple[str, ...]:
    return (*GROUP_COLUMNS, GROUP_ERROR_COLUMN) if staff else GROUP_COLUMNS


def group_rows(job: MigrationJob, job_pass: Pass | None, *, staff: bool) -> Iterator[tuple]:
    for g in error_groups(job, job_pass, staff=staff):
        examples = (*g.examples, "", "", "")[:3]
        seen = [at.isoformat(timespec="seconds") if at else "" for at in (g.first_seen,
                                                                          g.last_seen)]  # fmt: skip
        row = ("other" if g.other else g.reason, g.folder, g.count, g.files, g.bytes, *seen,
               *examples, g.cause, g.fix)  # fmt: skip
        yield (*row, g.error) if staff else row


PASS_COLUMNS = ("number", "kind", "state", "started", "finished", "seen", "copied",
                "unchanged", "excluded", "failed", "pending", "bytes_seen", "bytes_copied",
                "folders_seen", "folders_created", "folders_failed")  # fmt: skip


def pass_rows(job: MigrationJob) -> Iterator[tuple]:
    for p in job.passes.order_by("number"):
        yield (p.number, p.kind, p.state, p.started_at.isoformat(timespec="seconds"),
               p.finished_at.isoformat(timespec="seconds") if p.finished_at else "",
               p.seen, p.copied, p.unchanged, p.excluded, p.failed, p.pending, p.bytes_seen,
               p.bytes_copied, p.folders_seen, p.folders_created, p.folders_failed)  # fmt: skip


EVENT_COLUMNS = ("time", "level", "message", "path")


def events(job: MigrationJob, f: Filters, *, staff: bool) -> QuerySet[Event]:
    return job_selectors.events_queryset(job_id=job.pk, level=f.level, staff=staff)


def event_page(job: MigrationJob, f: Filters, cursor: str, *, staff: bool):
    qs = events(job, f, staff=staff)
    if (before := query_int(cursor)) is not None:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id")[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, (str(rows[-1].pk) if more and rows else "")


def event_rows(job: MigrationJob, f: Filters, *, staff: bool) -> Iterator[tuple]:
    rows = (
        events(job, f, staff=staff)
        .order_by("id")
        .values_list("created_at", "level", "message", "path")
    )
    for at, level, message, path in rows.iterator(chunk_size=5000):
        yield (at.isoformat(timespec="seconds"), level, message, path)


def summary(job: MigrationJob, job_pass: Pass | None) -> dict:
    """Counts from the pass counters; top errors from one GROUP BY over failed rows."""
    progress = job_selectors.job_progress(job=job, job_pass=job_pass)
    top_errors = []
    if job_pass is not None and (job_pass.failed or job_pass.folders_failed):
        top_errors = list(
            FileItem.objects.filter(job_pass=job_pass, state=ItemState.FAILED)
            .values("reason")
            .annotate(n=Count("id"), example=Min("source_path"))
            .order_by("-n")[:10]
        )
    duration = None
    if job_pass is not None:
        end = job_pass.finished_at or datetime.now(UTC)
        duration = (end - job_pass.started_at).total_seconds()
    return {"progress": progress, "top_errors": top_errors, "duration": duration}


def summary_rows(job: MigrationJob, job_pass: Pass | None) -> Iterator[tuple]:
    s = summary(job, job_pass)
    p = s["progress"]
    yield ("job", job.name)
    yield ("customer", job.customer.name)
    yield ("state", job.get_state_display())
    yield ("passes", job.passes.count())
    if job_pass is not None:
        for field in ("seen", "copied", "unchanged", "excluded", "failed", "pending",
                      "bytes_seen", "bytes_copied", "folders_seen", "folders_created",
                      "folders_failed"):  # fmt: skip
            yield (field, getattr(job_pass, field))
    yield ("duration", job_selectors.human_duration(s["duration"]))
    yield ("average throughput", p.get("avg_rate_h", "—"))
    yield ("current throughput", p["rate_h"])
    yield ("ETA", p["eta_h"])
    for err in s["top_errors"]:
        yield (f"failed: {err['reason']}", f"{err['n']} (e.g. {err['example']})")


ASSESSMENT_LISTS = {
    "histogram": (("size", "files"), lambda a: a.get("histogram", [])),
    "extensions": (("extension", "files", "bytes"), lambda a: a.get("extensions", [])),
    "deepest": (("depth", "path"), lambda a: a.get("deepest", [])),
    "longest": (("bytes", "path"), lambda a: a.get("longest", [])),
    "renames": (("rule", "from", "to"),
                lambda a: [(rule, src, dst) for rule, ex in a.get("rename_examples", {}).items()
                           for src, dst in ex]),
    "refused": (("rule", "path"),
                lambda a: [(rule, p) for rule, ex in a.get("refused_examples", {}).items()
                           for p in ex]),
    "empty_folders": (("path",), lambda a: [(p,) for p in a.get("empty_folder_examples", [])]),
    "too_large": (("path", "bytes"), lambda a: a.get("too_large_examples", [])),
    "unreadable": (("path", "reason"), lambda a: a.get("unreadable_examples", [])),
    # SID figures, when the job migrates permissions
    "unmapped_identities": (("identity", "sid", "reason"),
                            lambda a: (a.get("permissions") or {}).get("unmapped_identities", [])),
    "orphaned_sids": (("sid", "detail"),
                      lambda a: (a.get("permissions") or {}).get("orphaned_sids", [])),
}  # fmt: skip


def assessment_pass(job: MigrationJob) -> Pass | None:
    return job.passes.filter(assessment__isnull=False).order_by("-number").first()


def assessment_counts_rows(figures: dict) -> Iterator[tuple]:
    for key in ("files", "folders", "bytes", "too_large", "empty_folders", "recent_7_days",
                "unreadable"):  # fmt: skip
        yield ("total", key, figures.get(key, 0))
    for group in ("renames_by_rule", "refused_by_rule", "excluded_by_reason"):
        for rule, n in (figures.get(group) or {}).items():
            yield (group, rule, n)
    acl = figures.get("permissions") or {}
    for key in ("distinct_acls", "distinct_sids", "orphaned", "unmapped", "with_deny",
                "protected_folders", "unreadable"):  # fmt: skip
        if key in acl:
            yield ("permissions", key, acl[key])
    estimate = figures.get("estimate") or {}
    yield ("estimate", "seconds", estimate.get("seconds"))
    yield ("estimate", "basis", estimate.get("basis"))


@dataclass(frozen=True)
class Csv:
    header: tuple[str, ...]
    rows: Callable[[], Iterator[tuple]]


def assessment_csv(job: MigrationJob, listing: str = "") -> Csv:
    """The assessment's counts, or one of its lists (KeyError for an unknown list)."""
    ap = assessment_pass(job)
    figures = ap.assessment if ap else {}
    if listing:
        header, rows = ASSESSMENT_LISTS[listing]
        return Csv(header, lambda: iter(rows(figures)))
    return Csv(("group", "item", "value"), lambda: assessment_counts_rows(figures))


def permissions_csv(job_pass: Pass | None, listing: str = "") -> Csv:
    """Per path (default), or the "summary" / "issues" lists (see reports.permissions)."""
    from . import permissions

    if not listing:
        return Csv(permissions.COLUMNS, lambda: permissions.rows(job_pass))
    header = permissions.LISTS[listing]
    rows = permissions.summary_rows if listing == "summary" else permissions.issue_rows
    return Csv(header, lambda: rows(job_pass))


def path_search(passes: dict[int, int], prefix: str, *, limit: int) -> QuerySet[FileItem]:
    """Manifest rows whose source path starts with `prefix`, in the given {job: pass}:
    answered by the (job, source_path) index."""
    qs = FileItem.objects.filter(job_id__in=list(passes), job_pass_id__in=list(passes.values()))
    qs = job_selectors.starting_with(qs, "source_path", prefix)
    return qs.order_by("job_id", "source_path")[:limit]


def name_search(passes: dict[int, int], name: str, *, limit: int) -> QuerySet[FileItem]:
    """Files and folders whose name starts with `name`, in any case, anywhere in the given
    {job: pass}: answered by the (pass, name) index."""
    qs = FileItem.objects.filter(job_pass_id__in=list(passes.values()))
    qs = job_selectors.starting_with(qs, "name_key", name.casefold())
    return qs.order_by("job_pass_id", "name_key", "id")[:limit]
