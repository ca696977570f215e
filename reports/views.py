"""Report pages and CSV downloads of a job, for staff and for the job's customer. Every
job comes through jobs.selectors.job_get_for: another customer's job is a 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.selectors import sees_all_customers
from jobs import selectors as job_selectors
from jobs.choices import JOB_ACTIVE, STATE_COLOURS, EventLevel, ItemState, JobState, Reason
from jobs.models import Pass, ProgressSample
from jobs.selectors import job_get_for, jobs_visible_to
from migrator.web.csv import csv_filename, csv_response

from . import charts, services, tables
from .models import SignOff


def _pass(job, request) -> Pass | None:
    number = request.GET.get("pass", "")
    if number.isdigit():
        return Pass.objects.filter(job=job, number=int(number)).first()
    if job.current_pass_id:
        return Pass.objects.filter(pk=job.current_pass_id).first()
    return None


@login_required
def job_report(request, pk: int, report: str = "summary"):
    if report not in tables.REPORTS:
        raise Http404("No such report.")
    job = job_get_for(user=request.user, pk=pk)
    staff = sees_all_customers(request.user)
    job_pass = _pass(job, request)
    f = tables.Filters.from_query(request.GET)
    if request.GET.get("format") == "csv":
        listing = request.GET.get("list", "")
        try:
            csv = tables.report_csv(job, report, f, staff=staff, job_pass=job_pass, listing=listing)
        except KeyError:
            raise Http404("No such list.")
        name = csv_filename("job", job.pk, report, listing)
        return csv_response(name, csv.header, csv.rows())
    query = request.GET.copy()
    query.pop("cursor", None)
    context = {
        "job": job,
        "job_pass": job_pass,
        "report": report,
        "reports": tables.REPORTS,
        "filters": f,
        "query": query.urlencode(),
        "staff": staff,
        "colour": STATE_COLOURS.get(job.state, "#6b7280"),
        "signoff": SignOff.objects.filter(job=job).select_related("user").first(),
        "can_accept": not staff and job.state in services.ACCEPTABLE,
        "live_active": job.state in (*JOB_ACTIVE, JobState.PAUSED),
    }
    cursor = request.GET.get("cursor", "")
    if report in tables.MANIFEST_REPORTS:
        rows, next_cursor = (
            tables.manifest_page(job_pass, report, f, cursor, staff=staff) if job_pass else ([], "")
        )
        context.update(rows=rows, next_cursor=next_cursor, states=ItemState.choices,
                       reasons=Reason.choices, sorts=tables.SORTS)  # fmt: skip
    elif report == "events":
        rows, next_cursor = tables.event_page(job, f, cursor, staff=staff)
        context.update(rows=rows, next_cursor=next_cursor, levels=EventLevel.choices)
    elif report == "passes":
        context["passes"] = list(job.passes.order_by("number"))
    elif report == "summary":
        context.update(tables.summary(job, job_pass))
        context["charts"] = _summary_charts(job_pass)
    elif report == "assessment":
        ap = tables.assessment_pass(job)
        figures = ap.assessment if ap else None
        context.update(figures=figures, assessment_pass=ap, lists=tables.ASSESSMENT_LISTS)
        if figures:
            by_files = [(ext, n) for ext, n, _bytes in figures["extensions"]]
            context["charts"] = [
                charts.bar_chart("Files by size", figures["histogram"]),
                charts.bar_chart("Top extensions by files", by_files),
                charts.bar_chart("Top extensions by bytes", figures["extensions_by_bytes"]),
            ]
    elif report == "permissions":
        from . import permissions

        issues_only = request.GET.get("issues") == "1"
        rows, next_cursor = ([], "")
        if job_pass is not None:
            rows, next_cursor = permissions.page(job_pass, cursor, issues_only)
        context.update(rows=rows, next_cursor=next_cursor, issues_only=issues_only,
                       acl=permissions.summary(job_pass), lists=permissions.LISTS)  # fmt: skip
    return render(request, f"reports/{report}.html", context)


def _summary_charts(job_pass: Pass | None) -> list:
    if job_pass is None:
        return []
    samples = list(
        ProgressSample.objects.filter(job_pass=job_pass)
        .order_by("id")
        .values_list("at", "files_done", "bytes_done")[:2000]
    )
    rates = [
        (b[0], (b[1] - a[1]) / max((b[0] - a[0]).total_seconds(), 1e-3))
        for a, b in zip(samples, samples[1:], strict=False)
    ]
    states = [("copied", job_pass.copied), ("unchanged", job_pass.unchanged),
              ("excluded", job_pass.excluded), ("failed", job_pass.failed),
              ("pending", job_pass.pending)]  # fmt: skip
    return [
        charts.line_chart("Files done over time", [(t, f) for t, f, _b in samples]),
        charts.line_chart("Bytes done over time", [(t, b) for t, _f, b in samples], unit="B"),
        charts.line_chart("Throughput (files/s)", rates),
        charts.bar_chart("Files by state", states, colours=STATE_COLOURS),
    ]


@login_required
@require_POST
def job_accept(request, pk: int):
    """The customer viewer accepts a finished migration (staff cannot do it for them)."""
    job = job_get_for(user=request.user, pk=pk)
    if sees_all_customers(request.user):
        raise Http404("Only the customer accepts a migration.")
    try:
        services.job_sign_off(job=job, user=request.user, note=request.POST.get("note", "")[:2000])
        messages.success(request, "Thank you: the migration is accepted.")
    except services.SignOffError as exc:
        messages.error(request, str(exc))
    return redirect("reports:job", pk=job.pk)


@login_required
def job_completion(request, pk: int):
    """One printable page: final counts and the sign-off."""
    job = job_get_for(user=request.user, pk=pk)
    job_pass = _pass(job, request)
    context = {
        "job": job,
        "job_pass": job_pass,
        "passes": list(job.passes.order_by("number")),
        "signoff": SignOff.objects.filter(job=job).select_related("user").first(),
        **tables.summary(job, job_pass),
    }
    return render(request, "reports/completion.html", context)


SEARCH_LIMIT = 50


@login_required
def search(request):
    """Find files across the jobs the user may see, each answered from an index: by the
    beginning of a name in any case ("budget"), and by the beginning of a path
    ("Finance/2025/budget")."""
    query = request.GET.get("q", "").strip().lstrip("/")[:1000]
    results = []
    if query:
        jobs = jobs_visible_to(request.user).exclude(current_pass=None)
        passes = dict(jobs.values_list("pk", "current_pass_id"))
        found = []
        if "/" not in query:  # a name: matched anywhere in the tree
            found += tables.name_search(passes, query, limit=SEARCH_LIMIT).select_related("job")
        found += tables.path_search(passes, query, limit=SEARCH_LIMIT).select_related("job")
        results = list({r.pk: r for r in found}.values())[:SEARCH_LIMIT]  # names first
    return render(request, "reports/search.html", {"q": query, "results": results,
                                                   "limit": SEARCH_LIMIT})  # fmt: skip


@login_required
def job_live(request, pk: int):
    """The progress card, polled by htmx every few seconds while the job runs (a
    constant handful of queries per poll: the job, its pass, two progress samples)."""
    job = job_get_for(user=request.user, pk=pk)
    context = {
        "job": job,
        "p": job_selectors.job_progress(job=job),
        "colour": STATE_COLOURS.get(job.state, "#6b7280"),
        "active": job.state in (*JOB_ACTIVE, JobState.PAUSED),
    }
    template = "reports/_live_row.html" if request.GET.get("compact") else "reports/_live.html"
    return render(request, template, context)
