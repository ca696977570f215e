"""The customers' read-only portal: their jobs and each job's page. Thin: parse, call a
selector, render. Every job comes through jobs.selectors: another customer's is a 404."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from accounts.selectors import customers_visible_to
from jobs import plain
from jobs import selectors as job_selectors
from jobs.choices import JOB_ACTIVE, STATE_COLOURS

from . import selectors, tables

LIVE_STATES = set(JOB_ACTIVE)  # pages of running jobs reload themselves


@login_required
def portal_jobs(request: HttpRequest) -> HttpResponse:
    """The viewer's jobs: a constant number of queries however many there are (the
    endpoints and current pass joined, passes counted and samples read in one go each)."""
    jobs = list(
        job_selectors.jobs_visible_to(request.user)
        .select_related("customer", "current_pass", "source", "destination")
        .annotate(passes_count=job_selectors.passes_count())
        .order_by("customer__name", "-created_at")
    )
    samples = job_selectors.latest_samples(job.current_pass_id for job in jobs)
    rows = [
        (
            job,
            job_selectors.job_progress(
                job=job, job_pass=job.current_pass, samples=samples.get(job.current_pass_id, [])
            ),
            STATE_COLOURS.get(job.state),
            plain.route_words(job.source, job.destination),
        )
        for job in jobs
    ]
    customers = customers_visible_to(request.user)
    refresh = any(job.state in LIVE_STATES for job in jobs)
    return render(
        request, "portal/jobs.html", {"rows": rows, "customers": customers, "refresh": refresh}
    )


def _cutover_words(job) -> dict | None:
    """The cutover as the customer reads it: where it stands, and the verdict once ready."""
    from jobs import cutover

    flow = cutover.cutover_of(job)
    if flow is None:
        return None
    report = cutover.ready_report(flow) if flow.step == "ready" else None
    return {"flow": flow, "report": report}


@login_required
def portal_job(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_selectors.job_get_for(user=request.user, pk=pk)
    events = job_selectors.job_events_for(user=request.user, job=job).order_by("-id")[:50]
    current = selectors.report_pass(job=job)
    context = {
        "job": job,
        "p": job_selectors.job_progress(job=job, job_pass=current),
        # failures by cause, in the customer's words (whoever looks: this is their page)
        "groups": tables.error_groups(job, current, staff=False),
        "colour": STATE_COLOURS.get(job.state),
        "refresh": job.state in LIVE_STATES,
        "history": job_selectors.pass_history(job=job),
        "cutover": _cutover_words(job),
        "events": events,
        # endpoints and errors in plain words: URLs and job.error name hosts (staff only)
        "route": plain.route_words(job.source, job.destination),
        "public_error": job_selectors.job_public_error(job),
    }
    return render(request, "portal/job_detail.html", context)


def _ids(values: list[str]) -> set[int]:
    try:
        return {int(v) for v in values}
    except ValueError:
        raise Http404("No such job.")


@login_required
def portal_notifications(request: HttpRequest) -> HttpResponse:
    """Which emails the viewer receives: per customer (every job of it, new ones too) and
    per job, one checkbox per event. Only the viewer's own customers and jobs are listed
    or accepted: another customer's id is refused (404, as an id that does not exist)."""
    from jobs.models import NotificationPreference
    from jobs.notifications import EVENTS, NotificationEvent

    user = request.user
    customers = customers_visible_to(user).order_by("name")
    jobs = job_selectors.jobs_visible_to(user).select_related("customer")
    if request.method == "POST":
        job_ids = _ids(request.POST.getlist("job"))
        customer_ids = _ids(request.POST.getlist("customer"))
        mine_jobs = {j.pk: j for j in jobs.filter(pk__in=job_ids)}
        mine_customers = {c.pk: c for c in customers.filter(pk__in=customer_ids)}
        if set(mine_jobs) != job_ids or set(mine_customers) != customer_ids:
            raise Http404("No such job.")
        with transaction.atomic():
            for key, customer, job in [
                *((f"c{pk}", c, None) for pk, c in mine_customers.items()),
                *((f"j{pk}", j.customer, j) for pk, j in mine_jobs.items()),
            ]:
                events = [e for e in request.POST.getlist(f"events_{key}") if e in EVENTS]
                NotificationPreference.objects.update_or_create(
                    user=user, customer=customer, job=job,
                    defaults={"events": events, "email": bool(events)},
                )  # fmt: skip
        messages.success(request, "Your notification choices are saved.")
        return redirect("portal:notifications")
    chosen = {
        (p.customer_id, p.job_id): set(p.events or [])
        for p in NotificationPreference.objects.filter(user=user, email=True)
    }
    customer_rows = [(c, f"c{c.pk}", chosen.get((c.pk, None), set())) for c in customers]
    job_rows = [
        (j, f"j{j.pk}", chosen.get((j.customer_id, j.pk), set()))
        for j in jobs.order_by("customer__name", "-created_at")
    ]
    context = {
        "events": NotificationEvent.choices,
        "customer_rows": customer_rows,
        "job_rows": job_rows,
        "has_email": bool(user.email),
    }
    return render(request, "portal/notifications.html", context)
