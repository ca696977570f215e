"""The admin's cutover page of a job (jobs/cutover.py does the work) and the pass history
shown on the job's page. Thin: parse, call the cutover services, render."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from . import cutover, selectors, services
from .choices import JOB_FINISHED, CutoverState, CutoverStep
from .models import Cutover, MigrationJob

OPS = {
    "start": lambda job, user, item: cutover.cutover_start(job=job, user=user),
    "tick": lambda job, user, item: cutover.cutover_tick(job=job, item=item, user=user),
    "untick": lambda job, user, item: cutover.cutover_tick(
        job=job, item=item, user=user, ticked=False
    ),
    "advance": lambda job, user, item: cutover.cutover_advance(job=job, user=user),
    "retry": lambda job, user, item: cutover.cutover_retry(job=job, user=user),
    "verify": lambda job, user, item: services.job_start_verify(job=job, user=user),
}


def cutover_context(job: MigrationJob) -> dict:
    """What the cutover page (admin) and the API show of a job's cutover."""
    flow = cutover.cutover_of(job)
    if flow is None:
        return {"cutover": None, "steps": CutoverStep.choices}
    report = cutover.ready_report(flow) if flow.step == CutoverStep.READY else None
    return {
        "cutover": flow,
        # its pass will not come (the job was cancelled or failed): retrying settles it
        "stalled": flow.state == CutoverState.RUNNING and job.state in JOB_FINISHED,
        "steps": CutoverStep.choices,
        "checklist": cutover.checklist(flow),
        "report": report,
    }


def job_cutover_urls(model_admin) -> list:
    view = model_admin.admin_site.admin_view

    def cutover_view(request, job_id: int):
        job = get_object_or_404(
            MigrationJob.objects.select_related("customer", "source", "destination"), pk=job_id
        )
        if not model_admin.has_view_permission(request, job):
            raise Http404
        if request.method == "POST":
            if not model_admin.has_change_permission(request, job):
                raise Http404
            op = OPS.get(request.POST.get("op", ""))
            if op is None:
                raise Http404("No such operation.")
            try:
                op(job, request.user, request.POST.get("item", ""))
            except (cutover.CutoverError, services.JobStateError) as exc:
                model_admin.message_user(request, str(exc), messages.ERROR)
            return redirect(reverse("admin:jobs_migrationjob_cutover", args=[job.pk]))
        context = {
            **model_admin.admin_site.each_context(request),
            "title": f"Cutover — {job.name}",
            "job": job,
            "opts": model_admin.model._meta,
            "history": selectors.pass_history(job=job),
            **cutover_context(job),
        }
        return TemplateResponse(request, "admin/jobs/cutover.html", context)

    return [
        path("<int:job_id>/cutover/", view(cutover_view), name="jobs_migrationjob_cutover"),
    ]


def cutover_link(job: MigrationJob) -> str:
    if job.pk is None:
        return "—"
    flow = Cutover.objects.filter(job=job).first()
    said = "not started"
    if flow is not None:
        said = f"{flow.get_step_display()} — {flow.get_state_display()}"
    return format_html(
        '<a href="{}">Cutover page</a> ({})',
        reverse("admin:jobs_migrationjob_cutover", args=[job.pk]),
        said,
    )


def pass_history_table(job: MigrationJob) -> str:
    if job.pk is None:
        return "—"
    return render_to_string(
        "admin/jobs/_pass_history.html", {"history": selectors.pass_history(job=job)}
    )
