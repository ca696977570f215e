"""Every write: what people (admin, CLI, API) ask for — create endpoints and jobs, start,
pause, resume, cancel, retry failed, re-apply permissions, import identities — and the
bookkeeping the workers need around the engine: events, batches, finishing a pass (the
one place), failing a job that cannot start, handing lapsed leases out again.

The engine's own results (manifest rows, outcomes) are written by the database sink,
jobs/sink.py, which calls these."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from accounts.choices import AuditAction
from accounts.models import Customer
from accounts.services import audit_record
from migrator.acl.directory import DirectoryError, LdapDirectory, to_scim
from migrator.acl.mapping import parse_mapping_csv
from migrator.storage import kind_of

from . import deletions, notifications, permissions, plain, windows
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
from .models import (
    Agent,
    AgentPool,
    Batch,
    DirectoryIdentity,
    Endpoint,
    EnrollmentCode,
    Event,
    FileItem,
    IdentityOverride,
    MigrationJob,
    Pass,
    PathMapping,
    ProgressSample,
    Tally,
)
from .options import filters_for, options_check, sanitizer_for
from .selectors import accounting_mismatch
from .selectors import pass_prior as _pass_prior


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
    agent_pool: AgentPool | None = None,
    user=None,
) -> MigrationJob:
    if on_exists not in OnExists.values:
        raise ValueError(f"unknown policy {on_exists!r}: one of {', '.join(OnExists.values)}")
    if agent_pool is not None and agent_pool.customer_id != customer.pk:
        raise ValueError(f"the agent pool {agent_pool.name} belongs to another customer")
    job_options_check(options=options or {}, destination=destination, source=source,
                      agent_pool=agent_pool)  # fmt: skip
    with transaction.atomic():
        job = MigrationJob.objects.create(
            customer=customer,
            name=name,
            agent_pool=agent_pool,
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


def job_settings_update(
    *,
    job: MigrationJob,
    on_exists: str | None = None,
    bwlimit: int | None = None,
    options: dict | None = None,
) -> MigrationJob:
    """Change how an existing job copies (its policy, bandwidth and options, checked as at
    creation) before it runs again; the bandwidth limit is replaced, None lifting it."""
    if on_exists is not None and on_exists not in OnExists.values:
        raise ValueError(f"unknown policy {on_exists!r}: one of {', '.join(OnExists.values)}")
    if options is not None:
        job_options_check(options=options, destination=job.destination, source=job.source,
                          agent_pool=job.agent_pool)  # fmt: skip
        job.options = options
    job.on_exists = on_exists or job.on_exists
    job.bwlimit = bwlimit or None
    job.save(update_fields=["on_exists", "bwlimit", "options"])
    return job


def job_mapping_ensure(*, job: MigrationJob) -> None:
    """A job copies its whole source when no mapping says otherwise: the one default row."""
    if not job.mappings.exists():
        PathMapping.objects.create(job=job)


def endpoint_directory_set(
    *, endpoint: Endpoint, uri: str, bind_dn: str, base_dn: str, bind_password: str
) -> None:
    """The directory that resolves the SIDs of this source's ACLs (password encrypted)."""
    endpoint.directory_uri = uri
    endpoint.directory_bind_dn = bind_dn
    endpoint.directory_base_dn = base_dn
    endpoint.set_directory_bind_password(bind_password)
    endpoint.save()


def job_options_check(
    *,
    options: dict,
    destination: Endpoint,
    source: Endpoint | None = None,
    agent_pool: AgentPool | None = None,
) -> None:
    """Raise ValueError, in words, for options a job could not run with (with its source
    and agent pool: also what its agents could not do)."""
    probe = MigrationJob(options=options, destination=destination, source=source,
                         agent_pool=agent_pool)  # fmt: skip
    sanitizer_for(probe)
    filters_for(probe)
    options_check(options)
    deletions.options_check(options)  # deletes, max_delete
    from .delta import conflicts_policy  # delta imports this module

    conflicts_policy(options)
    from migrator.engine.streams import parse_hashes  # hashlib/crc32c only when checked

    parse_hashes(options.get("hashes"))
    if source is not None and (refused := permissions.agent_refusal(probe)):
        raise ValueError(refused)
    assess = options.get("assess_only")
    if (
        agent_pool is not None
        and not assess
        and (refused := agent_destination_refusal(destination))
    ):
        raise ValueError(refused)


# cloud destinations written with a key: an agent would need the key, which never leaves
# the server (a GCS bucket is written by the agent through upload sessions the server makes)
KEYED_CLOUDS = ("s3", "azure")


def agent_destination_refusal(destination: Endpoint) -> str | None:
    """Why an agent cannot write to this destination, in words; None when it can."""
    if destination.kind in KEYED_CLOUDS:
        return (
            f"an on-premises agent cannot write to {destination.kind}:// yet: it would need the "
            "bucket's key, and cloud keys never leave the server. Copy to a GCS bucket or an "
            "SMB share, or run this job without an agent pool."
        )
    return None


def job_create_from_assessment(*, job: MigrationJob, user=None) -> MigrationJob:
    """A migration job with the assessed job's source, destination, mappings and choices."""
    options = {k: v for k, v in (job.options or {}).items() if k != "assess_only"}
    name = job.name.removesuffix(" (assessment)") + " (migration)"
    return _job_like(job, name=name, options=options, user=user)


def _job_like(job: MigrationJob, *, name: str, options: dict, user) -> MigrationJob:
    """A new job with `job`'s customer, agent pool, endpoints, mappings and choices."""
    return job_create(
        customer=job.customer,
        name=name,
        source=job.source,
        destination=job.destination,
        mappings=[(m.source_path, m.destination_prefix) for m in job.mappings.all()],
        on_exists=job.on_exists,
        bwlimit=job.bwlimit,
        options=options,
        agent_pool=job.agent_pool,  # an agent job's twin is run by the same pool
        user=user,
    )


def job_assess(*, job: MigrationJob, user=None) -> MigrationJob:
    """An assessment of the job's source, started: a job of its own with the same
    endpoints, mappings and choices (as `migrator_run --assess` makes one), nothing copied."""
    if (job.options or {}).get("assess_only"):
        return job_start(job=job, user=user)
    name = job.name.removesuffix(" (migration)") + " (assessment)"
    options = {**(job.options or {}), "assess_only": True}
    assessment = _job_like(job, name=name, options=options, user=user)
    return job_start(job=assessment, user=user)


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
        event_add_by(job_id=job.pk, done="Queued", user=user)
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
            if job.next_pass_kind == PassKind.PERMISSIONS:  # see job_start_permissions
                assess, kind = False, PassKind.PERMISSIONS
            if job.next_pass_kind == PassKind.VERIFY:  # see job_start_verify
                assess, kind = False, PassKind.VERIFY
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
            if kind == PassKind.VERIFY:
                what = "verifying every file against the destination (nothing is written)"
            event_add(job_id=job.pk, message=f"Pass {number} started: {what}.")
            notifications.notify(job, "job_started", message=f"Pass {number} started: {what}.")
            enqueue("jobs.tasks.scan_pass", job_pass.pk)
            started.append(job.pk)
    return started


def job_pause(*, job: MigrationJob, user=None) -> None:
    _transition(job, JOB_ACTIVE, JobState.PAUSED, "Paused", user)
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
        MigrationJob.objects.filter(pk=job.pk).update(
            state=state, error="", last_activity=timezone.now()
        )
        event_add_by(job_id=job.pk, done="Resumed", user=user)
        audit_record(action=AuditAction.RESUME, obj=job, user=user)
        if p is None:
            enqueue("jobs.tasks.customer_dispatch", job.customer_id)
            return
        queued = Batch.objects.filter(job_pass=p, state=BatchState.QUEUED)
        if job.agent_pool_id is not None:  # its agents take what the pause handed back now
            queued.update(lease_expires=timezone.now())
        else:
            for pk in queued.values_list("pk", flat=True):
                enqueue("jobs.tasks.copy_batch", pk)
        enqueue("jobs.tasks.finish_pass", p.pk)


def job_cancel(*, job: MigrationJob, user=None) -> None:
    with transaction.atomic():
        _transition(job, (*JOB_ACTIVE, JobState.PAUSED), JobState.CANCELLED, "Cancelled", user)
        audit_record(action=AuditAction.CANCEL, obj=job, user=user)
        now = timezone.now()
        MigrationJob.objects.filter(pk=job.pk).update(finished_at=now)
        Pass.objects.filter(job=job, state=PassState.RUNNING).update(
            state=PassState.CANCELLED, finished_at=now
        )
        enqueue("jobs.tasks.customer_dispatch", job.customer_id)


def job_retry_failed(*, job: MigrationJob, user=None, group: str = "") -> int:
    """Put the failed files of the last pass back to pending and copy them again; with
    `group` (an error group's key, jobs.selectors.error_groups), only that group's."""
    from .fixes import folder_words
    from .selectors import error_group_files

    with transaction.atomic():
        job = MigrationJob.objects.select_for_update().get(pk=job.pk)
        if job.state not in JOB_FINISHED or job.current_pass is None:
            raise JobStateError(f"Job “{job.name}” has no finished pass to retry.")
        p = job.current_pass
        if group:
            which, rows = error_group_files(job_pass=p, key=group)
            if which is None:
                raise JobStateError(f"Job “{job.name}” has no such error group (any more).")
            what = f"of one error group ({which.reason_label} in {folder_words(which.folder)})"
        else:
            failed = FileItem.objects.filter(
                job_pass=p, state=ItemState.FAILED, kind=ItemKind.FILE
            ).exclude(dest_path="")
            rows = list(failed.only("pk", "size").order_by("pk"))
            what = ""
        if not rows:
            raise JobStateError(f"Job “{job.name}” has no failed files that can be retried.")
        FileItem.objects.filter(pk__in=[r.pk for r in rows]).update(
            state=ItemState.PENDING, reason="", message=""
        )
        Tally.objects.create(job_pass=p, unit="retry", failed=-len(rows), pending=len(rows))
        size = sum(r.size for r in rows)
        batches = batches_create(job_pass=p, pending=rows)
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
        done = " ".join(filter(None, (f"Retrying {len(rows)} failed file(s)", what)))
        event_add_by(job_id=job.pk, done=done, user=user)
        detail = f"{len(rows)} file(s)" + (f", error group {group}" if group else "")
        audit_record(action=AuditAction.RETRY, obj=job, user=user, detail=detail)
        for batch in batches:
            enqueue("jobs.tasks.copy_batch", batch.pk)
    return len(rows)


def _transition(job: MigrationJob, allowed: Iterable[str], to: str, done: str, user) -> None:
    with transaction.atomic():
        changed = MigrationJob.objects.filter(pk=job.pk, state__in=list(allowed)).update(
            state=to, last_activity=timezone.now()
        )
        if not changed:
            job.refresh_from_db()
            raise JobStateError(f"Job “{job.name}” is {job.get_state_display().lower()}.")
        event_add_by(job_id=job.pk, done=done, user=user)


def _who(user) -> str:
    return getattr(user, "username", None) or "the system"


def event_add_by(*, job_id: int, done: str, user) -> None:
    """What a person did ("Queued", "Paused"): staff read who it was; customers read that
    support did it, never a staff account's name."""
    person = bool(getattr(user, "pk", None))
    event_add_detail(
        job_id=job_id,
        level=EventLevel.INFO,
        detail=f"{done} by {_who(user)}.",
        public=f"{done} by the support team." if person else f"{done}.",
    )


# --- events -------------------------------------------------------------------------------


def event_add(
    *, job_id: int, message: str, level: str = EventLevel.INFO, path: str = "", staff_only=False
) -> Event:
    return Event.objects.create(
        job_id=job_id, level=level, message=message, path=path, staff_only=staff_only
    )


def event_add_detail(*, job_id: int, level: str, detail: str, public: str, path: str = "") -> None:
    """One thing said twice: the detail for staff (it may name hosts, shares, accounts)
    and plain words for everyone (jobs.plain)."""
    event_add(job_id=job_id, level=level, message=detail, path=path, staff_only=True)
    event_add(job_id=job_id, level=level, message=public, path=path)


def event_add_once(*, job_id: int, since, message: str, level: str = EventLevel.WARNING) -> None:
    """An event said once per pass (per job since `since`), however many batches meet it."""
    if not Event.objects.filter(job_id=job_id, message=message, created_at__gte=since).exists():
        event_add(job_id=job_id, level=level, message=message)


# --- a job that cannot run ------------------------------------------------------------------


def job_fail(*, job_id: int, message: str, public: str = "") -> None:
    """The job could not run at all (bad credentials, unreachable endpoint). `message`
    says why in detail (hosts, shares, accounts): staff only, in the job's error and a
    staff-only event. `public` says it in plain words, for customers (jobs.plain)."""
    now = timezone.now()
    with transaction.atomic():
        MigrationJob.objects.filter(pk=job_id).update(
            state=JobState.FAILED, error=message, finished_at=now, last_activity=now
        )
        Pass.objects.filter(job_id=job_id, state=PassState.RUNNING).update(
            state=PassState.CANCELLED, finished_at=now
        )
        event_add_detail(job_id=job_id, level=EventLevel.ERROR, detail=message,
                         public=public or f"{plain.CANNOT_START}.")  # fmt: skip
        job = MigrationJob.objects.get(pk=job_id)
        enqueue("jobs.tasks.customer_dispatch", job.customer_id)
        notifications.notify(job_id, "job_failed")


def job_cannot_start(*, job_id: int, where: str, error: Exception) -> None:
    """Fail the job: the detail for staff, plain words of what failed for customers."""
    job_fail(
        job_id=job_id,
        message=f"Could not start: {error}",
        public=plain.cannot_start_words(where, error),
    )


def job_halt(*, job_id: int, detail: str, public: str) -> bool:
    """Work stops until a person acts (the destination is full): the job is paused with
    `detail` as its error (staff) and `public` said to everyone; Resume carries on where
    it stopped. False when the job was not running (another batch halted it first)."""
    now = timezone.now()
    with transaction.atomic():
        changed = MigrationJob.objects.filter(pk=job_id, state__in=JOB_ACTIVE).update(
            state=JobState.PAUSED, error=detail, last_activity=now
        )
        if changed:
            event_add_detail(job_id=job_id, level=EventLevel.ERROR, detail=detail, public=public)
            notifications.notify(job_id, "needs_attention", message=public)
    return bool(changed)


# --- batches and leases ---------------------------------------------------------------------


def batches_create(*, job_pass: Pass, pending: Sequence) -> list[Batch]:
    """Group consecutive pending rows (anything with .pk and .size, in id order) into
    batches of a few hundred files or some hundreds of MB."""
    batches: list[Batch] = []
    group: list = []
    size = 0
    resend_at = timezone.now() + timedelta(seconds=settings.MIGRATOR_TASK_RETRY)

    def close() -> None:
        batches.append(
            Batch(
                job_id=job_pass.job_id,
                job_pass_id=job_pass.pk,
                first_id=group[0].pk,
                last_id=group[-1].pk,
                files=len(group),
                bytes=size,
                lease_expires=resend_at,
            )
        )

    max_files, max_bytes = settings.MIGRATOR_BATCH_FILES, settings.MIGRATOR_BATCH_BYTES
    for row in pending:
        if group and (len(group) >= max_files or size + row.size > max_bytes):
            close()
            group, size = [], 0
        group.append(row)
        size += row.size
    if group:
        close()
    return Batch.objects.bulk_create(batches)


def batch_lease(*, batch_id: int, token: str) -> bool:
    """Take the batch for `token` until the lease lapses; False when someone holds it, or
    when its job is outside its transfer window (the batch stays queued: the reaper sends
    it again once the window opens)."""
    if windows.batch_closed(batch_id=batch_id):
        return False
    now = timezone.now()
    expires = now + timedelta(seconds=settings.MIGRATOR_LEASE_SECONDS)
    leasable = Q(state=BatchState.QUEUED) | Q(state=BatchState.LEASED, lease_expires__lt=now)
    taken = {"state": BatchState.LEASED, "lease_owner": token, "lease_expires": expires,
             "attempts": F("attempts") + 1}  # fmt: skip
    if connection.vendor == "postgresql":
        with transaction.atomic():
            row = (
                Batch.objects.select_for_update(skip_locked=True)
                .filter(leasable, pk=batch_id)
                .first()
            )
            if row is None:
                return False
            Batch.objects.filter(pk=batch_id).update(**taken)
            return True
    return bool(Batch.objects.filter(leasable, pk=batch_id).update(**taken))


def batch_release(*, batch_id: int, token: str, delay: float | None = None) -> None:
    """Hand the batch back unfinished: queued again, and sent again by the reaper after
    `delay` seconds (default: when its task would be retried, if it was lost)."""
    wait = settings.MIGRATOR_TASK_RETRY if delay is None else delay
    Batch.objects.filter(pk=batch_id, lease_owner=token).update(
        state=BatchState.QUEUED,
        lease_owner="",
        lease_expires=timezone.now() + timedelta(seconds=wait),
    )


def batch_lease_renew(*, batch_id: int, token: str) -> bool:
    """Keep the batch's lease while its holder works; False when it was lost."""
    expires = timezone.now() + timedelta(seconds=settings.MIGRATOR_LEASE_SECONDS)
    return bool(
        Batch.objects.filter(pk=batch_id, lease_owner=token, state=BatchState.LEASED).update(
            lease_expires=expires
        )
    )


def batch_orphaned(*, batch_id: int) -> None:
    """The process copying this batch is known to be dead: the reaper may hand it out
    again at once, instead of when its lease would lapse."""
    Batch.objects.filter(pk=batch_id).exclude(state=BatchState.DONE).update(
        lease_expires=timezone.now()
    )


def scan_lease(*, pass_id: int, token: str) -> bool:
    """Take the pass's scan for `token`; False when someone holds it or it is done."""
    now = timezone.now()
    expires = now + timedelta(seconds=settings.MIGRATOR_LEASE_SECONDS)
    return bool(
        Pass.objects.filter(pk=pass_id, state=PassState.RUNNING, scan_finished=False)
        .filter(Q(scan_lease_expires__isnull=True) | Q(scan_lease_expires__lt=now))
        .update(scan_lease_owner=token, scan_lease_expires=expires)
    )


def scan_lease_renew(*, pass_id: int, token: str, seconds: float | None = None) -> bool:
    """Keep (or, with `seconds`, shorten) the scan's lease; False when it was lost."""
    expires = timezone.now() + timedelta(seconds=seconds or settings.MIGRATOR_LEASE_SECONDS)
    return bool(
        Pass.objects.filter(pk=pass_id, scan_lease_owner=token).update(scan_lease_expires=expires)
    )


_last_reap = 0.0
REAP_EVERY_SECONDS = 5.0


def leases_reap_if_due() -> None:
    """Workers also reap between batches (the schedule runs once a minute at most)."""
    if time.monotonic() - _last_reap >= REAP_EVERY_SECONDS:
        leases_reap()


def leases_reap() -> dict[str, int]:
    """Periodic: hand lapsed batch and scan leases out again, re-send queued batches whose
    task may have been lost (a killed worker, a Redis broker), start waiting jobs."""
    global _last_reap
    _last_reap = time.monotonic()
    now = timezone.now()
    resend_at = now + timedelta(seconds=settings.MIGRATOR_TASK_RETRY)
    counts = {"batches": 0, "scans": 0}
    # (the agents of a job's pool lease its work themselves: no task is sent for it)
    running_jobs = MigrationJob.objects.filter(
        state__in=JOB_RUNNING, agent_pool__isnull=True
    ).values("pk")
    # a job nobody works on: its queued batches' tasks were lost (a killed worker that
    # had taken them from Redis); a job being worked on just has a long queue
    busy_jobs = Batch.objects.filter(state=BatchState.LEASED, lease_expires__gte=now).values(
        "job_id"
    )
    with transaction.atomic():
        lapsed = Q(state=BatchState.LEASED) | Q(state=BatchState.QUEUED) & ~Q(job_id__in=busy_jobs)
        # jobs outside their transfer window: their batches wait until it opens
        closed = windows.jobs_closed(job_ids=running_jobs.values_list("pk", flat=True))
        due = list(
            Batch.objects.filter(lapsed, job_id__in=running_jobs, lease_expires__lt=now)
            .exclude(job_id__in=closed)
            .order_by("pk")
            .values_list("pk", flat=True)[:5000]
        )
        for pk in due:
            if (
                Batch.objects.filter(pk=pk, lease_expires__lt=now)
                .exclude(state=BatchState.DONE)
                .update(state=BatchState.QUEUED, lease_owner="", lease_expires=resend_at)
            ):
                enqueue("jobs.tasks.copy_batch", pk)
                counts["batches"] += 1
        scans = Pass.objects.filter(
            job_id__in=running_jobs, state=PassState.RUNNING, scan_finished=False
        ).filter(Q(scan_lease_expires__isnull=True) | Q(scan_lease_expires__lt=now))
        for pk in scans.values_list("pk", flat=True):
            enqueue("jobs.tasks.scan_pass", pk)
            counts["scans"] += 1
    return counts


# --- the end of a pass ----------------------------------------------------------------------


def pass_finish(*, pass_id: int) -> None:
    """The one place a pass is finished (reached through the task queue, as
    jobs.tasks.finish_pass): when its scan is done and nothing is pending, verify the
    accounting against the manifest (one GROUP BY per pass, never for progress) and set
    the job's final state. Does nothing while work remains."""
    with transaction.atomic():
        p = Pass.objects.select_for_update().filter(pk=pass_id).first()
        if p is None or p.state != PassState.RUNNING or not p.scan_finished or p.pending:
            return
        if not p.delta_checked and p.kind == PassKind.COPY and _pass_prior(p) is not None:
            return  # a catch-up pass: its destination check (jobs/delta.py) comes first
        if deletions.pass_hold(p):  # deleted at source: applied, or confirmed, first
            return
        MigrationJob.objects.filter(pk=p.job_id, state__in=JOB_RUNNING).update(
            state=JobState.VERIFYING
        )
        if permissions.manifest_due(p):  # the permissions manifest is written first, once
            if p.acl_manifest != permissions.MANIFEST_WRITING:
                Pass.objects.filter(pk=pass_id).update(acl_manifest=permissions.MANIFEST_WRITING)
                enqueue("jobs.tasks.permissions_manifest", pass_id)
            return
        # against the sums each scan chunk, batch, retry kept with its rows (constant
        # cost: 10 s at 10M rows as a GROUP BY); manage.py accounting_verify does that
        mismatch = accounting_mismatch(job_pass=p)
        if mismatch:
            event_add(
                job_id=p.job_id,
                level=EventLevel.ERROR,
                message=f"Accounting check failed (counter, manifest): {mismatch}",
                staff_only=True,
            )
        ok = not mismatch and p.failed == 0 and p.folders_failed == 0 and p.pending == 0
        ok = ok and permissions.pass_ok(p)
        ok = ok and not p.deletes_failed  # gone at the source, still at the destination
        final = JobState.COMPLETED if ok else JobState.COMPLETED_WITH_ERRORS
        if p.kind == PassKind.ASSESS:
            final = JobState.ASSESSED
        now = timezone.now()
        Pass.objects.filter(pk=pass_id).update(state=PassState.DONE, finished_at=now)
        changed = MigrationJob.objects.filter(
            pk=p.job_id, state__in=(*JOB_RUNNING, JobState.PAUSED)
        ).update(state=final, finished_at=now, last_activity=now)
        if changed:
            p.refresh_from_db()
            ProgressSample.objects.create(
                job_pass_id=pass_id, files_done=p.done, bytes_done=p.bytes_done
            )
            event_add(
                job_id=p.job_id,
                level=EventLevel.INFO if ok else EventLevel.WARNING,
                message=(
                    f"Pass {p.number} finished: {p.seen} files seen, {p.copied} copied, "
                    f"{p.unchanged} unchanged, {p.excluded} excluded, {p.failed} failed; "
                    f"{p.folders_seen} folders ({p.folders_failed} unreadable)."
                ),
            )
            customer_id = MigrationJob.objects.values_list("customer_id", flat=True).get(
                pk=p.job_id
            )
            enqueue("jobs.tasks.customer_dispatch", customer_id)
            notifications.notify(p.job_id, f"job_{final}")  # (job_assessed: nobody asks)
            from .cutover import cutover_pass_finished  # cutover imports this module

            cutover_pass_finished(pass_id=pass_id)


def pass_manifest_recorded(*, pass_id: int, where: str, batches: int) -> None:
    """The permissions manifest was written (or `where` says "failed: …"): finish."""
    Pass.objects.filter(pk=pass_id).update(acl_manifest=where[:2000], acl_manifest_batches=batches)
    enqueue("jobs.tasks.finish_pass", pass_id)


# --- permissions ----------------------------------------------------------------------------


def job_start_permissions(*, job: MigrationJob, user=None) -> MigrationJob:
    """Queue a pass that re-applies permissions without copying data (for cutover)."""
    if not permissions.enabled(job):
        raise JobStateError(f"Job “{job.name}” does not migrate permissions.")
    with transaction.atomic():
        MigrationJob.objects.filter(pk=job.pk).update(next_pass_kind=PassKind.PERMISSIONS)
        try:
            return job_start(job=job, user=user)
        except JobStateError:
            MigrationJob.objects.filter(pk=job.pk).update(next_pass_kind="")
            raise


def job_start_verify(*, job: MigrationJob, user=None) -> MigrationJob:
    """Queue a verify pass: every file re-compared with the destination, nothing written
    (engine/verify.py); a difference fails the file with verify_mismatch or
    missing_at_destination."""
    if job.agent_pool_id is not None:
        raise JobStateError(f"Job “{job.name}” runs through an agent: verify it by a copy pass.")
    if (job.options or {}).get("assess_only"):
        raise JobStateError(f"Job “{job.name}” is an assessment: there is nothing to verify.")
    with transaction.atomic():
        MigrationJob.objects.filter(pk=job.pk).update(next_pass_kind=PassKind.VERIFY)
        try:
            return job_start(job=job, user=user)
        except JobStateError:
            MigrationJob.objects.filter(pk=job.pk).update(next_pass_kind="")
            raise


def identity_overrides_import(*, job: MigrationJob, data: bytes | str, user=None) -> int:
    """Replace the job's identity overrides with an uploaded CSV (source,target,type).
    Raises MappingCSVError listing every problem with its line; nothing is half-imported."""
    parsed = parse_mapping_csv(data)
    lines = permissions.csv_lines(data)
    with transaction.atomic():
        IdentityOverride.objects.filter(job=job).delete()
        IdentityOverride.objects.bulk_create(
            IdentityOverride(job=job, source=key, target=identity.target, type=identity.type,
                             line=lines.get(key, 0))
            for key, identity in parsed.items()
        )  # fmt: skip
        event_add_by(
            job_id=job.pk, done=f"Identity CSV of {len(parsed)} line(s) imported", user=user
        )
    return len(parsed)


IDENTITY_FIELDS = ["kind", "account", "upn", "mail", "display_name", "enabled", "groups",
                   "nested_groups", "members", "dn", "scim", "refreshed_at"]  # fmt: skip


def directory_export(*, customer) -> dict[str, int]:
    """Read the customer's users and groups from their directory into the identity table
    (rows of accounts no longer there are removed). Raises DirectoryError in words."""
    conf = permissions.customer_directory_settings(customer)
    if conf is None:
        raise DirectoryError(f"customer {customer.name} has no directory")
    now = timezone.now()
    counts = {"user": 0, "group": 0}
    with LdapDirectory(**conf) as directory:
        chunk: list[DirectoryIdentity] = []

        def flush() -> None:
            DirectoryIdentity.objects.bulk_create(
                chunk, update_conflicts=True, unique_fields=["customer", "sid"],
                update_fields=IDENTITY_FIELDS,
            )  # fmt: skip
            chunk.clear()

        for entry in directory.export():
            names = ", ".join
            chunk.append(
                DirectoryIdentity(
                    customer=customer, sid=entry.sid, kind=entry.kind, account=entry.account,
                    upn=getattr(entry, "upn", None) or "", mail=entry.mail or "",
                    display_name=entry.display_name or "",
                    enabled=getattr(entry, "enabled", None),
                    groups=names(g.name for g in entry.groups),
                    nested_groups=names(g.name for g in entry.nested_groups),
                    members=names(m.name for m in getattr(entry, "members", ())),
                    dn=entry.dn, scim=to_scim(entry), refreshed_at=now,
                )
            )  # fmt: skip
            counts[entry.kind] += 1
            if len(chunk) >= 1000:
                flush()
        if chunk:
            flush()
    DirectoryIdentity.objects.filter(customer=customer, refreshed_at__lt=now).delete()
    return counts


# --- on-premises agents ---------------------------------------------------------------------

ENROLLMENT_TTL = timedelta(hours=24)


class EnrollmentError(Exception):
    """An enrolment code that cannot be used, said in words the agent shows."""


def token_hash(token: str) -> str:
    """What is kept of a code or token: its SHA-256 (the value itself is shown once)."""
    return hashlib.sha256(token.encode()).hexdigest()


def agent_pool_create(*, customer: Customer, name: str, user=None) -> AgentPool:
    pool = AgentPool.objects.create(customer=customer, name=name)
    audit_record(action=AuditAction.CREATE, obj=pool, user=user)
    return pool


def enrollment_code_create(*, pool: AgentPool, user=None, ttl: timedelta = ENROLLMENT_TTL) -> str:
    """A one-time code for one agent to join `pool`, valid for `ttl`: returned once,
    only its hash is stored."""
    code = f"mgr-enroll-{secrets.token_urlsafe(24)}"
    EnrollmentCode.objects.create(
        pool=pool,
        code_hash=token_hash(code),
        created_by=user if getattr(user, "pk", None) else None,
        expires_at=timezone.now() + ttl,
    )
    return code


def agent_enroll(*, code: str, name: str, version: str = "") -> tuple[Agent, str]:
    """Trade an enrolment code for an agent and its token (returned once). The code works
    once, before it expires."""
    now = timezone.now()
    with transaction.atomic():
        found = (
            EnrollmentCode.objects.select_for_update()
            .filter(code_hash=token_hash(code or ""))
            .first()
        )
        if found is None:
            raise EnrollmentError("This enrolment code is not known: ask support for a new one.")
        if found.used_at is not None:
            raise EnrollmentError(
                "This enrolment code was used already (each works once): ask support for a new one."
            )
        if found.expires_at <= now:
            raise EnrollmentError("This enrolment code has expired: ask support for a new one.")
        token = f"mgr-agent-{secrets.token_urlsafe(32)}"
        agent = Agent.objects.create(
            pool=found.pool, name=name[:200] or "agent", token_hash=token_hash(token),
            version=version[:50], last_seen=now,
        )  # fmt: skip
        EnrollmentCode.objects.filter(pk=found.pk).update(used_at=now, used_by=agent)
    return agent, token


def agent_revoke(*, agent: Agent, user=None) -> None:
    """The agent's token stops working at its next call; what it holds lapses and goes to
    the pool's other agents."""
    now = timezone.now()
    Agent.objects.filter(pk=agent.pk, revoked_at__isnull=True).update(revoked_at=now)
    Batch.objects.filter(lease_owner__startswith=f"agent:{agent.pk}:").update(lease_expires=now)
    Pass.objects.filter(scan_lease_owner__startswith=f"agent:{agent.pk}:").update(
        scan_lease_expires=now
    )
    audit_record(action=AuditAction.EDIT, obj=agent, user=user, detail="revoked")


def agent_heartbeat(*, agent: Agent, status: dict) -> None:
    Agent.objects.filter(pk=agent.pk).update(
        last_seen=timezone.now(), status=status, version=str(status.get("version", ""))[:50]
    )


def agent_work_lease(*, agent: Agent) -> tuple[str, int, str] | None:
    """Lease the next piece of work of the agent's pool: ("scan", pass id, lease) or
    ("batch", batch id, lease), with the same semantics as a worker's (an expiry the
    agent renews, handed out again when it lapses); None when there is nothing."""
    jobs = MigrationJob.objects.filter(agent_pool_id=agent.pool_id, state__in=JOB_RUNNING)
    jobs = list(jobs.exclude(current_pass=None).order_by("queued_at", "pk"))
    closed = windows.jobs_closed(job_ids=[job.pk for job in jobs])  # outside their window
    for job in jobs:
        lease = f"agent:{agent.pk}:{secrets.token_hex(8)}"
        p = job.current_pass_id
        if scan_lease(pass_id=p, token=lease):
            return "scan", p, lease
        if job.pk in closed:
            continue
        now = timezone.now()
        # a batch handed back to be tried later (an endpoint away, a file that changed
        # while read) waits out its delay, as the reaper makes a worker's wait; a new one
        # is leased at once (its lease_expires is the cluster's resend time, not a delay)
        due = Q(attempts=0) | Q(lease_expires__isnull=True) | Q(lease_expires__lte=now)
        leasable = Batch.objects.filter(job_pass_id=p).filter(
            Q(due, state=BatchState.QUEUED) | Q(state=BatchState.LEASED, lease_expires__lt=now)
        )
        for batch_id in leasable.order_by("pk").values_list("pk", flat=True)[:20]:
            if batch_lease(batch_id=batch_id, token=lease):
                return "batch", batch_id, lease
    return None
