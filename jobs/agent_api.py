"""The on-premises agent's side of the server: `/api/agent/…`, JSON over HTTPS.

An agent authenticates with its token (`Authorization: Agent <token>`, only a SHA-256 of
it kept) and can do nothing but its own pool's work: lease a scan or a batch (the same
leases as a worker: an expiry it renews, handed out again when it lapses), post what the
engine produced, and heartbeat. Every post is idempotent: a scan chunk names the cursor
it continues from, a batch's outcomes are recorded once under the lease (the database
sink, jobs/sink.py, does the writing), so a post retried after a lost answer counts once.
It never receives a key of the destination cloud. Unknown or revoked tokens and wrong
enrolment codes count as failures per address, with the API's tokens: past the limit
every try from that address is a 429 until the minute is over (AuthFailureThrottle).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from migrator.acl.apply import AclPlan, target_of
from migrator.engine.copy import CopyTask, Outcome
from migrator.engine.permissions import BatchAcl, NewAclRecord
from migrator.engine.wire import TASK_FIELDS, outcome_from_wire, row_from_wire, task_from_wire
from migrator.storage import StorageError

from . import delta, permissions, services, sink, windows
from .choices import JOB_RUNNING, BatchState, PassKind, PassState
from .connectors import open_endpoint
from .dispatch import enqueue
from .models import Agent, Batch, FileItem, MigrationJob, Pass
from .options import PERMISSIONS

if TYPE_CHECKING:
    from accounts.api.authentication import AuthFailureThrottle

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _failure_throttle() -> AuthFailureThrottle:
    # imported here: the API's module loads DRF and drf-spectacular, and the admin imports
    # this module, so at the top it would slow every process's start (migrator_run's too)
    from accounts.api.authentication import AuthFailureThrottle

    return AuthFailureThrottle()


def _too_many_failures(throttle: AuthFailureThrottle, request: HttpRequest) -> JsonResponse | None:
    """429 while this address is past its failed tokens and codes (the API's own count)."""
    if not throttle.blocked(request):
        return None
    wait = throttle.retry_after()
    refused = _error(429, f"Too many failed tokens or codes from this address: try again in "
                          f"{wait} s.")  # fmt: skip
    refused["Retry-After"] = str(wait)
    return refused


def agent_view(view: Callable) -> Callable:
    """POST with a JSON body, by an agent whose token is valid and not revoked."""

    @csrf_exempt  # no cookies: the token in the header is the credential
    @require_POST
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        kind, _, token = request.headers.get("Authorization", "").partition(" ")
        if kind != "Agent" or not token:
            return _error(401, "An agent token is needed: Authorization: Agent <token>.")
        throttle = _failure_throttle()
        if refused := _too_many_failures(throttle, request):
            return refused
        agent = (
            Agent.objects.select_related("pool")
            .filter(token_hash=services.token_hash(token))
            .first()
        )
        if agent is None or agent.revoked_at is not None:
            throttle.record_failure(request)
        if agent is None:
            return _error(401, "This agent token is not known: enrol the agent again.")
        if agent.revoked_at is not None:
            return _error(401, "This agent was revoked: enrol it again to use it.")
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _error(400, "The body is not JSON.")
        return view(request, agent, body, *args, **kwargs)

    return wrapped


def _own_pass(agent: Agent, pass_id: int) -> Pass | None:
    return Pass.objects.filter(pk=pass_id, job__agent_pool_id=agent.pool_id).first()


def _own_batch(agent: Agent, batch_id: int) -> Batch | None:
    return Batch.objects.filter(pk=batch_id, job__agent_pool_id=agent.pool_id).first()


@csrf_exempt
@require_POST
def enroll(request: HttpRequest) -> JsonResponse:
    throttle = _failure_throttle()  # codes are guessed like tokens: the same count
    if refused := _too_many_failures(throttle, request):
        return refused
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _error(400, "The body is not JSON.")
    try:
        agent, token = services.agent_enroll(
            code=str(body.get("code", "")), name=str(body.get("name", "")),
            version=str(body.get("version", "")),
        )  # fmt: skip
    except services.EnrollmentError as exc:
        throttle.record_failure(request)
        return _error(403, str(exc))
    return JsonResponse({"agent_id": agent.pk, "token": token, "pool": agent.pool.name})


def _status_store(agent: Agent, status: Any) -> None:
    """Keep what one process of the agent said (`run --workers N` runs N, each heartbeating
    as itself) beside what its other processes said last, and the agent's totals: every
    batch held, the summed throughput. A process not heard from for as long as makes an
    agent offline is forgotten. A status without a process (an older agent) is kept as
    it came; None (a work request that said nothing) only marks the agent seen."""
    if status is None:
        Agent.objects.filter(pk=agent.pk).update(last_seen=timezone.now())
        return
    status = status if isinstance(status, dict) else {}
    key = status.get("process")
    if not key:
        services.agent_heartbeat(agent=agent, status=status)
        return
    now = timezone.now().timestamp()
    expired = now - 3 * settings.MIGRATOR_AGENT_POLL_SECONDS
    with transaction.atomic():  # two processes heartbeating at once: neither lost
        stored = (
            Agent.objects.select_for_update().filter(pk=agent.pk)
            .values_list("status", flat=True).first()
        )  # fmt: skip
        known = (stored or {}).get("processes") if isinstance(stored, dict) else None
        processes = {
            str(k): v for k, v in (known or {}).items()
            if isinstance(v, dict) and float(v.get("seen") or 0) >= expired
        }  # fmt: skip
        processes[str(key)] = {**status, "seen": now}
        services.agent_heartbeat(agent=agent, status=status_totals(processes))


def status_totals(processes: dict[str, dict]) -> dict[str, Any]:
    """The agent's status from its processes': host, version and free disk as the latest
    said them, the throughputs summed, what each holds listed; `processes` kept."""
    latest = max(processes.values(), key=lambda p: float(p.get("seen") or 0))
    rates = [p.get("bytes_per_s") for p in processes.values()]
    return {
        "version": latest.get("version", ""),
        "host": latest.get("host"),
        "free_disk": latest.get("free_disk"),
        "bytes_per_s": sum(r for r in rates if isinstance(r, int | float)),
        "held": [p["holding"] for _, p in sorted(processes.items()) if p.get("holding")],
        "processes": processes,
    }


@agent_view
def heartbeat(request, agent: Agent, body: dict) -> JsonResponse:
    _status_store(agent, body.get("status") or {})
    return JsonResponse({"ok": True, "poll_seconds": settings.MIGRATOR_AGENT_POLL_SECONDS})


def _endpoint(endpoint) -> dict:
    # the source is at the agent's site: its credentials go with the work (over HTTPS);
    # a cloud destination's never do
    return {"url": endpoint.url, "secret": endpoint.get_secret() or None}


@agent_view
def work(request, agent: Agent, body: dict) -> JsonResponse:
    _status_store(agent, body.get("status") or None)
    leased = services.agent_work_lease(agent=agent)
    if leased is None:
        return JsonResponse({"kind": "none", "poll_seconds": settings.MIGRATOR_AGENT_POLL_SECONDS})
    kind, pk, lease = leased
    if kind == "scan":
        p = Pass.objects.select_related("job__source", "job__destination", "job__customer").get(
            pk=pk
        )
        job = p.job
        refused = None
        if p.kind != PassKind.ASSESS:
            refused = permissions.agent_refusal(job) or services.agent_destination_refusal(
                job.destination
            )
        if refused:  # said to staff in the job's error and events; the job fails
            services.job_cannot_start(job_id=job.pk, where="options", error=ValueError(refused))
            return JsonResponse({"kind": "none", "poll_seconds": 1})
        return JsonResponse({
            "kind": "scan", "pass_id": p.pk, "job_id": job.pk, "lease": lease,
            "source": _endpoint(job.source), "destination_kind": job.destination.kind,
            "options": job.options or {}, "cursor": p.scan_cursor,
            "mappings": [[m.position, m.source_path, m.destination_prefix]
                         for m in job.mappings.all()],
            "assess": _assess_work(job) if p.kind == PassKind.ASSESS else None,
        })  # fmt: skip
    batch = Batch.objects.get(pk=pk)
    job = MigrationJob.objects.select_related("source", "destination", "customer").get(
        pk=batch.job_id
    )
    tasks = (
        FileItem.objects.filter(job_pass_id=batch.job_pass_id, id__gte=batch.first_id,
                                id__lte=batch.last_id, state="pending")
        .order_by("id").values_list(*TASK_FIELDS)
    )  # fmt: skip
    tasks = [list(t) for t in tasks]
    if refused := services.agent_destination_refusal(job.destination):  # changed since its scan
        services.batch_release(batch_id=batch.pk, token=lease)
        services.job_cannot_start(job_id=job.pk, where="options", error=ValueError(refused))
        return JsonResponse({"kind": "none", "poll_seconds": 1})
    destination, given = _endpoint(job.destination), {}
    if job.destination.kind == "gs":  # no key leaves the server: a session per object
        try:
            destination, given = _gcs_sessions(job, tasks)
        except StorageError as exc:
            services.batch_release(batch_id=batch.pk, token=lease,
                                   delay=settings.MIGRATOR_RETRY_LATER_SECONDS)  # fmt: skip
            return JsonResponse({"kind": "none", "poll_seconds": 1, "error": str(exc)})
    perms, only = sink._batch_permissions(job, batch.job_pass_id, _batch_sink(batch, lease))
    return JsonResponse({
        "kind": "batch", "batch_id": batch.pk, "job_id": job.pk, "lease": lease,
        "pass_id": batch.job_pass_id, "source": _endpoint(job.source),
        "destination": destination, "given": given, "tasks": tasks,
        "only": only, "permissions": _permissions_work(job, perms.target) if perms else None,
        "options": {"policy": job.on_exists, "bwlimit": windows.agent_share(job=job),
                    "threads": settings.MIGRATOR_COPY_THREADS,
                    "retry_attempts": settings.MIGRATOR_RETRY_ATTEMPTS,
                    "backoff": settings.MIGRATOR_RETRY_BACKOFF,
                    "hashes": (job.options or {}).get("hashes") or []},
    })  # fmt: skip


def _assess_work(job: MigrationJob) -> dict:
    """What an assessment's scan needs besides a copy's: the destination's file size limit,
    the last copy's rate for the estimate, and what the SID survey needs."""
    from migrator.engine.scan import MAX_FILE_SIZE

    surveyed = permissions.enabled(job) and permissions.source_has_acls(job.source)
    return {
        "max_file_size": MAX_FILE_SIZE.get(job.destination.kind),
        "last_rate": sink._last_rate(job),
        "threads": settings.MIGRATOR_COPY_THREADS,
        "permissions": (
            _permissions_work(job, target_of(job.destination.kind)) if surveyed else None
        ),
    }


def _permissions_work(job: MigrationJob, target: str) -> dict:
    """What the agent needs to read, translate and apply a batch's permissions: the
    job's options, the directory that resolves its SIDs (the customer's AD, at the
    agent's site; its password goes over HTTPS with the work, is kept in the agent's
    memory only and is never logged) and the identity CSV's lines."""
    return {
        "options": (job.options or {}).get(PERMISSIONS),
        "target": target,
        "directory": permissions.directory_settings(job),
        "overrides": [[o.source, o.target, o.type] for o in job.identity_overrides.all()],
    }


def _gcs_sessions(job: MigrationJob, tasks: list[list]) -> tuple[dict, dict]:
    """For a GCS destination: an upload session per object to write, and the outcomes
    decided here, where the keys are (already there and the same: unchanged; newer there
    under the "newer" policy: excluded). One listing per folder answers what is there."""
    from migrator.engine.compare import newer, same_file
    from migrator.engine.copy import DestinationIndex, Policy
    from migrator.storage import capabilities_of

    policy = Policy(job.on_exists)
    source_caps = capabilities_of(job.source.url)
    sessions: dict[str, str] = {}
    given: dict[int, list[str]] = {}
    with open_endpoint(job.destination) as gcs:
        index = DestinationIndex(gcs)
        for values in tasks:
            task = task_from_wire(values)
            if task.kind == "dir":
                continue  # a bucket has no folders: the engine counts them unchanged
            existing = index.stat(task.dest_path) if policy is not Policy.OVERWRITE else None
            if existing is not None:
                entry = task.entry()
                if same_file(entry, existing, source_caps, gcs.capabilities):
                    given[task.item_id] = ["unchanged", ""]
                    continue
                if policy is Policy.NEWER and not newer(entry, existing, source_caps,
                                                        gcs.capabilities):  # fmt: skip
                    given[task.item_id] = ["excluded", "destination_newer"]
                    continue
                if policy is Policy.KEEP_BOTH:
                    given[task.item_id] = ["failed", "unsupported"]
                    continue
            sessions[task.dest_path] = gcs.upload_session(task.dest_path, task.entry())
    return {"kind": "sessions", "url": job.destination.url, "sessions": sessions}, given


@agent_view
def lease(request, agent: Agent, body: dict) -> JsonResponse:
    """Renew a lease while the work goes on; says whether it is still held and whether the
    job still runs (paused, cancelled: stop between files)."""
    token, kind, pk = str(body.get("lease", "")), body.get("kind"), int(body.get("id", 0))
    if kind == "scan":
        p = _own_pass(agent, pk)
        held = bool(p) and services.scan_lease_renew(pass_id=pk, token=token)
    else:
        b = _own_batch(agent, pk)
        held = bool(b) and services.batch_lease_renew(batch_id=pk, token=token)
        p = Pass.objects.filter(pk=b.job_pass_id).first() if b else None
    running = bool(p) and MigrationJob.objects.filter(pk=p.job_id, state__in=JOB_RUNNING).exists()
    return JsonResponse({"held": held, "running": running})


@agent_view
def scan_chunk(request, agent: Agent, body: dict, pass_id: int) -> JsonResponse:
    p = _own_pass(agent, pass_id)
    if p is None:
        return _error(404, "No such pass for this agent.")
    cursor, after = str(body.get("cursor", "")), str(body.get("after", ""))
    if p.scan_cursor == cursor and cursor != after:
        return JsonResponse({"ok": True, "duplicate": True})  # a retried post, kept already
    if p.scan_cursor != after:
        return _error(409, f"The scan is at {p.scan_cursor!r}, not {after!r}.")
    try:
        rows = [row_from_wire(p.job_id, p.pk, values) for values in body.get("rows", [])]
    except (ValueError, TypeError) as exc:
        return _error(400, f"Bad rows: {exc}.")
    kept = sink.ScanSink(p, str(body.get("lease", ""))).scan_chunk(rows, cursor)
    return JsonResponse({"ok": kept, "stop": not kept})


@agent_view
def scan_done(request, agent: Agent, body: dict, pass_id: int) -> JsonResponse:
    p = _own_pass(agent, pass_id)
    if p is None:
        return _error(404, "No such pass for this agent.")
    if p.scan_finished:
        return JsonResponse({"ok": True, "duplicate": True})
    figures = body.get("assessment") if p.kind == PassKind.ASSESS else None
    if not isinstance(figures, dict):
        figures = None
    elif PERMISSIONS not in figures:  # as a worker says it of a source without ACLs
        job = MigrationJob.objects.select_related("source").get(pk=p.job_id)
        if permissions.enabled(job) and not permissions.source_has_acls(job.source):
            figures[PERMISSIONS] = {"error": "the source has no ACLs"}
    lease = str(body.get("lease", ""))
    # a catch-up pass: the server lists a GCS destination itself, in a task that holds the
    # scan's lease from now on (a large bucket takes longer than the agent waits for an
    # answer) and says the scan is done after it; one behind the agent is not re-listed
    # (destination_check says so in an event)
    if delta.check_due(p):
        token = delta.check_lease(job_pass=p, lease=lease)
        if token is None:
            return JsonResponse({"ok": False})
        if token:  # "": the check is already under way (this post was sent again)
            enqueue("jobs.tasks.delta_check", p.pk, token)
        return JsonResponse({"ok": True, "checking": True})
    if not delta.destination_check(job_pass=p, token=lease):
        return JsonResponse({"ok": False})
    kept = sink.ScanSink(p, lease).scan_done(figures)
    return JsonResponse({"ok": kept})


def scan_done_checked(*, pass_id: int, token: str) -> None:
    """The task after an agent's catch-up scan: the destination checked under the lease
    `token` (delta.check_lease), then the scan done. When the listing fails or the lease
    is lost, the scan is not done: its lease lapses and the agent is handed it again."""
    p = Pass.objects.filter(pk=pass_id).first()
    if p is None or not delta.destination_check(job_pass=p, token=token):
        return
    sink.ScanSink(p, token).scan_done(None)


@agent_view
def scan_interrupted(request, agent: Agent, body: dict, pass_id: int) -> JsonResponse:
    from migrator.storage import Transient

    p = _own_pass(agent, pass_id)
    if p is None or p.state != PassState.RUNNING:
        return _error(404, "No such pass for this agent.")
    error = Transient(str(body.get("path", "")), str(body.get("error", ""))[:500])
    sink.ScanSink(p, str(body.get("lease", ""))).scan_interrupted(error)
    return JsonResponse({"ok": True})


class _Held:
    """BatchSink's stop signal, for a batch recorded from an agent's post."""

    class stop:  # noqa: N801 - the shape of threading.Event the sink reads
        @staticmethod
        def is_set() -> bool:
            return False

        @staticmethod
        def set() -> None:
            pass


def _batch_sink(batch: Batch, token: str) -> sink.BatchSink:
    job = MigrationJob.objects.select_related("customer", "destination").get(pk=batch.job_id)
    return sink.BatchSink(batch, job, token, _Held())  # type: ignore[arg-type]


@agent_view
def batch_record(request, agent: Agent, body: dict, batch_id: int) -> JsonResponse:
    batch = _own_batch(agent, batch_id)
    if batch is None:
        return _error(404, "No such batch for this agent.")
    if batch.state == BatchState.DONE:
        return JsonResponse({"recorded": False, "duplicate": True})
    try:
        tasks, outcomes = _posted(batch, body)
    except (ValueError, TypeError) as exc:
        return _error(400, f"{exc}")
    batch_sink = _batch_sink(batch, str(body.get("lease", "")))
    job = batch_sink.job
    if body.get("acl") and permissions.enabled(job) and target_of(job.destination.kind) == "gs":
        # the plans' object ACLs need the bucket's key, which only the server holds: a task
        # applies them, then records the batch (the lease kept meanwhile), so the counters
        # and outcomes are those the cluster records and the pass cannot finish before
        try:
            _acl_checked(body["acl"])
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            return _error(400, f"Bad permissions: {exc}.")
        if not services.batch_lease_renew(batch_id=batch.pk, token=batch_sink.token):
            return JsonResponse({"recorded": False})
        enqueue("jobs.tasks.apply_agent_acls", batch.pk, batch_sink.token, body)
        return JsonResponse({"recorded": True, "acls": "queued"})
    acl = None
    if body.get("acl") and permissions.enabled(job):
        try:
            acl, _ = _batch_acl(batch_sink, body["acl"])
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            return _error(400, f"Bad permissions: {exc}.")
    return JsonResponse({"recorded": _record(batch_sink, tasks, outcomes, acl)})


def _posted(batch: Batch, body: dict) -> tuple[list[CopyTask], list[Outcome]]:
    """The batch's pending items, as a worker reads them, and the posted outcomes for
    them (all of them finish it; fewer, the agent was told to stop, hand it back, the
    rest pending). ValueError, in words, for outcomes that are not this batch's."""
    try:
        outcomes = [outcome_from_wire(values) for values in body.get("outcomes", [])]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"Bad outcomes: {exc}.") from exc
    rows = FileItem.objects.filter(
        job_pass_id=batch.job_pass_id, id__gte=batch.first_id, id__lte=batch.last_id,
        state="pending",
    ).values_list(*TASK_FIELDS)  # fmt: skip
    tasks = [task_from_wire(values) for values in rows]
    known = {t.item_id for t in tasks}
    if any(o.item_id not in known for o in outcomes):
        raise ValueError("An outcome names an item that is not pending in this batch.")
    return tasks, outcomes


def _acl_checked(posted: dict) -> None:
    """Raise what _batch_acl would on a malformed post, storing nothing: the task that
    stores it later cannot answer the agent."""
    for key, sd, stored in posted.get("records") or ():
        base64.b64decode(sd, validate=True)
        AclPlan.from_stored({f: stored[f] for f in permissions.PLAN_FIELDS if f in stored}, "gs")
        str(key)
    for item_id, _ in posted.get("items") or ():
        int(item_id)


def _record(
    batch_sink: sink.BatchSink, tasks: list[CopyTask], outcomes: list[Outcome], acl: BatchAcl | None
) -> bool:
    """Record the batch as a worker does; a bucket's refused uploads are removed here
    (the agent cannot delete)."""
    recorded = batch_sink.batch_record(tasks, outcomes, acl)
    by_id = {t.item_id: t for t in tasks}
    refused = [o.dest_path or by_id[o.item_id].dest_path for o in outcomes
               if o.reason == "checksum_mismatch"]  # fmt: skip
    job = batch_sink.job
    if recorded and refused and job.destination.kind == "gs":
        with open_endpoint(job.destination) as gcs:
            for dest in refused:
                try:
                    gcs.delete(dest)
                except StorageError:
                    log.warning("could not remove a refused upload: %s", dest)
    return recorded


def agent_acls_apply(*, batch_id: int, token: str, body: dict) -> bool:
    """An agent's batch to a bucket, posted with its ACL plans: store its records, apply
    each copied object's planned ACL with the bucket's key (as the cluster's batches do:
    an object whose ACL cannot be set fails with acl_failed; a bucket with uniform
    access gets none, said once), then record the batch under the agent's lease. False
    when the lease was lost meanwhile (the batch is handed out again and counts then)."""
    from migrator.engine.copy import CopyOptions
    from migrator.engine.permissions import apply_planned

    batch = Batch.objects.filter(pk=batch_id).first()
    if batch is None or not services.batch_lease_renew(batch_id=batch_id, token=token):
        return False
    tasks, outcomes = _posted(batch, body)
    batch_sink = _batch_sink(batch, token)
    acl, plans = _batch_acl(batch_sink, body["acl"])
    by_id = {t.item_id: t for t in tasks}
    work = [(by_id[o.item_id], o, plans[acl.item_acl[o.item_id]])
            for o in outcomes if o.item_id in acl.item_acl]  # fmt: skip
    acl.applied = set()  # what is applied is what the server applies now
    options = CopyOptions(
        threads=settings.MIGRATOR_COPY_THREADS,
        retry_attempts=settings.MIGRATOR_RETRY_ATTEMPTS,
        backoff=settings.MIGRATOR_RETRY_BACKOFF,
    )
    apply_planned(work, "gs", batch.job_pass_id, lambda: open_endpoint(batch_sink.job.destination),
                  options, batch_sink, acl)  # fmt: skip
    return _record(batch_sink, tasks, outcomes, acl)


def _batch_acl(batch_sink: sink.BatchSink, posted: dict) -> tuple[BatchAcl, dict[int, AclPlan]]:
    """The agent's ACL records stored as a worker stores them (one already stored, by an
    earlier try of this post or another batch, is kept), and what permissions did in the
    batch in terms of the stored records' ids, for the batch's record; the records' plans
    by id."""
    fields = permissions.PLAN_FIELDS
    records = [
        NewAclRecord(str(key), base64.b64decode(sd, validate=True),
                     {f: stored[f] for f in fields if f in stored})
        for key, sd, stored in posted.get("records") or ()
    ]  # fmt: skip
    batch_sink.acl_records_add(records)
    found = batch_sink.acl_records(r.key for r in records)
    target = target_of(batch_sink.job.destination.kind)
    acl = BatchAcl(batch_sink.batch.job_pass_id)
    plans = {}
    for record_id, stored in found.values():
        plan = plans[record_id] = AclPlan.from_stored(stored, target)
        acl.flags[record_id] = (bool(plan.narrowed), bool(plan.denied), bool(plan.unmapped))
    for item_id, key in posted.get("items") or ():
        if key in found:
            acl.item_acl[int(item_id)] = found[key][0]
    acl.applied = {int(i) for i in posted.get("applied") or ()}
    return acl, plans


@agent_view
def batch_halt(request, agent: Agent, body: dict, batch_id: int) -> JsonResponse:
    from migrator.storage import DestinationFull

    batch = _own_batch(agent, batch_id)
    if batch is None:
        return _error(404, "No such batch for this agent.")
    error = DestinationFull(str(body.get("path", "")), str(body.get("error", ""))[:500])
    _batch_sink(batch, str(body.get("lease", ""))).halt(error)
    return JsonResponse({"ok": True})


@agent_view
def batch_event(request, agent: Agent, body: dict, batch_id: int) -> JsonResponse:
    batch = _own_batch(agent, batch_id)
    if batch is None:
        return _error(404, "No such batch for this agent.")
    level = body.get("level") if body.get("level") in ("info", "warning", "error") else "info"
    _batch_sink(batch, "").event(str(body.get("message", ""))[:2000], level=level,
                                 once=bool(body.get("once")))  # fmt: skip
    return JsonResponse({"ok": True})


def agents_online_since():
    """Agents seen within three heartbeats count as online."""
    return timezone.now() - timezone.timedelta(seconds=3 * settings.MIGRATOR_AGENT_POLL_SECONDS)


app_name = "agent_api"
urlpatterns = [
    path("enroll/", enroll, name="enroll"),
    path("heartbeat/", heartbeat, name="heartbeat"),
    path("work/", work, name="work"),
    path("lease/", lease, name="lease"),
    path("scan/<int:pass_id>/chunk/", scan_chunk, name="scan_chunk"),
    path("scan/<int:pass_id>/done/", scan_done, name="scan_done"),
    path("scan/<int:pass_id>/interrupted/", scan_interrupted, name="scan_interrupted"),
    path("batch/<int:batch_id>/record/", batch_record, name="batch_record"),
    path("batch/<int:batch_id>/halt/", batch_halt, name="batch_halt"),
    path("batch/<int:batch_id>/event/", batch_event, name="batch_event"),
]
