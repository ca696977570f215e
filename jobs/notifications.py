"""Notifications: email and webhooks when a job starts, ends, fails, needs a person or is
signed off.

`notify(job, event, **detail)` is the one entry point. It only enqueues (after the
caller's transaction commits) and swallows its own errors, so it never blocks or fails
what called it. The task `jobs.tasks.notify_event` then emails the people who opted in
(staff, and the job's customer's viewers for their own jobs only) and records one
WebhookDelivery per matching webhook, each sent by `jobs.tasks.deliver_webhook`: an HTTPS
POST of JSON signed with HMAC-SHA256, retried after 1, 5 and 30 minutes, then given up.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from .choices import JOB_RUNNING, EventLevel
from .dispatch import enqueue
from .models import (
    Agent,
    Event,
    MigrationJob,
    NotificationPreference,
    Webhook,
    WebhookDelivery,
)

log = logging.getLogger(__name__)


class NotificationEvent(models.TextChoices):
    STARTED = "job_started", "Job started"
    COMPLETED = "job_completed", "Job completed"
    COMPLETED_WITH_ERRORS = "job_completed_with_errors", "Job completed with errors"
    FAILED = "job_failed", "Job failed"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"
    SIGNED_OFF = "signed_off", "Sign-off given"


EVENTS = NotificationEvent.values
BACKOFF_SECONDS = (60, 300, 1800)  # after the 1st, 2nd, 3rd attempt; then give up
EXCERPT_CHARS = 500
ERROR_GROUPS_SENT = 5
SIGNATURE_HEADER = "X-Migrator-Signature"
TIMESTAMP_HEADER = "X-Migrator-Timestamp"
PENDING, SENDING, DELIVERED, RETRY, FAILED = "pending", "sending", "delivered", "retry", "failed"


# --- the entry point ------------------------------------------------------------------------


def notify(job: MigrationJob | int, event: str, **detail) -> None:
    """Tell whoever asked that `event` happened to `job`: enqueued after commit; never
    raises (a notification must not fail the work it reports)."""
    try:
        job_id = int(getattr(job, "pk", job))
        plain_detail = {str(k): v if isinstance(v, int | float | bool) else str(v)
                        for k, v in detail.items()}  # fmt: skip
        enqueue("jobs.tasks.notify_event", job_id, str(event), plain_detail)
    except Exception:
        log.exception("notification %s of job %s not queued", event, job)


# --- what is said ---------------------------------------------------------------------------


def payload_of(job: MigrationJob, event: str, detail: dict) -> dict:
    """The JSON a webhook receives (and an email says in words): only what the job's
    customer may read (plain words, never the staff-only detail)."""
    p = job.current_pass
    counts = None
    if p is not None:
        counts = {
            "number": p.number,
            "kind": p.kind,
            "state": p.state,
            **{k: getattr(p, k) for k in ("seen", "copied", "unchanged", "excluded", "failed",
                                            "pending", "bytes_seen", "bytes_copied")},
        }  # fmt: skip
    body = {
        "event": event,
        "job": {
            "id": job.pk,
            "name": job.name,
            "customer": job.customer.name,
            "state": job.state,
        },  # fmt: skip
        "pass": counts,
        "at": timezone.now().isoformat(),
        "detail": detail,
    }
    if event == NotificationEvent.COMPLETED_WITH_ERRORS and p is not None:
        from .selectors import error_groups

        groups = error_groups(job_pass=p, profile=(job.options or {}).get("profile", ""))
        body["error_groups"] = [
            {"reason": g.reason_label, "count": g.count, "files": g.files, "cause": g.cause,
             "fix": g.fix}
            for g in groups[:ERROR_GROUPS_SENT]
        ]  # fmt: skip
    if event == NotificationEvent.FAILED:
        from .selectors import job_public_error

        body["error"] = job_public_error(job)
    return body


def email_text(payload: dict) -> tuple[str, str]:
    """(subject, body) of the email about `payload`."""
    job = payload["job"]
    label = NotificationEvent(payload["event"]).label
    subject = f"[Migrator] {job['name']}: {label}"
    lines = [f"{label}: {job['name']} ({job['customer']}), now {job['state']}.", ""]
    if payload.get("detail", {}).get("message"):
        lines += [payload["detail"]["message"], ""]
    p = payload.get("pass")
    if p:
        lines.append(
            f"Pass {p['number']}: {p['seen']} files seen, {p['copied']} copied, "
            f"{p['unchanged']} unchanged, {p['excluded']} excluded, {p['failed']} failed, "
            f"{p['pending']} pending."
        )
    for group in payload.get("error_groups", []):
        lines.append(f"- {group['reason']} ({group['count']}): {group['cause']} {group['fix']}")
    if payload.get("error"):
        lines.append(payload["error"])
    lines += ["", f"At {payload['at']}."]
    if settings.MIGRATOR_PUBLIC_URL:
        lines.append(f"{settings.MIGRATOR_PUBLIC_URL}/portal/jobs/{job['id']}/")
    return subject, "\n".join(lines)


# --- who is told ----------------------------------------------------------------------------


def email_recipients(job: MigrationJob, event: str) -> list[str]:
    """Addresses of active users who opted in to `event` for `job` (in a preference of the
    job, of its customer, or, for staff, of every job) and who may see the job: a
    customer's viewer is never told about another customer's job."""
    from .selectors import jobs_visible_to

    prefs = NotificationPreference.objects.filter(user__is_active=True, email=True).filter(
        Q(job=job) | Q(job__isnull=True, customer=job.customer_id)
        | Q(job__isnull=True, customer__isnull=True)
    ).select_related("user")  # fmt: skip
    users = {}
    for pref in prefs:
        if event not in (pref.events or []) or not pref.user.email:
            continue
        if pref.customer_id is None and pref.job_id is None and not pref.user.is_staff:
            continue  # "every job" is staff's choice only
        users[pref.user_id] = pref.user
    found = {u.email for u in users.values() if jobs_visible_to(u).filter(pk=job.pk).exists()}
    return sorted(found)


def webhooks_for(job: MigrationJob, event: str) -> list[Webhook]:
    hooks = Webhook.objects.filter(customer_id=job.customer_id, active=True).filter(
        Q(job__isnull=True) | Q(job=job)
    )
    return [h for h in hooks if not h.events or event in h.events]


def notification_send(*, job_id: int, event: str, detail: dict) -> None:
    """The task's work: email the opted-in people, queue a delivery per webhook."""
    job = MigrationJob.objects.select_related("customer", "current_pass").filter(pk=job_id).first()
    if job is None or event not in EVENTS:
        return
    payload = payload_of(job, event, detail)
    try:
        emails_send(job, event, payload)
    except Exception:
        log.exception("notification %s of job %s: email not sent", event, job_id)
    with transaction.atomic():
        for hook in webhooks_for(job, event):
            delivery = WebhookDelivery.objects.create(webhook=hook, event=event, payload=payload)
            enqueue("jobs.tasks.deliver_webhook", delivery.pk)


def emails_send(job: MigrationJob, event: str, payload: dict) -> int:
    """One message per recipient (no one reads another's address); how many were sent."""
    from django.core.mail import send_mail

    subject, body = email_text(payload)
    sent = 0
    for address in email_recipients(job, event):
        sent += send_mail(subject, body, None, [address])
    return sent


# --- webhooks ---------------------------------------------------------------------------------


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def webhook_url_problem(url: str) -> str:
    """Why `url` cannot be a webhook ("" when it can): https, or plain http to a loopback
    address in development and tests; never a password in it (URLs are shown)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        password = parts.password
    except ValueError:
        return "Not a URL."
    if password is not None:
        return "Put no password in the URL: the webhook's secret signs each delivery."
    if parts.scheme == "https" and host:
        return ""
    if parts.scheme == "http" and _loopback(host) and settings.DEV:
        return ""
    return "Use an https:// URL (plain http only to a loopback address in development)."


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer, not followed
        return None


def _redacted(text: str, secret: str) -> str:
    if secret:
        text = text.replace(secret, "[secret]")
    return text[:EXCERPT_CHARS]


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """(status, the start of the answer's body); raises OSError when nothing answered."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - the URL is checked by webhook_url_problem
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read(4 * EXCERPT_CHARS).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4 * EXCERPT_CHARS).decode("utf-8", "replace")


def webhook_deliver(*, delivery_id: int) -> None:
    """Send one attempt; record its answer; on failure queue the next attempt with
    backoff (jobs.tasks.notifications_due sends it when due), or give up after the last.
    Never raises: whatever went wrong is the attempt's error."""
    if not WebhookDelivery.objects.filter(pk=delivery_id, state=PENDING).update(state=SENDING):
        return  # sent already, or being sent
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    hook = delivery.webhook
    status, excerpt, error, secret = None, "", "", ""
    try:
        secret = hook.get_secret() if hook.has_secret else ""
    except Exception as exc:  # a key removed from MIGRATOR_FERNET_KEYS: said, not raised
        error = str(exc)
    body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Migrator-Webhook/1",
        "X-Migrator-Event": delivery.event,
        "X-Migrator-Delivery": str(delivery.pk),
        TIMESTAMP_HEADER: str(int(time.time())),
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    problem = webhook_url_problem(hook.url)
    if problem or not hook.active:
        error = problem or "The webhook is not active."
    elif not error:
        try:
            status, excerpt = _post(hook.url, body, headers)
        except Exception as exc:  # refused, timed out, TLS, a malformed answer
            error = f"{type(exc).__name__}: {exc}"
    ok = status is not None and 200 <= status < 300
    delivery.status_code = status
    delivery.response_excerpt = _redacted(excerpt, secret)
    delivery.error = _redacted(error, secret)
    delivery.sent_at = timezone.now()
    delivery.state = DELIVERED if ok else RETRY
    retry = not ok and hook.active and not problem and delivery.attempt <= len(BACKOFF_SECONDS)
    with transaction.atomic():
        if not ok and not retry:
            delivery.state = FAILED
            log.warning(
                "webhook %s gave up on %s of job %s after %s attempt(s): %s",
                hook.pk, delivery.event, delivery.payload.get("job", {}).get("id"),
                delivery.attempt, delivery.error or f"HTTP {status}",
            )  # fmt: skip
        delivery.save()
        if retry:
            WebhookDelivery.objects.create(
                webhook=hook,
                event=delivery.event,
                payload=delivery.payload,
                attempt=delivery.attempt + 1,
                next_retry_at=delivery.sent_at
                + timedelta(seconds=BACKOFF_SECONDS[delivery.attempt - 1]),
            )


def webhook_retries_due(*, now: datetime | None = None) -> int:
    """Periodic: queue the deliveries whose retry time has come, and first attempts whose
    task was lost (a killed worker, a Redis broker restarted); how many."""
    now = now or timezone.now()
    lost = Q(next_retry_at__isnull=True, created_at__lte=now - timedelta(minutes=10))
    due = list(
        WebhookDelivery.objects.filter(Q(next_retry_at__lte=now) | lost, state=PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)[:1000]
    )
    with transaction.atomic():
        for pk in due:
            enqueue("jobs.tasks.deliver_webhook", pk)
    return len(due)


# --- agents offline ---------------------------------------------------------------------------


def agents_offline_check(*, now: datetime | None = None) -> int:
    """Periodic: an enrolled agent not heard from for MIGRATOR_AGENT_OFFLINE_MINUTES while
    its pool has a running job: said once per silence in each such job's events, and
    notified as needing attention. How many jobs were told."""
    now = now or timezone.now()
    minutes = settings.MIGRATOR_AGENT_OFFLINE_MINUTES
    silent = Agent.objects.filter(
        revoked_at__isnull=True, last_seen__lt=now - timedelta(minutes=minutes)
    ).select_related("pool")
    told = 0
    for agent in silent:
        message = (
            f"The on-premises agent “{agent.name}” has not been heard from for more than "
            f"{minutes} minutes: the work it holds waits for it."
        )
        for job in MigrationJob.objects.filter(agent_pool=agent.pool_id, state__in=JOB_RUNNING):
            said = Event.objects.filter(job=job, message=message, created_at__gte=agent.last_seen)
            if said.exists():
                continue
            Event.objects.create(job=job, level=EventLevel.WARNING, message=message)
            notify(job, NotificationEvent.NEEDS_ATTENTION, message=message)
            told += 1
    return told
