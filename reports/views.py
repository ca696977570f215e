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
from jobs.choices import JOB_ACTIVE, STATE_COLOURS, JobState
from jobs.notifications import notify
from jobs.selectors import job_get_for, jobs_visible_to
from migrator.web.csv import csv_filename, csv_response

from . import registry, selectors, services, tables


@login_required
def job_report(request, pk: int, report: str = "summary"):
    kind = registry.REPORTS.get(report)
    if kind is None:
        raise Http404("No such report.")
    job = job_get_for(user=request.user, pk=pk)
    staff = sees_all_customers(request.user)
    job_pass = selectors.report_pass(job=job, number=request.GET.get("pass", ""))
    q = registry.ReportQuery.from_query(request.GET, job=job, job_pass=job_pass, staff=staff)
    if request.GET.get("format") == "csv":
        try:
            csv = kind.csv(q)
        except KeyError:
            raise Http404("No such list.")
        return csv_response(csv_filename("job", job.pk, report, q.listing), csv.header, csv.rows())
    query = request.GET.copy()
    query.pop("cursor", None)
    context = {
        "job": job,
        "job_pass": job_pass,
        "report": report,
        "reports": registry.REPORTS,
        "filters": q.filters,
        "query": query.urlencode(),
        "staff": staff,
        "colour": STATE_COLOURS.get(job.state, "#6b7280"),
        "signoff": selectors.job_signoff(job=job),
        "can_accept": not staff and job.state in services.ACCEPTABLE,
        "live_active": job.state in (*JOB_ACTIVE, JobState.PAUSED),
        **kind.page(q),
    }
    return render(request, kind.template, context)


@login_required
@require_POST
def job_accept(request, pk: int):
    """The customer viewer accepts a finished migration (staff cannot do it for them)."""
    job = job_get_for(user=request.user, pk=pk)
    if sees_all_customers(request.user):
        raise Http404("Only the customer accepts a migration.")
    try:
        services.job_sign_off(job=job, user=request.user, note=request.POST.get("note", "")[:2000])
        notify(job, "signed_off", message=f"Accepted by {request.user.get_username()}.")
        messages.success(request, "Thank you: the migration is accepted.")
    except services.SignOffError as exc:
        messages.error(request, str(exc))
    return redirect("reports:job", pk=job.pk)


@login_required
def job_completion(request, pk: int):
    """One printable page: final counts and the sign-off."""
    job = job_get_for(user=request.user, pk=pk)
    job_pass = selectors.report_pass(job=job, number=request.GET.get("pass", ""))
    context = {
        "job": job,
        "job_pass": job_pass,
        "passes": list(job.passes.order_by("number")),
        "signoff": selectors.job_signoff(job=job),
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
