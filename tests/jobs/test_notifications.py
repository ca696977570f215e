"""Notifications (issue 17): a finished job emails the people who opted in (and never a
viewer of another customer), a real HTTP receiver on loopback gets the signed webhook, a
failed delivery is retried through the task and each attempt is logged with its code, the
secret is never shown, and the portal's preferences page refuses another customer's job."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Customer
from jobs import notifications, services
from jobs.models import Event, NotificationPreference, Webhook, WebhookDelivery

from .factories import Steps, agent_side, new_job, run_job, viewer

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec-3f9a1c-never-shown-7d2e"
EVENTS_ALL = notifications.EVENTS


class Receiver:
    """A real HTTP server on loopback that records each request and answers with the
    next of `codes` (the last one again when they run out)."""

    def __init__(self, codes: list[int], body: str = "ok") -> None:
        self.codes, self.body, self.received = list(codes), body, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), raw))
                code = receiver.codes.pop(0) if len(receiver.codes) > 1 else receiver.codes[0]
                answer = receiver.body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/migrator"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_superuser("eng", "eng@example.test", "pw-Very-long-1")
    client = Client()
    client.force_login(user)
    return user, client


def local_job(tmp_path, name: str = "Payroll share"):
    src = tmp_path / "src"
    (src / "finance").mkdir(parents=True)
    for i in range(3):
        (src / "finance" / f"budget-{i}.xlsx").write_bytes(b"x" * (100 + i))
    job = new_job(src.as_uri(), (tmp_path / "dst").as_uri())
    job.name = name
    job.save(update_fields=["name"])
    return job


def webhook_added_in_admin(client: Client, job, url: str, events: list[str]) -> Webhook:
    """Staff add the webhook through the admin's add form (the secret typed once)."""
    response = client.post(
        "/admin/jobs/webhook/add/",
        {"customer": job.customer_id, "job": "", "name": "customer's SIEM", "url": url,
         "events": events, "active": "on", "secret": SECRET,
         "deliveries-TOTAL_FORMS": "0", "deliveries-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    return Webhook.objects.get(url=url)


def test_completion_email_reaches_opted_in_people_and_never_another_customers_viewer(
    tmp_path, django_user_model, staff, mailoutbox, settings
):
    settings.MIGRATOR_PUBLIC_URL = "https://migrator.example.test"
    job = local_job(tmp_path)
    mine = viewer(django_user_model, "ana", job.customer)
    other_customer = Customer.objects.create(name="Bravo Logistics")
    viewer(django_user_model, "bob", other_customer)
    viewer(django_user_model, "cid", job.customer)  # opted in to nothing
    # ana ticks "completed" for her customer's migrations in the portal
    page = mine.get("/portal/notifications/")
    assert page.status_code == 200 and "Payroll share" in page.content.decode()
    response = mine.post(
        "/portal/notifications/",
        {"customer": [job.customer_id], "job": [job.pk],
         f"events_c{job.customer_id}": ["job_completed", "job_completed_with_errors"]},
    )  # fmt: skip
    assert response.status_code == 302
    # bob asks for every event of his own customer, and a stale row names ana's job
    bob = django_user_model.objects.get(username="bob")
    NotificationPreference.objects.create(user=bob, customer=other_customer, events=EVENTS_ALL)
    NotificationPreference.objects.create(
        user=bob, customer=job.customer, job=job, events=EVENTS_ALL
    )
    NotificationPreference.objects.create(user=bob, events=EVENTS_ALL)  # "every job": staff's
    # staff choose theirs in the admin
    eng, admin = staff
    added = admin.post(
        "/admin/jobs/notificationpreference/add/",
        {"user": eng.pk, "customer": "", "job": "", "events": ["job_completed"], "email": "on"},
    )
    assert added.status_code == 302, added.content.decode()[:2000]

    job = run_job(job)

    assert job.state == "completed"
    completed = [m for m in mailoutbox if "Job completed" in m.subject]
    assert sorted(a for m in completed for a in m.to) == ["ana@example.test", "eng@example.test"]
    assert all(len(m.to) == 1 for m in mailoutbox)  # nobody reads another's address
    mail = completed[0]
    assert mail.subject == "[Migrator] Payroll share: Job completed"
    assert "3 files seen, 3 copied" in mail.body
    assert f"https://migrator.example.test/portal/jobs/{job.pk}/" in mail.body
    assert not [m for m in mailoutbox if {"bob@example.test", "cid@example.test"} & set(m.to)]


def test_webhook_is_signed_with_its_secret_and_received_over_http(tmp_path, staff):
    job = local_job(tmp_path)
    _, admin = staff
    with Receiver([200]) as receiver:
        webhook_added_in_admin(admin, job, receiver.url, ["job_started", "job_completed"])
        run_job(job)

    assert [json.loads(raw)["event"] for _, raw in receiver.received] == [
        "job_started", "job_completed"
    ]  # fmt: skip
    headers, raw = receiver.received[1]
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Migrator-Signature"] == f"sha256={expected}"
    assert abs(int(headers["X-Migrator-Timestamp"]) - timezone.now().timestamp()) < 120
    assert headers["Content-Type"] == "application/json"
    body = json.loads(raw)
    assert body["job"] == {"id": job.pk, "name": "Payroll share", "customer": "ACME",
                           "state": "completed"}  # fmt: skip
    assert {k: body["pass"][k] for k in ("seen", "copied", "failed", "pending")} == {
        "seen": 3, "copied": 3, "failed": 0, "pending": 0
    }  # fmt: skip
    assert body["at"]
    # a body changed on the way no longer matches the signature
    forged = raw.replace(b'"copied":3', b'"copied":4')
    assert hmac.new(SECRET.encode(), forged, hashlib.sha256).hexdigest() != expected
    assert list(WebhookDelivery.objects.values_list("state", "status_code")) == [
        ("delivered", 200), ("delivered", 200)
    ]  # fmt: skip


def test_a_failed_delivery_is_retried_and_each_attempt_logged_and_the_secret_never_shown(
    tmp_path, staff
):
    job = local_job(tmp_path)
    _, admin = staff
    # the receiver's error page echoes what it was configured with, secret included
    with Receiver([500, 200], body=f"internal error; configured secret={SECRET}") as receiver:
        hook = webhook_added_in_admin(admin, job, receiver.url, ["job_completed"])
        run_job(job)
        first = WebhookDelivery.objects.get(attempt=1)
        assert (first.attempt, first.state, first.status_code) == (1, "retry", 500)
        retry = WebhookDelivery.objects.get(attempt=2)
        assert retry.state == "pending"
        wait = (retry.next_retry_at - first.sent_at).total_seconds()
        assert wait == 60  # then 5 and 30 minutes, then it gives up
        with Steps() as steps:
            assert notifications.webhook_retries_due() == 0  # not yet due
            assert notifications.webhook_retries_due(now=retry.next_retry_at) == 1
            steps.run()
    assert len(receiver.received) == 2
    assert receiver.received[0][1] == receiver.received[1][1]  # the same event again
    log = list(WebhookDelivery.objects.order_by("id").values_list("attempt", "status_code"))
    assert log == [(1, 500), (2, 200)]
    assert "[secret]" in first.response_excerpt and SECRET not in first.response_excerpt

    pages = [
        f"/admin/jobs/webhook/{hook.pk}/change/",
        "/admin/jobs/webhook/",
        "/admin/jobs/webhookdelivery/",
        *(f"/admin/jobs/webhookdelivery/{d.pk}/change/" for d in WebhookDelivery.objects.all()),
    ]
    for page in pages:
        response = admin.get(page)
        text = response.content.decode()
        assert response.status_code == 200, page
        assert SECRET not in text, page
        assert hook.secret_encrypted not in text, page
    change = admin.get(pages[0]).content.decode()
    assert "500" in change and "200" in change  # the delivery log with its codes
    assert SECRET not in json.dumps(list(WebhookDelivery.objects.values()), default=str)
    assert hook.get_secret() == SECRET and SECRET not in hook.secret_encrypted

    # saving the webhook with the secret left empty keeps it
    kept = admin.post(
        pages[0],
        {"customer": job.customer_id, "job": "", "name": "renamed", "url": receiver.url,
         "events": ["job_completed"], "active": "on", "secret": "",
         "deliveries-TOTAL_FORMS": "2", "deliveries-INITIAL_FORMS": "2",
         "deliveries-MIN_NUM_FORMS": "0", "deliveries-MAX_NUM_FORMS": "0",
         "deliveries-0-id": str(retry.pk), "deliveries-0-webhook": str(hook.pk),
         "deliveries-1-id": str(first.pk), "deliveries-1-webhook": str(hook.pk)},
    )  # fmt: skip
    assert kept.status_code == 302, kept.content.decode()[:3000]
    hook.refresh_from_db()
    assert hook.name == "renamed" and hook.get_secret() == SECRET

    # a first attempt whose task was lost (a killed worker) is sent by the periodic task
    lost = WebhookDelivery.objects.create(webhook=hook, event="job_completed", payload={})
    with Steps() as steps:
        assert notifications.webhook_retries_due() == 0
        later = timezone.now() + timedelta(minutes=11)
        assert notifications.webhook_retries_due(now=later) == 1
        assert steps.queue == [("jobs.tasks.deliver_webhook", (lost.pk,))]


def test_notify_never_fails_what_it_reports(tmp_path, monkeypatch):
    job = local_job(tmp_path)

    def broker_down(*args):
        raise RuntimeError("broker down")

    monkeypatch.setattr(notifications, "enqueue", broker_down)
    services.job_fail(job_id=job.pk, message="Could not start: share gone", public="Cannot")
    job.refresh_from_db()
    assert job.state == "failed"


def test_webhook_urls_must_be_https_except_loopback_in_development(tmp_path, staff, settings):
    job = local_job(tmp_path)
    _, admin = staff
    refused = admin.post(
        "/admin/jobs/webhook/add/",
        {"customer": job.customer_id, "url": "http://hooks.example.com/x", "secret": SECRET,
         "active": "on", "deliveries-TOTAL_FORMS": "0", "deliveries-INITIAL_FORMS": "0"},
    )  # fmt: skip
    assert refused.status_code == 200 and "Use an https:// URL" in refused.content.decode()
    assert SECRET not in refused.content.decode()  # not rendered back, even on an error
    assert not Webhook.objects.exists()
    assert notifications.webhook_url_problem("https://hooks.example.com/x") == ""
    assert notifications.webhook_url_problem("https://u:pw@hooks.example.com/x")
    assert notifications.webhook_url_problem("http://127.0.0.1:9/x") == ""
    settings.DEV = False
    assert notifications.webhook_url_problem("http://127.0.0.1:9/x")


def test_portal_preferences_refuse_another_customers_job(tmp_path, django_user_model):
    job = local_job(tmp_path)
    mine = viewer(django_user_model, "ana", job.customer)
    other = Customer.objects.create(name="Bravo Logistics")
    src = services.endpoint_create(name="bs", url=(tmp_path / "b").as_uri(), customer=other)
    dst = services.endpoint_create(name="bd", url=(tmp_path / "bd").as_uri(), customer=other)
    theirs = services.job_create(customer=other, name="Bravo Warehouse Move", source=src,
                                 destination=dst)  # fmt: skip

    page = mine.get("/portal/notifications/").content.decode()
    assert "Payroll share" in page and "Bravo" not in page
    assert 'name="csrfmiddlewaretoken"' in page

    for refused in (
        {"job": [theirs.pk], f"events_j{theirs.pk}": ["job_completed"]},
        {"job": [job.pk, theirs.pk], f"events_j{job.pk}": ["job_failed"]},
        {"customer": [other.pk], f"events_c{other.pk}": ["job_failed"]},
        {"job": ["not-a-number"]},
    ):
        assert mine.post("/portal/notifications/", refused).status_code == 404
    assert not NotificationPreference.objects.exists()

    saved = mine.post(
        "/portal/notifications/",
        {"job": [job.pk], f"events_j{job.pk}": ["job_failed", "needs_attention", "bogus"]},
        follow=True,
    )
    assert "Your notification choices are saved." in saved.content.decode()
    pref = NotificationPreference.objects.get()
    assert (pref.job_id, sorted(pref.events), pref.email) == (
        job.pk, ["job_failed", "needs_attention"], True
    )  # fmt: skip
    checked = saved.content.decode()
    assert (
        f'name="events_j{job.pk}" value="job_failed" aria-label="Job failed: Payroll share" checked'
        in checked
    )  # noqa: E501

    csrf = Client(enforce_csrf_checks=True)
    csrf.force_login(django_user_model.objects.get(username="ana"))
    assert csrf.post("/portal/notifications/", {"job": [job.pk]}).status_code == 403


def test_a_silent_agent_needs_attention_once(tmp_path, django_user_model, mailoutbox):
    job, agent, _ = agent_side("Delta", tmp_path)
    viewer(django_user_model, "dee", job.customer)
    dee = django_user_model.objects.get(username="dee")
    NotificationPreference.objects.create(user=dee, customer=job.customer,
                                          events=["needs_attention"])  # fmt: skip
    agent.last_seen = timezone.now() - timedelta(minutes=16)
    agent.save(update_fields=["last_seen"])
    with Steps() as steps:
        assert notifications.agents_offline_check() == 1
        assert notifications.agents_offline_check() == 0  # said once per silence
        steps.run("notify_event")
    assert Event.objects.filter(job=job, message__contains="Delta-host").count() == 1
    (mail,) = mailoutbox
    assert mail.to == ["dee@example.test"] and "Needs attention" in mail.subject
    assert "has not been heard from for more than 15 minutes" in mail.body


def test_deletions_over_the_cap_need_attention_at_the_webhook(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(10):
        (src / f"report-{i}.txt").write_bytes(b"r" * (10 + i))
    job = run_job(new_job(src.as_uri(), dst.as_uri(), options={"deletes": "mirror"}))
    for i in range(5):
        (src / f"report-{i}.txt").unlink()
    with Receiver([204]) as receiver:
        hook = Webhook(customer=job.customer, job=job, url=receiver.url,
                       events=["needs_attention"])  # fmt: skip
        hook.set_secret(SECRET)
        hook.save()
        job = run_job(job)
    assert job.state not in ("completed", "completed_with_errors")  # waits for staff
    ((headers, raw),) = receiver.received
    body = json.loads(raw)
    assert body["event"] == "needs_attention"
    assert "would delete 5 files, more than the safety cap" in body["detail"]["message"]
    assert (
        headers["X-Migrator-Signature"]
        == "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    )
    assert WebhookDelivery.objects.get().status_code == 204


def test_the_customers_sign_off_is_emailed_to_staff_who_asked(
    tmp_path, django_user_model, staff, mailoutbox
):
    eng, _ = staff
    NotificationPreference.objects.create(user=eng, events=["signed_off"])
    job = run_job(local_job(tmp_path))
    ana = viewer(django_user_model, "ana", job.customer)
    with Steps() as steps:
        assert ana.post(f"/reports/jobs/{job.pk}/accept/", {"note": "all there"}).status_code == 302
        steps.run()
    (mail,) = mailoutbox
    assert mail.to == ["eng@example.test"]
    assert mail.subject == "[Migrator] Payroll share: Sign-off given"
    assert "Accepted by ana." in mail.body


def test_after_the_last_retry_the_delivery_gives_up_with_a_logged_failure(tmp_path, caplog):
    job = local_job(tmp_path)
    with Receiver([503]) as receiver:
        hook = Webhook(customer=job.customer, url=receiver.url)
        hook.set_secret(SECRET)
        hook.save()
        last = WebhookDelivery.objects.create(
            webhook=hook, event="job_failed", payload={"job": {"id": job.pk}}, attempt=4
        )
        notifications.webhook_deliver(delivery_id=last.pk)
        notifications.webhook_deliver(delivery_id=last.pk)  # sent once only
    assert len(receiver.received) == 1
    last.refresh_from_db()
    assert (last.state, last.status_code) == ("failed", 503)
    assert WebhookDelivery.objects.count() == 1  # no fifth attempt
    assert f"webhook {hook.pk} gave up on job_failed of job {job.pk} after 4 attempt(s)" in (
        caplog.text
    )

    # the receiver is stopped: nothing answers, the error is logged and retried later
    refused = WebhookDelivery.objects.create(webhook=hook, event="job_failed", payload={})
    notifications.webhook_deliver(delivery_id=refused.pk)
    refused.refresh_from_db()
    assert refused.state == "retry" and refused.status_code is None
    assert "Connection refused" in refused.error or "URLError" in refused.error


def test_completed_with_errors_carries_the_top_error_groups(
    tmp_path, django_user_model, mailoutbox
):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "docs").mkdir(parents=True)
    (src / "ok.txt").write_text("fine")
    (src / "docs" / "notes.txt").write_text("in the way")
    (dst / "docs" / "notes.txt").mkdir(parents=True)  # a folder where the file should go
    job = new_job(src.as_uri(), dst.as_uri())
    viewer(django_user_model, "ana", job.customer)
    ana = django_user_model.objects.get(username="ana")
    NotificationPreference.objects.create(
        user=ana, customer=job.customer, job=job, events=["job_completed_with_errors"]
    )
    with Receiver([200]) as receiver:
        hook = Webhook(
            customer=job.customer, url=receiver.url, events=["job_completed_with_errors"]
        )
        hook.set_secret(SECRET)
        hook.save()
        job = run_job(job)
    assert job.state == "completed_with_errors"
    ((_, raw),) = receiver.received
    body = json.loads(raw)
    assert body["pass"]["failed"] == 1 and body["pass"]["copied"] == 1
    (group,) = body["error_groups"]
    assert group["count"] == 1 and group["cause"] and group["reason"]
    (mail,) = mailoutbox
    assert mail.subject == "[Migrator] job: Job completed with errors"
    assert f"- {group['reason']} (1): {group['cause']}" in mail.body
