"""Every staff action that changes a job or an endpoint is recorded: who, when, what, from
which address; read-only in the admin, exportable as CSV."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from accounts.models import AuditEntry, Customer
from jobs import services as job_services
from jobs.choices import JobState
from jobs.models import Endpoint, MigrationJob

from .conftest import PASSWORD, inline_tasks, make_job, run_to_end, signed_in

pytestmark = pytest.mark.django_db(transaction=True)

IP = "203.0.113.7"


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user("eng", password=PASSWORD, is_staff=True)
    client = signed_in(user)
    client.defaults["REMOTE_ADDR"] = IP
    return user, client


def entries() -> list[tuple[str, str, str, str]]:
    return list(
        AuditEntry.objects.order_by("id").values_list("username", "ip", "action", "object_type")
    )


def test_admin_create_edit_and_actions_are_recorded_with_ip(staff, tmp_path):
    user, client = staff
    customer = Customer.objects.create(name="ACME")
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    response = client.post(
        reverse("admin:jobs_endpoint_add"),
        {"name": "acme share", "customer": customer.pk, "url": src.as_uri(), "secret": "s3cret!"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    source = Endpoint.objects.get(name="acme share")
    destination = job_services.endpoint_create(name="acme dst", url=dst.as_uri(), customer=customer)
    client.post(
        reverse("admin:jobs_endpoint_change", args=[source.pk]),
        {"name": "acme share (renamed)", "customer": customer.pk, "url": src.as_uri()},
    )
    job = job_services.job_create(
        customer=customer, name="acme job", source=source, destination=destination
    )  # by the CLI or a worker: no signed-in user, nothing to record
    changelist = reverse("admin:jobs_migrationjob_changelist")
    for action in ("action_start", "action_pause", "action_resume", "action_cancel"):
        client.post(changelist, {"action": action, "_selected_action": [job.pk]})
    assert MigrationJob.objects.get(pk=job.pk).state == JobState.CANCELLED
    assert entries() == [
        ("eng", IP, "create", "endpoint"),
        ("eng", IP, "edit", "endpoint"),
        ("eng", IP, "start", "migration job"),
        ("eng", IP, "pause", "migration job"),
        ("eng", IP, "resume", "migration job"),
        ("eng", IP, "cancel", "migration job"),
    ]
    edit = AuditEntry.objects.get(action="edit")
    assert "Name" in edit.detail and edit.object_repr == "acme share (renamed)"
    assert edit.customer_name == "ACME"
    assert "s3cret!" not in "".join(AuditEntry.objects.values_list("detail", flat=True))
    # a refused action (cancelling a cancelled job) changes nothing and records nothing
    client.post(changelist, {"action": "action_cancel", "_selected_action": [job.pk]})
    assert AuditEntry.objects.count() == 6


def test_retry_and_delete_are_recorded(staff, tmp_path):
    user, client = staff
    customer = Customer.objects.create(name="ACME")
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("a")
    (dst / "d" / "a.txt").mkdir(parents=True)  # a folder where the file must go: it fails
    source = job_services.endpoint_create(name="s", url=src.as_uri(), customer=customer)
    destination = job_services.endpoint_create(name="d", url=dst.as_uri(), customer=customer)
    job = job_services.job_create(
        customer=customer, name="retry me", source=source, destination=destination
    )
    run_to_end(job)
    assert MigrationJob.objects.get(pk=job.pk).state == JobState.COMPLETED_WITH_ERRORS
    changelist = reverse("admin:jobs_migrationjob_changelist")
    with inline_tasks():
        client.post(changelist, {"action": "action_retry_failed", "_selected_action": [job.pk]})
    client.post(
        changelist, {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"}
    )
    assert not MigrationJob.objects.filter(pk=job.pk).exists()
    assert entries() == [
        ("eng", IP, "retry", "migration job"),
        ("eng", IP, "delete", "migration job"),
    ]
    assert AuditEntry.objects.get(action="retry").detail == "1 file(s)"


def test_the_audit_log_is_read_only_and_exports_csv(staff, tmp_path):
    user, client = staff
    customer = Customer.objects.create(name="=HYPERLINK(evil)")
    job = make_job(customer, "=cmd|calc", "srv/x")
    client.post(
        reverse("admin:jobs_migrationjob_changelist"),
        {"action": "action_start", "_selected_action": [job.pk]},
    )
    entry = AuditEntry.objects.get()
    page = client.get(reverse("admin:accounts_auditentry_changelist"))
    assert page.status_code == 200 and "Download CSV" in page.content.decode()
    assert (
        client.get(reverse("admin:accounts_auditentry_change", args=[entry.pk])).status_code == 200
    )
    assert client.get(reverse("admin:accounts_auditentry_add")).status_code == 403
    client.post(reverse("admin:accounts_auditentry_change", args=[entry.pk]), {"action": "edit"})
    client.post(reverse("admin:accounts_auditentry_delete", args=[entry.pk]), {"post": "yes"})
    assert AuditEntry.objects.get().action == "start"

    response = client.get(reverse("admin:accounts_auditentry_csv") + "?action__exact=start")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["at", "user", "ip", "action"]
    assert rows[1][1:5] == ["eng", IP, "start", "migration job"]
    assert rows[1][6] == "'=cmd|calc" and rows[1][7] == "'=HYPERLINK(evil)"  # never formulas
    empty = client.get(reverse("admin:accounts_auditentry_csv") + "?action__exact=pause")
    assert len(b"".join(empty.streaming_content).decode().splitlines()) == 1


def test_viewers_cannot_read_the_audit_log(django_user_model, tmp_path):
    viewer = django_user_model.objects.create_user("v@c.test", password=PASSWORD)
    response = signed_in(viewer).get(reverse("admin:accounts_auditentry_csv"))
    assert response.status_code == 403


def test_support_engineer_can_use_the_accounts_admin(staff, django_user_model):
    user, client = staff
    customer = Customer.objects.create(name="ACME")
    viewer = django_user_model.objects.create_user("v@acme.test", password=PASSWORD)
    for path in [
        "/admin/",
        "/admin/accounts/customer/add/",
        f"/admin/accounts/customer/{customer.pk}/change/",
        "/admin/accounts/membership/add/",
        "/admin/accounts/invitation/add/",
        "/admin/accounts/auditentry/",
        "/admin/axes/accessattempt/",
        f"/admin/auth/user/{viewer.pk}/change/",
        "/admin/autocomplete/?app_label=accounts&model_name=membership&field_name=user&term=v",
    ]:
        assert client.get(path).status_code == 200, path
    # but a support engineer cannot make anyone a superuser
    response = client.post(
        f"/admin/auth/user/{viewer.pk}/change/", {"username": "v@acme.test", "is_superuser": "on"}
    )
    assert response.status_code == 403
    viewer.refresh_from_db()
    assert not viewer.is_superuser
