"""The customer portal speaks plain words: where a job goes from and to, why it could not
start, what happened last; never an endpoint's URL, host, share, account or folder.
Staff keep the detail (the admin, staff-only events)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Customer
from jobs import services as job_services
from jobs.choices import JobState
from jobs.models import Event, MigrationJob

from .conftest import make_viewer, run_to_end, signed_in

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def html(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def people(django_user_model):
    customer = Customer.objects.create(name="Northwind Traders")
    staff = django_user_model.objects.create_superuser("eng", "eng@example.test", "x")
    viewer = make_viewer(django_user_model, "viewer@northwind.test", customer)
    return customer, staff, viewer


def unreachable_smb_source(tmp_path: Path) -> tuple[str, list[str], str]:
    """An SMB share on 127.0.0.1 where nothing listens."""
    port = closed_port()
    url = f"smb://NORTHWIND;svc-migrate@127.0.0.1:{port}/finance-share/ledgers"
    details = ["127.0.0.1", str(port), "finance-share", "svc-migrate", "NORTHWIND;", "smb://"]
    return url, details, "The migration could not start: the source could not be reached."


def missing_local_source(tmp_path: Path) -> tuple[str, list[str], str]:
    """A local folder that does not exist."""
    missing = tmp_path / "nonexistent-share-folder"
    details = [str(missing), "nonexistent-share-folder", "file://"]
    return missing.as_uri(), details, "The migration could not start: the source was not found."


@pytest.mark.parametrize("make_source", [unreachable_smb_source, missing_local_source])
def test_job_that_cannot_start_tells_the_customer_in_plain_words_and_staff_the_detail(
    people, tmp_path, make_source
):
    customer, staff, viewer = people
    url, details, plain = make_source(tmp_path)
    source = job_services.endpoint_create(
        name="Finance share", url=url, customer=customer, secret="S3cret-Pw"
    )
    destination = job_services.endpoint_create(
        name="Finance copy", url=(tmp_path / "dest").as_uri(), customer=customer
    )
    job = job_services.job_create(
        customer=customer, name="Finance move", source=source, destination=destination, user=staff
    )
    run_to_end(job, user=staff)
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    # the detail is kept for staff: the job's error and a staff-only event say where
    assert job.error.startswith("Could not start:") and details[0] in job.error
    detail = Event.objects.get(job=job, message=job.error)
    assert detail.staff_only and detail.level == "error"
    public = Event.objects.get(job=job, level="error", staff_only=False)
    assert public.message == plain

    client = signed_in(viewer)
    pages = {
        "job": html(client.get(f"/portal/jobs/{job.pk}/")),
        "list": html(client.get("/portal/")),
        "summary": html(client.get(f"/reports/jobs/{job.pk}/")),
        "events": html(client.get(f"/reports/jobs/{job.pk}/events/")),
    }
    assert f'<p class="error">{plain}</p>' in pages["job"]
    assert "Local folder" in pages["job"]  # the destination, in words
    for name, page in pages.items():
        assert "Could not start:" not in page, name
        for secret in [url, *details, str(tmp_path)]:
            assert secret not in page, (name, secret)
    assert plain in pages["events"]

    # the admin (staff) still shows the detailed error
    admin = html(signed_in(staff).get(f"/admin/jobs/migrationjob/{job.pk}/change/"))
    assert "Could not start:" in admin and details[0] in admin


def test_destination_that_cannot_be_reached_is_named_as_the_destination(people, tmp_path):
    customer, staff, viewer = people
    (tmp_path / "src").mkdir()
    source = job_services.endpoint_create(
        name="Here", url=(tmp_path / "src").as_uri(), customer=customer
    )
    destination = job_services.endpoint_create(
        name="There",
        url=f"smb://svc@127.0.0.1:{closed_port()}/archive",
        customer=customer,
        secret="pw",
    )
    job = job_services.job_create(
        customer=customer, name="Backup move", source=source, destination=destination
    )
    run_to_end(job, user=staff)
    page = html(signed_in(viewer).get(f"/portal/jobs/{job.pk}/"))
    assert "The migration could not start: the destination could not be reached." in page
    assert "Local folder → Windows file share (SMB)" in page
    assert "127.0.0.1" not in page and "archive" not in page.lower()


def test_job_list_shows_from_to_last_activity_and_passes_never_an_endpoint(
    people, tmp_path, django_user_model
):
    customer, staff, viewer = people
    src = tmp_path / "payroll-folder"
    (src / "2024").mkdir(parents=True)
    (src / "2024" / "march.csv").write_text("a,b\n")
    local = job_services.endpoint_create(name="Payroll", url=src.as_uri(), customer=customer)
    local_dest = job_services.endpoint_create(
        name="Payroll copy", url=(tmp_path / "payroll-copy").as_uri(), customer=customer
    )
    smb = job_services.endpoint_create(
        name="Sales share",
        url="smb://NORTHWIND;svc-sales@fs01.northwind.example:445/sales-share/q3",
        customer=customer,
        secret="pw",
    )
    gcs = job_services.endpoint_create(
        name="Sales bucket", url="gs://northwind-sales-bucket/imports", customer=customer
    )
    ran = job_services.job_create(
        customer=customer, name="Payroll run", source=local, destination=local_dest
    )
    run_to_end(ran, user=staff)
    run_to_end(ran, user=staff)  # a second pass
    planned = job_services.job_create(
        customer=customer, name="Sales planned", source=smb, destination=gcs
    )
    ran.refresh_from_db()
    assert ran.state == JobState.COMPLETED and ran.passes.count() == 2
    # a known instant, read in the viewer's zone (the tz cookie the portal sets)
    MigrationJob.objects.filter(pk=ran.pk).update(
        last_activity=datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
    )

    client = signed_in(viewer)
    client.cookies["tz"] = "Asia/Tokyo"
    page = html(client.get("/portal/"))
    row = {}
    for job in (ran, planned):
        start = page.index(f'href="/portal/jobs/{job.pk}/"')
        row[job.pk] = page[start : page.index("</tr>", start)]
    assert '<td class="route">Local folder → Local folder</td>' in row[ran.pk]
    assert "2025-01-02 12:04" in row[ran.pk]  # 03:04 UTC in Tokyo
    assert '<td class="passes">2</td>' in row[ran.pk]
    assert (
        '<td class="route">Windows file share (SMB) → Google Cloud Storage</td>' in row[planned.pk]
    )
    assert "last activity —" in row[planned.pk] and '<td class="passes">0</td>' in row[planned.pk]

    job_page = html(client.get(f"/portal/jobs/{planned.pk}/"))
    assert "Windows file share (SMB) → Google Cloud Storage" in job_page
    ran_page = html(client.get(f"/portal/jobs/{ran.pk}/"))
    assert "Local folder → Local folder" in ran_page
    hidden = [
        "fs01.northwind.example", "northwind-sales-bucket", "sales-share", "svc-sales",
        "smb://", "gs://", "file://", "payroll-folder", "payroll-copy", str(tmp_path),
    ]  # fmt: skip
    for name, body in (("list", page), ("planned", job_page), ("ran", ran_page)):
        assert [h for h in hidden if h in body] == [], name

    # staff see the same list (every customer) without an error
    assert "Sales planned" in html(signed_in(staff).get("/portal/"))


def test_job_list_costs_the_same_queries_for_one_job_or_many(people, tmp_path):
    customer, staff, viewer = people
    client = signed_in(viewer)

    def make_and_run(n: int) -> None:
        src = tmp_path / f"src-{n}"
        src.mkdir()
        (src / "f.txt").write_text("x")
        job = job_services.job_create(
            customer=customer,
            name=f"Job {n}",
            source=job_services.endpoint_create(name=f"s{n}", url=src.as_uri(), customer=customer),
            destination=job_services.endpoint_create(
                name=f"d{n}", url=(tmp_path / f"dst-{n}").as_uri(), customer=customer
            ),
        )
        run_to_end(job, user=staff)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert html(client.get("/portal/")).count('href="/portal/jobs/') == len(made)
        return len(captured)

    made = [make_and_run(0)]
    one = queries()
    made += [make_and_run(n) for n in range(1, 5)]
    assert queries() == one


def test_customers_read_that_support_acted_never_a_staff_account(people, tmp_path):
    """A job started by a support engineer (pause, resume, cancel and retry say it the same
    way): staff read the account in
    the admin's events; the customer's pages and events CSV say "the support team"."""
    customer, staff, viewer = people
    staff.username = "ops.jsmith"
    staff.save()
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.txt").write_text("a")
    source = job_services.endpoint_create(name="S", url=src.as_uri(), customer=customer)
    destination = job_services.endpoint_create(
        name="D", url=(tmp_path / "dst").as_uri(), customer=customer
    )
    job = job_services.job_create(customer=customer, name="Move", source=source,
                                  destination=destination, user=staff)  # fmt: skip
    run_to_end(job, user=staff)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    client = signed_in(viewer)
    pages = [
        html(client.get(f"/portal/jobs/{job.pk}/")),
        html(client.get(f"/reports/jobs/{job.pk}/events/")),
        client.get(f"/reports/jobs/{job.pk}/events/?format=csv").getvalue().decode(),
    ]
    for page in pages:
        assert "ops.jsmith" not in page
    assert "Queued by the support team." in pages[1] and "Queued by the support team." in pages[2]
    staff_view = html(signed_in(staff).get(f"/reports/jobs/{job.pk}/events/"))
    assert "Queued by ops.jsmith." in staff_view
