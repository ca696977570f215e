"""Writes that people (admin, CLI, API) ask for: create endpoints and jobs, start, pause,
resume, cancel, retry failed. Worker-side work is in execution.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from accounts.choices import AuditAction
from accounts.models import Customer
from accounts.services import audit_record
from migrator.storage import kind_of

from . import plain
from .choices import (
    JOB_ACTIVE,
    JOB_FINISHED,
    JOB_RUNNING,
    JOB_STARTABLE,
    BatchState,
    EventLevel,
    ItemKind,
    ItemState,
    JobState,
    OnExists,
    PassKind,
    PassState,
)
from .dispatch import enqueue
from .execution import _make_batches, event_add
from .models import Batch, Endpoint, FileItem, MigrationJob, Pass, PathMapping


class JobStateError(Exception):
    """The operation does not apply to the job in its current state."""


def endpoint_create(
    *, name: str, url: str, customer: Customer | None = None, secret: str | None = None
) -> Endpoint:
    kind_of(url)  # ValueError in words for an unknown scheme
    endpoint = Endpoint(name=name, url=url, customer=customer)
    if secret:
        endpoint.set_secret(secret)
    endpoint.full_clean(exclude=["customer"])
    endpoint.save()
    return endpoint


def endpoint_get_or_create(
    *, url: str, customer: Customer | None = None, secret: str | None = None
) -> Endpoint:
    endpoint = Endpoint.objects.filter(url=url, customer=customer).first()
    if endpoint is None:
        return endpoint_create(name=url, url=url, customer=customer, secret=secret)
    if secret and endpoint.get_secret() != secret:
        endpoint.set_secret(secret)
        endpoint.save(update_fields=["secret_encrypted", "updated_at"])
    return endpoint


def job_create(
    *,
    customer: Customer,
    name: str,
    source: Endpoint,
    destination: Endpoint,
    mappings: Sequence[tuple[str, str]] = (("", ""),),
    on_exists: str = OnExists.SKIP_IDENTICAL,
    bwlimit: int | None = None,
    options: dict | None = None,
    user=None,
) -> MigrationJob:
    if on_exists not in OnExists.values:
        raise ValueError(f"unknown policy {on_exists!r}: one of {', '.join(OnExists.values)}")
    job_options_check(options=options or {}, destination=destination)
    with transaction.atomic():
        job = MigrationJob.objects.create(
            customer=customer,
            name=name,
            source=source,
            destination=destination,
            on_exists=on_exists,
            bwlimit=bwlimit or None,
            options=options or {},
            created_by=user if getattr(user, "pk", None) else None,
        )
        PathMapping.objects.bulk_create(
            PathMapping(job=job, position=i, source_path=src.strip("/"), destination_prefix=dst)
            for i, (src, dst) in enumerate(mappings)
        )
        # endpoint URLs name hosts and accounts: staff only
        event_add(job_id=job.pk, message=f"Job created: {source.url} → {destination.url}",
                  staff_only=True)  # fmt: skip
        event_add(
            job_id=job.pk,
            message=f"Migration created: {plain.route_words(source, destination)}.",
        )
        audit_record(action=AuditAction.CREATE, obj=job, user=user)
    return job


def job_options_check(*, options: dict, destination: Endpoint) -> None:
    """Raise ValueError, in words, for options a job could not run with."""
    from .execution import filters_for, sanitizer_for
    from .permissions import options_check

    probe = MigrationJob(options=options, destination=destination)
    sanitizer_for(probe)
    filters_for(probe)
    options_check(options)


def job_create_from_assessment(*, job: MigrationJob, user=None) -> MigrationJob:
    """A migration job with the assessed job's source, destination, mappings and choices."""
    options = {k: v for k, v in (job.options or {}).items() if k != "assess_only"}
    return job_create(
        customer=job.customer,
        name=job.name.removesuffix(" (assessment)") + " (migration)",
        source=job.source,
        destination=job.destination,
        mappings=[(m.source_path, m.destination_prefix) for m in job.mappings.all()],
        on_exists=job.on_exists,
        bwlimit=job.bwlimit,
        options=options,
        user=user,
    )


def job_start(*, job: MigrationJob, user=None) -> MigrationJob:
    """Queue the job for a new pass; it starts as soon as the customer's limit allows."""
    with transaction.atomic():
        job = MigrationJob.objects.select_for_update().get(pk=job.pk)
        if job.state not in JOB_STARTABLE:
            raise JobStateError(f"Job “{job.name}” is {job.get_state_display().lower()}.")
        job.state = JobState.QUEUED
        job.queued_at = timezone.now()
        job.finished_at = None
        job.error = ""
        job.save(update_fields=["state", "queued_at", "finished_at", "error"])
        event_add(job_id=job.pk, message=f"Queued by {_who(user)}.")
        audit_record(action=AuditAction.START, obj=job, user=user)
        enqueue("jobs.tasks.customer_dispatch", job.customer_id)
    return job


def customer_dispatch(*, customer_id: int) -> list[int]:
    """Start queued jobs of a customer, oldest first, up to its running-jobs limit."""
    started = []
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer_id)
        running = MigrationJob.objects.filter(customer=customer, state__in=JOB_RUNNING).count()
        waiting = MigrationJob.objects.filter(customer=customer, state=JobState.QUEUED).order_by(
            "queued_at", "pk"
        )
        for job in waiting[: max(0, customer.max_running_jobs - running)]:
            number = (job.passes.aggregate(n=Max("number"))["n"] or 0) + 1
            assess = bool((job.options or {}).get("assess_only"))
            kind = PassKind.ASSESS if assess else PassKind.COPY
            if job.next_pass_kind == PassKind.PERMISSIONS:  # see permissions.job_start_permissions
                assess, kind = False, PassKind.PERMISSIONS
            job_pass = Pass.objects.create(job=job, number=number, kind=kind)
            now = timezone.now()
            MigrationJob.objects.filter(pk=job.pk).update(
                state=JobState.ASSESSING if assess else JobState.SCANNING,
                current_pass=job_pass,
                started_at=now,
                last_activity=now,
                next_pass_kind="",
            )
            what = "assessing the source (nothing is copied)" if assess else "scanning the source"
            if kind == PassKind.PERMISSIONS:
                what = "re-applying permissions (no data is copied)"
            event_add(job_id=job.pk, message=f"Pass {number} started: {what}.")
            enqueue("jobs.tasks.scan_pass", job_pass.pk)
            started.append(job.pk)
    return started


def job_pause(*, job: MigrationJob, user=None) -> None:
    _transition(job, JOB_ACTIVE, JobState.PAUSED, f"Paused by {_who(user)}.")
    audit_record(action=AuditAction.PAUSE, obj=job, user=user)


def job_resume(*, job: MigrationJob, user=None) -> None:
    with transaction.atomic():
        job = MigrationJob.objects.select_for_update().get(pk=job.pk)
        if job.state != JobState.PAUSED:
            raise JobStateError(f"Job “{job.name}” is not paused.")
        p = job.current_pass
        if p is None:
            state = JobState.QUEUED
        else:
            state = JobState.COPYING if p.scan_finished else JobState.SCANNING
        MigrationJob.objects.filter(pk=job.pk).update(state=state, last_activity=timezone.now())
        event_add(job_id=job.pk, message=f"Resumed by {_who(user)}.")
        audit_record(action=AuditAction.RESUME, obj=job, user=user)
        if p is None:
            enqueue("jobs.tasks.customer_dispatch", job.customer_id)
            return
        for pk in Batch.objects.filter(job_pass=p, state=BatchState.QUEUED).values_list(
            "pk", flat=True
        ):
            enqueue("jobs.tasks.copy_batch", pk)
        enqueue("jobs.tasks.finish_pass", p.pk)


def job_cancel(*, job: MigrationJob, user=None) -> None:
    with transaction.atomic():
        _transition(job, (*JOB_ACTIVE, JobState.PAUSED), JobState.CANCELLED,
                    f"Cancelled by {_who(user)}.")  # fmt: skip
        audit_record(action=AuditAction.CANCEL, obj=job, user=user)
        now = timezone.now()
        MigrationJob.objects.filter(pk=job.pk).update(finished_at=now)
        Pass.objects.filter(job=job, state=PassState.RUNNING).update(
            state=PassState.CANCELLED, finished_at=now
        )
        enqueue("jobs.tasks.customer_dispatch", job.customer_id)


def job_retry_failed(*, job: MigrationJob, user=None) -> int:
    """Put the failed files of the last pass back to pending and copy them again."""
    with transaction.atomic():
        job = MigrationJob.objects.select_for_update().get(pk=job.pk)
        if job.state not in JOB_FINISHED or job.current_pass is None:
            raise JobStateError(f"Job “{job.name}” has no finished pass to retry.")
        p = job.current_pass
        failed = FileItem.objects.filter(
            job_pass=p, state=ItemState.FAILED, kind=ItemKind.FILE
        ).exclude(dest_path="")
        rows = list(failed.only("pk", "size").order_by("pk"))
        if not rows:
            raise JobStateError(f"Job “{job.name}” has no failed files that can be retried.")
        FileItem.objects.filter(pk__in=[r.pk for r in rows]).update(
            state=ItemState.PENDING, reason="", message=""
        )
        size = sum(r.size for r in rows)
        batches = _make_batches(p, rows)
        Pass.objects.filter(pk=p.pk).update(
            state=PassState.RUNNING,
            finished_at=None,
            failed=F("failed") - len(rows),
            pending=F("pending") + len(rows),
            bytes_done=F("bytes_done") - size,
            batches_total=F("batches_total") + len(batches),
        )
        now = timezone.now()
        MigrationJob.objects.filter(pk=job.pk).update(
            state=JobState.COPYING, finished_at=None, last_activity=now
        )
        event_add(job_id=job.pk, message=f"Retrying {len(rows)} failed file(s), by {_who(user)}.")
        audit_record(action=AuditAction.RETRY, obj=job, user=user, detail=f"{len(rows)} file(s)")
        for batch in batches:
            enqueue("jobs.tasks.copy_batch", batch.pk)
    return len(rows)


def _transition(job: MigrationJob, allowed: Iterable[str], to: str, message: str) -> None:
    with transaction.atomic():
        changed = MigrationJob.objects.filter(pk=job.pk, state__in=list(allowed)).update(
            state=to, last_activity=timezone.now()
        )
        if not changed:
            job.refresh_from_db()
            raise JobStateError(f"Job “{job.name}” is {job.get_state_display().lower()}.")
        event_add(job_id=job.pk, level=EventLevel.INFO, message=message)


def _who(user) -> str:
    return getattr(user, "username", None) or "the system"
