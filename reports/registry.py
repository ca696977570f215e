"""The reports of a job, one entry each: its page (template and what the template shows)
and its CSV. The report view, the CSV download and `manage.py migrator_report` look a
report up here, so a report added here is on the page, in the download and on the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from jobs import selectors as job_selectors
from jobs.choices import STATE_COLOURS, EventLevel, ItemState, Reason
from jobs.models import MigrationJob, Pass
from migrator.web.query import query_int

from . import charts, selectors, tables
from .tables import Csv, Filters


@dataclass(frozen=True)
class ReportQuery:
    """What one report is asked for: whose job and pass, the filters, and who asks."""

    job: MigrationJob
    job_pass: Pass | None
    filters: Filters
    staff: bool
    cursor: str = ""  # where the page continues
    listing: str = ""  # one of the report's lists, as CSV
    issues_only: bool = False  # permissions: only the paths with a deny, narrowing, unmapped

    @classmethod
    def from_query(cls, query, *, job: MigrationJob, job_pass: Pass | None,
                   staff: bool) -> ReportQuery:  # fmt: skip
        return cls(
            job=job,
            job_pass=job_pass,
            filters=Filters.from_query(query),
            staff=staff,
            cursor=query.get("cursor", ""),
            listing=query.get("list", ""),
            issues_only=query.get("issues") == "1",
        )


@dataclass(frozen=True)
class Report:
    template: str
    page: Callable[[ReportQuery], dict]  # the template's context
    csv: Callable[[ReportQuery], Csv]  # KeyError for a list it does not have
    lists: Callable[[], Iterable[str]] = tuple  # the names its CSV lists go by


# --- the pages ----------------------------------------------------------------------------


def _manifest(kind: str) -> Report:
    """files, errors and renames: keyset pages of the manifest, filtered."""

    def page(q: ReportQuery) -> dict:
        rows, next_cursor = ([], "")
        if q.job_pass is not None:
            rows, next_cursor = tables.manifest_page(q.job_pass, kind, q.filters, q.cursor,
                                                     staff=q.staff)  # fmt: skip
        return {"rows": rows, "next_cursor": next_cursor, "states": ItemState.choices,
                "reasons": Reason.choices, "sorts": tables.SORTS}  # fmt: skip

    def csv(q: ReportQuery) -> Csv:
        if q.job_pass is None:
            return Csv(tables.FILE_COLUMNS, lambda: iter(()))
        job_pass = q.job_pass
        return Csv(
            tables.FILE_COLUMNS,
            lambda: tables.manifest_rows(job_pass, kind, q.filters, staff=q.staff),
        )

    return Report(f"reports/{kind}.html", page, csv)


def _errors() -> Report:
    """The failed rows, and above them the failures grouped by cause (on the first page;
    its CSV list "groups")."""
    manifest = _manifest("errors")

    def page(q: ReportQuery) -> dict:
        groups = None if q.cursor else tables.error_groups(q.job, q.job_pass, staff=q.staff)
        return {**manifest.page(q), "groups": groups}

    def csv(q: ReportQuery) -> Csv:
        if not q.listing:
            return manifest.csv(q)
        if q.listing != "groups":
            raise KeyError(q.listing)
        return Csv(tables.group_columns(staff=q.staff),
                   lambda: tables.group_rows(q.job, q.job_pass, staff=q.staff))  # fmt: skip

    return Report(manifest.template, page, csv, lambda: ("groups",))


def _summary_page(q: ReportQuery) -> dict:
    return {**tables.summary(q.job, q.job_pass), "charts": _summary_charts(q.job_pass)}


def _summary_charts(job_pass: Pass | None) -> list:
    if job_pass is None:
        return []
    t = selectors.pass_throughput(job_pass=job_pass)
    return [
        charts.line_chart("Files done over time", t.files_done),
        charts.line_chart("Bytes done over time", t.bytes_done, unit="B"),
        charts.line_chart("Throughput (files/s)", t.files_rate),
        charts.bar_chart("Files by state", t.by_state, colours=STATE_COLOURS),
    ]


def _events_page(q: ReportQuery) -> dict:
    rows, next_cursor = tables.event_page(q.job, q.filters, q.cursor, staff=q.staff)
    return {"rows": rows, "next_cursor": next_cursor, "levels": EventLevel.choices}


def _assessment_page(q: ReportQuery) -> dict:
    ap = tables.assessment_pass(q.job)
    figures = ap.assessment if ap else None
    context = {"figures": figures, "assessment_pass": ap, "lists": tables.ASSESSMENT_LISTS}
    if figures:
        by_files = [(ext, n) for ext, n, _bytes in figures["extensions"]]
        context["charts"] = [
            charts.bar_chart("Files by size", figures["histogram"]),
            charts.bar_chart("Top extensions by files", by_files),
            charts.bar_chart("Top extensions by bytes", figures["extensions_by_bytes"]),
        ]
    return context


def _permissions_page(q: ReportQuery) -> dict:
    from . import permissions  # the ACL reading, for this report only

    rows, next_cursor = ([], "")
    if q.job_pass is not None:
        rows, next_cursor = permissions.page(q.job_pass, q.cursor, q.issues_only)
    return {"rows": rows, "next_cursor": next_cursor, "issues_only": q.issues_only,
            "acl": permissions.summary(q.job_pass), "lists": permissions.LISTS}  # fmt: skip


def _cutover_page(q: ReportQuery) -> dict:
    from jobs import cutover

    flow = cutover.cutover_of(q.job)
    report = cutover.ready_report(flow) if flow and flow.step == "ready" else None
    rows = []
    if report is not None:
        rows = [{"label": label, "p": p, "h": job_selectors.pass_history_row(p)}
                for label, p in report.passes]  # fmt: skip
    return {"cutover": flow, "report": report, "report_passes": rows}


def _cutover_csv(q: ReportQuery) -> Csv:
    from jobs import cutover

    flow = cutover.cutover_of(q.job)
    rows = (lambda: cutover.report_rows(flow)) if flow is not None else (lambda: iter(()))
    return Csv(("section", "item", "value"), rows)


def _deletions_page(q: ReportQuery) -> dict:
    from jobs import deletions
    from jobs.choices import DeletionAction

    rows, next_cursor = ([], "")
    if q.job_pass is not None:
        rows, next_cursor = deletions.deletions_page(job_pass=q.job_pass, cursor=q.cursor,
                                                     staff=q.staff)  # fmt: skip
    counts = deletions.deletion_counts(q.job_pass)
    return {
        "rows": rows,
        "next_cursor": next_cursor,
        "policy": deletions.policy_of(q.job.options),
        "counts": [(a, label, counts[a]) for a, label in DeletionAction.choices if counts.get(a)],
        "waiting": deletions.waiting_words(q.job_pass),
    }


def _deletions_csv(q: ReportQuery) -> Csv:
    from jobs import deletions

    return Csv(deletions.REPORT_COLUMNS,
               lambda: deletions.deletion_rows(job_pass=q.job_pass, staff=q.staff))  # fmt: skip


# --- conflicts: objects changed at the destination since a pass wrote them ------------------

CONFLICT_COLUMNS = ("source_path", "dest_path", "size", "state", "what_differed", "what_was_done")


def _conflicts(job_pass: Pass | None):
    from jobs.choices import Change
    from jobs.models import FileItem

    if job_pass is None or not job_pass.conflicts:  # the counter spares the walk
        return FileItem.objects.none()
    return FileItem.objects.filter(job_pass=job_pass, change=Change.CONFLICT)


def _conflict_words(message: str) -> tuple[str, str]:
    """(what differed, what was done), as the catch-up pass wrote them in the message."""
    from migrator.engine.delta import SEPARATOR

    differed, _, done = message.partition(SEPARATOR)
    return differed, done


def _conflicts_page(q: ReportQuery) -> dict:
    qs = _conflicts(q.job_pass).order_by("id")
    if (after := query_int(q.cursor)) is not None:
        qs = qs.filter(id__gt=after)
    rows = list(qs[: tables.PAGE_SIZE + 1])
    more = len(rows) > tables.PAGE_SIZE
    rows = rows[: tables.PAGE_SIZE]
    for r in rows:
        r.differed, r.done = _conflict_words(r.message)
    next_cursor = str(rows[-1].pk) if more and rows else ""
    return {"rows": rows, "next_cursor": next_cursor}


def _conflict_rows(job_pass: Pass | None) -> Iterable[tuple]:
    rows = (
        _conflicts(job_pass)
        .order_by("id")
        .values_list("source_path", "dest_path", "size", "state", "message")
        .iterator(chunk_size=5000)
    )
    for src, dst, size, state, message in rows:
        yield (src, dst, size, state, *_conflict_words(message))


def _permission_lists() -> Iterable[str]:
    from . import permissions

    return permissions.LISTS


REPORTS: dict[str, Report] = {
    "summary": Report(
        "reports/summary.html",
        _summary_page,
        lambda q: Csv(("item", "value"), lambda: tables.summary_rows(q.job, q.job_pass)),
    ),
    "files": _manifest("files"),
    "errors": _errors(),
    "renames": _manifest("renames"),
    "passes": Report(
        "reports/passes.html",
        lambda q: {"passes": list(q.job.passes.order_by("number"))},
        lambda q: Csv(tables.PASS_COLUMNS, lambda: tables.pass_rows(q.job)),
    ),
    "events": Report(
        "reports/events.html",
        _events_page,
        lambda q: Csv(tables.EVENT_COLUMNS,
                      lambda: tables.event_rows(q.job, q.filters, staff=q.staff)),
    ),
    "assessment": Report(
        "reports/assessment.html",
        _assessment_page,
        lambda q: tables.assessment_csv(q.job, q.listing),
        lambda: tables.ASSESSMENT_LISTS,
    ),
    "permissions": Report(
        "reports/permissions.html",
        _permissions_page,
        lambda q: tables.permissions_csv(q.job_pass, q.listing),
        _permission_lists,
    ),
    "deletions": Report("reports/deletions.html", _deletions_page, _deletions_csv),
    "cutover": Report("reports/cutover.html", _cutover_page, _cutover_csv),
    "conflicts": Report(
        "reports/conflicts.html",
        _conflicts_page,
        lambda q: Csv(CONFLICT_COLUMNS, lambda: _conflict_rows(q.job_pass)),
    ),
}  # fmt: skip
