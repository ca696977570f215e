"""The cutover flow of a job (issue 15): freeze the source, copy what changed last, verify
every file, re-apply permissions, then say whether the customer can switch.

Steps, in order (`CutoverStep`):
1. checklist — the engineer sets the share read-only (the exact commands for the
   source's kind are shown) and continuous mode is stopped (for them, when it is on);
   each item is ticked; `cutover_advance` then starts
2. a final catch-up pass (a COPY pass after a finished one: a delta pass),
3. a verify pass (`services.job_start_verify`: nothing written),
4. a permissions-only pass, only when the job migrates permissions,
5. the "ready to switch" report (`ready_report`): each pass's counts, what is left, a
   verdict. The customer signs it off in the portal with the existing sign-off.

A step with a pass advances when that pass finishes (`cutover_pass_finished`, called at
the end of `services.pass_finish`); a pass that ends with errors stops the flow with the
reason, and `cutover_retry` runs the step again (or `cutover_advance` accepts it as it is).
"""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from . import notifications, permissions, services
from .choices import (
    JOB_FINISHED,
    CutoverState,
    CutoverStep,
    ItemState,
    JobState,
    PassKind,
    Reason,
)
from .models import Cutover, FileItem, MigrationJob, Pass

READ_ONLY = "read_only"
CONTINUOUS = "continuous"
STEP_ORDER = [s.value for s in CutoverStep]
STEP_PASS_KINDS = {
    CutoverStep.FINAL_PASS: (PassKind.COPY,),
    CutoverStep.VERIFY: (PassKind.VERIFY,),
    CutoverStep.PERMISSIONS: (PassKind.PERMISSIONS,),
}
STEP_PASS_FIELD = {
    CutoverStep.FINAL_PASS: "final_pass",
    CutoverStep.VERIFY: "verify_pass",
    CutoverStep.PERMISSIONS: "permissions_pass",
}


class CutoverError(Exception):
    """The cutover cannot do that now; the message says why, in words."""


# --- the checklist ----------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    where: str  # "Windows Server (PowerShell, as an administrator)"
    lines: tuple[str, ...]


@dataclass(frozen=True)
class ChecklistItem:
    key: str
    title: str
    help: str
    commands: tuple[Command, ...] = ()
    ticked: str = ""  # who ticked it and when, in words; "" while not ticked


def _ps_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_only_commands(url: str) -> tuple[Command, ...]:
    """How to make the job's source read-only, by its kind: the share's name comes from an
    SMB URL (smb://[DOMAIN;]user@host[:port]/share/path), the folder from a file URL."""
    parts = urlsplit(url)
    if parts.scheme == "smb":
        segments = [unquote(s) for s in parts.path.split("/") if s]
        share = segments[0] if segments else "<share>"
        q = _ps_quote(share)
        return (
            Command(
                "Windows Server (PowerShell, as an administrator, on the file server)",
                (
                    f"Get-SmbShareAccess -Name {q} | Where-Object {{ $_.AccessRight -ne 'Read' }}"
                    f" | ForEach-Object {{ Revoke-SmbShareAccess -Name {q}"
                    " -AccountName $_.AccountName -Force }",
                    f"Grant-SmbShareAccess -Name {q} -AccountName Everyone -AccessRight Read"
                    " -Force",
                ),
            ),
            Command(
                "Samba (in the share's section of smb.conf, then reload)",
                (f"[{share}]", "read only = yes", "smbcontrol all reload-config"),
            ),
        )
    if parts.scheme in ("file", ""):
        return (
            Command("This machine (shell)", (f"chmod -R a-w {shlex.quote(unquote(parts.path))}",)),
        )
    if parts.scheme == "gs":
        bucket = parts.netloc
        return (
            Command(
                "Google Cloud (remove the writers' roles on the bucket)",
                (f"gcloud storage buckets get-iam-policy gs://{bucket}",
                 f"gcloud storage buckets remove-iam-policy-binding gs://{bucket}"
                 " --member=<writer> --role=roles/storage.objectAdmin"),
            ),
        )  # fmt: skip
    return ()


def _continuous_on(job: MigrationJob) -> bool:
    """Whether the job follows changes (continuous mode, jobs/continuous.py)."""
    state = getattr(job, "continuous", None)  # its ContinuousState, when it ever had one
    return bool(getattr(state, "enabled", False))


def cutover_of(job: MigrationJob) -> Cutover | None:
    """The job's cutover with its passes, or None when none was started."""
    flow = (
        Cutover.objects.filter(job_id=job.pk)
        .select_related("final_pass", "verify_pass", "permissions_pass")
        .first()
    )
    if flow is not None:
        flow.job = job
    return flow


def checklist(cutover: Cutover) -> list[ChecklistItem]:
    job = cutover.job
    ticks = cutover.checklist or {}
    return [
        ChecklistItem(
            READ_ONLY,
            "Set the source read-only",
            "Users keep reading the old share; nothing changes there any more, so the final "
            "pass copies the last changes and the verify pass compares a still source.",
            read_only_commands(job.source.url),
            ticks.get(READ_ONLY, ""),
        ),
        ChecklistItem(
            CONTINUOUS,
            "Stop continuous mode",
            "Done for you when the cutover starts, if the job follows changes.",
            (),
            ticks.get(CONTINUOUS, ""),
        ),
    ]


# --- the flow -------------------------------------------------------------------------


def _who(user) -> str:
    return getattr(user, "username", "") or "the system"


def _tick_words(user) -> str:
    return f"{_who(user)}, {timezone.now():%Y-%m-%d %H:%M} UTC"


def _locked(job: MigrationJob) -> Cutover:
    cutover = Cutover.objects.select_for_update().filter(job_id=job.pk).first()
    if cutover is None:
        raise CutoverError("No cutover was started for this job.")
    return cutover


def _stop_continuous(job: MigrationJob, user) -> bool:
    """Stop continuous mode when it is on; True when it was stopped here."""
    if not _continuous_on(job):
        return False
    from .continuous import continuous_stop  # the watchers' machinery, only when needed

    continuous_stop(job=job, user=user)
    return True


def cutover_start(*, job: MigrationJob, user=None) -> Cutover:
    """Begin (or begin again) the job's cutover at the checklist."""
    if (job.options or {}).get("assess_only"):
        raise CutoverError("An assessment has no cutover: start it from the migration job.")
    if not job.passes.exists():
        raise CutoverError("Run the migration first: a cutover follows a finished copy.")
    with transaction.atomic():
        job = MigrationJob.objects.select_for_update().get(pk=job.pk)
        ticks = {}
        if _stop_continuous(job, user):
            ticks[CONTINUOUS] = f"continuous mode stopped by the cutover ({_tick_words(user)})"
        elif not _continuous_on(job):
            ticks[CONTINUOUS] = "not in continuous mode"
        cutover, _ = Cutover.objects.update_or_create(
            job=job,
            defaults={
                "step": CutoverStep.CHECKLIST, "state": CutoverState.OPEN, "checklist": ticks,
                "after_number": 0, "final_pass": None, "verify_pass": None,
                "permissions_pass": None, "reason": "", "started_by": user, "ready_at": None,
            },
        )  # fmt: skip
        services.event_add_by(job_id=job.pk, done="Cutover started", user=user)
    return cutover


def cutover_tick(*, job: MigrationJob, item: str, user=None, ticked: bool = True) -> Cutover:
    """The engineer ticks (or unticks) a checklist item."""
    if item not in (READ_ONLY, CONTINUOUS):
        raise CutoverError(f"No checklist item “{item}”.")
    with transaction.atomic():
        cutover = _locked(job)
        if cutover.step != CutoverStep.CHECKLIST:
            raise CutoverError("The checklist is done: the flow has moved on.")
        ticks = dict(cutover.checklist or {})
        if ticked:
            ticks[item] = _tick_words(user)
        else:
            ticks.pop(item, None)
        cutover.checklist = ticks
        cutover.save(update_fields=["checklist", "updated_at"])
    return cutover


def _next_step(job: MigrationJob, step: str) -> str:
    following = STEP_ORDER[STEP_ORDER.index(step) + 1]
    if following == CutoverStep.PERMISSIONS and not permissions.enabled(job):
        return CutoverStep.READY
    return following


def _enter(cutover: Cutover, step: str, user) -> None:
    """Move to `step` and start its pass (or, at the end, write the verdict)."""
    job = cutover.job
    cutover.step, cutover.reason = step, ""
    if step == CutoverStep.READY:
        report = ready_report(cutover)
        cutover.state = CutoverState.READY if report.ready else CutoverState.NOT_READY
        cutover.ready_at = timezone.now()
        cutover.save()
        services.event_add(job_id=job.pk, message=f"Cutover: {report.verdict}")
        notifications.notify(job, "needs_attention", message=f"Cutover: {report.verdict}")
        return
    cutover.after_number = (
        job.passes.order_by("-number").values_list("number", flat=True).first() or 0
    )
    cutover.state = CutoverState.RUNNING
    setattr(cutover, STEP_PASS_FIELD[CutoverStep(step)], None)
    cutover.save()
    try:
        if step == CutoverStep.FINAL_PASS:
            services.job_start(job=job, user=user)
        elif step == CutoverStep.VERIFY:
            services.job_start_verify(job=job, user=user)
        else:
            services.job_start_permissions(job=job, user=user)
    except services.JobStateError as exc:
        cutover.state, cutover.reason = CutoverState.STOPPED, str(exc)
        cutover.save(update_fields=["state", "reason", "updated_at"])


def _settle_stalled(cutover: Cutover) -> None:
    """A step still waiting for its pass while the job has ended (cancelled, failed, or
    finished another pass): the pass will not come, so the step stops, to be retried."""
    job = cutover.job
    if cutover.state != CutoverState.RUNNING or job.state not in JOB_FINISHED:
        return
    cutover.state = CutoverState.STOPPED
    cutover.reason = (
        f"{CutoverStep(cutover.step).label}: the job is {job.get_state_display().lower()} "
        "and the step's pass did not finish."
    )
    cutover.save(update_fields=["state", "reason", "updated_at"])


def cutover_advance(*, job: MigrationJob, user=None) -> Cutover:
    """The engineer moves the flow on: from the checklist (every item ticked) to the final
    pass; past a step that stopped with errors (accepting them); never while a pass runs."""
    with transaction.atomic():
        cutover = _locked(job)
        cutover.job = MigrationJob.objects.select_related("source").get(pk=job.pk)
        _settle_stalled(cutover)
        if cutover.state == CutoverState.RUNNING:
            raise CutoverError("A pass of this step is running: the flow advances when it ends.")
        if cutover.step == CutoverStep.READY:
            raise CutoverError("The cutover is finished: start it again to run it anew.")
        if cutover.step == CutoverStep.CHECKLIST:
            missing = [i.title for i in checklist(cutover) if not i.ticked]
            if missing:
                raise CutoverError("Tick every checklist item first: " + "; ".join(missing) + ".")
            _enter(cutover, CutoverStep.FINAL_PASS, user)
        else:
            if cutover.state == CutoverState.STOPPED:
                services.event_add_by(
                    job_id=job.pk, done=f"Cutover step accepted despite: {cutover.reason}",
                    user=user,
                )  # fmt: skip
            _enter(cutover, _next_step(cutover.job, cutover.step), user)
    return cutover


def cutover_retry(*, job: MigrationJob, user=None) -> Cutover:
    """Run a stopped step's pass again."""
    with transaction.atomic():
        cutover = _locked(job)
        cutover.job = MigrationJob.objects.select_related("source").get(pk=job.pk)
        _settle_stalled(cutover)
        if cutover.state != CutoverState.STOPPED or cutover.step not in STEP_PASS_FIELD:
            raise CutoverError("Only a step that stopped can be retried.")
        _enter(cutover, cutover.step, user)
    return cutover


def _failure_words(p: Pass) -> str:
    reasons = Counter(
        dict(
            FileItem.objects.filter(job_pass=p, state=ItemState.FAILED)
            .values_list("reason")
            .annotate(n=Count("id"))
            .values_list("reason", "n")
        )
    )
    said = ", ".join(f"{_reason_label(r)} ×{n}" for r, n in reasons.most_common(5))
    return f"{p.failed} file(s) failed in pass {p.number} ({said})" if said else ""


def _reason_label(code: str) -> str:
    try:
        return str(Reason(code).label)
    except ValueError:
        return code or "no reason"


def _step_problem(p: Pass, job_state: str) -> str:
    if p.failed:
        return _failure_words(p) or f"{p.failed} file(s) failed in pass {p.number}"
    if p.folders_failed:
        return f"{p.folders_failed} folder(s) could not be read in pass {p.number}"
    if job_state == JobState.COMPLETED_WITH_ERRORS:
        return f"pass {p.number} finished with errors (see the job's events)"
    if job_state in (JobState.FAILED, JobState.CANCELLED):
        return f"pass {p.number} did not finish: the job is {job_state}"
    return ""


def cutover_pass_finished(*, pass_id: int) -> None:
    """From services.pass_finish: a pass a running step waited for ended; record it and
    advance, or stop the flow with the reason when it ended with errors."""
    p = Pass.objects.filter(pk=pass_id).first()
    if p is None:
        return
    cutover = (
        Cutover.objects.select_for_update()
        .filter(job_id=p.job_id, state=CutoverState.RUNNING)
        .first()
    )
    if cutover is None or cutover.step not in STEP_PASS_FIELD:
        return
    step = CutoverStep(cutover.step)
    if p.number <= cutover.after_number or p.kind not in STEP_PASS_KINDS[step]:
        return
    cutover.job = MigrationJob.objects.select_related("source").get(pk=p.job_id)
    setattr(cutover, STEP_PASS_FIELD[step], p)
    problem = _step_problem(p, cutover.job.state)
    if problem:
        cutover.state, cutover.reason = CutoverState.STOPPED, f"{step.label}: {problem}."
        cutover.save()
        services.event_add(
            job_id=p.job_id, level="warning",
            message=f"Cutover stopped at {step.label}: {problem}. Retry the step, or accept it.",
        )  # fmt: skip
        notifications.notify(p.job_id, "needs_attention", message=f"Cutover stopped: {problem}.")
        return
    cutover.save()
    _enter(cutover, _next_step(cutover.job, step), user=None)


# --- the ready-to-switch report --------------------------------------------------------


@dataclass
class ReadyReport:
    ready: bool
    verdict: str
    passes: list[tuple[str, Pass]] = field(default_factory=list)  # (step label, pass)
    left: list[tuple[str, int]] = field(default_factory=list)  # (what, how many): blocking
    review: list[tuple[str, int]] = field(default_factory=list)  # settled, worth a look


def ready_report(cutover: Cutover) -> ReadyReport:
    """Each step's pass with its final counts, and what is left: failed files, conflicts,
    verify mismatches and missing files, deletions awaiting confirmation."""
    passes = [
        (CutoverStep(step).label, getattr(cutover, name))
        for step, name in STEP_PASS_FIELD.items()
        if getattr(cutover, name + "_id")
    ]
    left: list[tuple[str, int]] = []
    review: list[tuple[str, int]] = []
    final, verify = cutover.final_pass, cutover.verify_pass
    if final is not None:
        if final.failed:
            left.append(("files that failed in the final pass", final.failed))
        if getattr(final, "conflicts", 0):  # settled by the job's conflict policy
            review.append(("conflicts (changed at the destination) in the final pass",
                           final.conflicts))  # fmt: skip
        if getattr(final, "deletes_state", "") == "awaiting_confirmation":
            pending = final.deleted_at_source - final.deletes_done - final.deletes_failed
            left.append(("deletions awaiting confirmation", max(pending, 0)))
        if getattr(final, "deletes_failed", 0):
            left.append(("deletions that failed", final.deletes_failed))
    if verify is not None:
        by_reason = dict(
            FileItem.objects.filter(job_pass=verify, state=ItemState.FAILED)
            .values_list("reason")
            .annotate(n=Count("id"))
            .values_list("reason", "n")
        )
        mismatch = by_reason.pop(Reason.VERIFY_MISMATCH, 0)
        missing = by_reason.pop(Reason.MISSING_AT_DESTINATION, 0)
        if mismatch:
            left.append(("files that differ at the destination (verify)", mismatch))
        if missing:
            left.append(("files missing at the destination (verify)", missing))
        other = sum(by_reason.values())
        if other:
            left.append(("files the verify pass could not compare", other))
    else:
        left.append(("verify pass not run", 1))
    perms = cutover.permissions_pass
    if perms is not None and perms.failed:
        left.append(("files whose permissions failed", perms.failed))
    if final is None:
        left.append(("final pass not run", 1))
    if left:
        what = "; ".join(f"{what}: {n}" for what, n in left)
        return ReadyReport(False, f"Not ready to switch — {what}.", passes, left, review)
    said = "Ready to switch: every file was copied and verified at the destination."
    if review:
        said += " To review: " + "; ".join(f"{what}: {n}" for what, n in review) + "."
    return ReadyReport(True, said, passes, left, review)


def report_rows(cutover: Cutover):
    """The ready report as CSV rows (section, item, value)."""
    report = ready_report(cutover)
    yield ("verdict", "ready" if report.ready else "not ready", report.verdict)
    for label, p in report.passes:
        for name in ("number", "kind", "state", "seen", "copied", "unchanged", "excluded",
                     "failed", "pending", "bytes_copied"):  # fmt: skip
            yield (label, name, getattr(p, name))
        for name in ("delta_new", "delta_changed", "deleted_at_source", "conflicts"):
            value = getattr(p, name, None)
            yield (label, name, "—" if value is None else value)
    for what, n in report.left:
        yield ("left", what, n)
    for what, n in report.review:
        yield ("review", what, n)
