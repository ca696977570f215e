"""Customer isolation, checked on every URL pattern of the project.

The walk enumerates the URL resolver (so a view added later is walked too), fills each
parameter with every id of customer A's objects, and asks as customer B's viewer (and as
nobody): no page, CSV or JSON may contain anything of customer A — job and endpoint names,
paths, file names, the customer's name, its viewer's name. Objects of others answer 404,
never 403, so ids cannot be probed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEntry, Customer, Membership
from jobs import services as job_services
from jobs.models import Batch, Endpoint, Event, FileItem, MigrationJob, Pass
from jobs.selectors import endpoints_visible_to, job_get_for, jobs_visible_to

from .conftest import make_viewer, run_to_end, signed_in
from .urlpaths import all_paths, body_of

pytestmark = pytest.mark.django_db(transaction=True)

A_MARKERS = [
    "Alphacorp Industries",
    "Alpha Payroll Migration",
    "alpha-salaries-2024",
    "alpha-secret-share",
    "alpha-board-minutes",
    "viewer-a@alpha.test",
    "Alpha source endpoint",
]


def make_customer_with_a_run(tmp_path: Path, *, customer: str, job: str, files: list[str],
                             share: str, endpoint: str, staff) -> MigrationJob:  # fmt: skip
    src = tmp_path / share
    for name in files:
        path = src / "finance" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    owner = Customer.objects.create(name=customer)
    source = job_services.endpoint_create(name=endpoint, url=src.as_uri(), customer=owner)
    dest = job_services.endpoint_create(
        name=f"{endpoint} dest", url=(tmp_path / f"{share}-dest").as_uri(), customer=owner
    )
    created = job_services.job_create(
        customer=owner, name=job, source=source, destination=dest, user=staff
    )
    run_to_end(created, user=staff)
    return created


@pytest.fixture
def two_customers(tmp_path, django_user_model):
    staff = django_user_model.objects.create_superuser("eng", "eng@example.test", "x")
    job_a = make_customer_with_a_run(
        tmp_path, customer="Alphacorp Industries", job="Alpha Payroll Migration",
        files=["alpha-salaries-2024.xlsx", "alpha-board-minutes.docx"],
        share="alpha-secret-share", endpoint="Alpha source endpoint", staff=staff,
    )  # fmt: skip
    job_b = make_customer_with_a_run(
        tmp_path, customer="Bravo Logistics", job="Bravo Warehouse Move",
        files=["bravo-routes.csv"], share="bravo-share", endpoint="Bravo source", staff=staff,
    )  # fmt: skip
    viewer_a = make_viewer(django_user_model, "viewer-a@alpha.test", job_a.customer)
    viewer_b = make_viewer(django_user_model, "viewer-b@bravo.test", job_b.customer)
    return job_a, job_b, viewer_a, viewer_b, staff


def ids_of_customer(job: MigrationJob, viewer) -> list[int]:
    customer = job.customer
    ids = {customer.pk, job.pk, viewer.pk, job.source_id, job.destination_id}
    ids |= set(Pass.objects.filter(job=job).values_list("pk", flat=True))
    ids |= set(Pass.objects.filter(job=job).values_list("number", flat=True))
    ids |= set(FileItem.objects.filter(job=job).values_list("pk", flat=True)[:20])
    ids |= set(Event.objects.filter(job=job).values_list("pk", flat=True)[:20])
    ids |= set(Batch.objects.filter(job=job).values_list("pk", flat=True))
    ids |= set(Endpoint.objects.filter(customer=customer).values_list("pk", flat=True))
    ids |= set(Membership.objects.filter(customer=customer).values_list("pk", flat=True))
    ids |= set(AuditEntry.objects.filter(object_id=str(job.pk)).values_list("pk", flat=True))
    return sorted(ids)


# --- enumerate the resolver ------------------------------------------------------------------


def walk(client: Client, paths: list[str]) -> Iterator[tuple[str, int, str]]:
    for path in paths:
        response = client.get(path, follow=True)
        yield path, response.status_code, body_of(response)


def test_walk_every_url_pattern_customer_b_sees_nothing_of_customer_a(two_customers):
    job_a, job_b, viewer_a, viewer_b, staff = two_customers
    ints = ids_of_customer(job_a, viewer_a)
    paths = all_paths(ints, job_a)
    # the walk reaches the portal's page of A's job and the admin's pages of A's objects
    assert f"/portal/jobs/{job_a.pk}/" in paths
    assert f"/admin/jobs/migrationjob/{job_a.pk}/manifest/" in paths
    assert f"/admin/jobs/migrationjob/{job_a.pk}/manifest.csv" in paths

    # the markers are real: A's own viewer and staff do see them
    a_page = body_of(signed_in(viewer_a).get(f"/portal/jobs/{job_a.pk}/"))
    assert "Alpha Payroll Migration" in a_page and "Alphacorp Industries" in a_page
    manifest = body_of(signed_in(staff).get(f"/admin/jobs/migrationjob/{job_a.pk}/manifest.csv"))
    assert "alpha-salaries-2024" in manifest

    leaks = []
    statuses: dict[int, int] = {}
    for who, client in (("viewer B", signed_in(viewer_b)), ("anonymous", Client())):
        for path, status, body in walk(client, paths):
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, f"{who} {path}: {status}"
            leaks += [(who, path, m) for m in A_MARKERS if m.lower() in body.lower()]
    assert leaks == [], f"customer A's data reached others: {leaks[:10]}"
    assert statuses.get(200), "no page answered at all: the walk proves nothing"


def test_others_objects_answer_404_not_403(two_customers):
    job_a, job_b, viewer_a, viewer_b, staff = two_customers
    b = signed_in(viewer_b)
    assert b.get(f"/portal/jobs/{job_a.pk}/").status_code == 404
    assert b.get("/portal/jobs/999999/").status_code == 404  # same answer as a missing id
    assert b.get(f"/portal/jobs/{job_b.pk}/").status_code == 200
    page = body_of(b.get("/portal/"))
    assert "Bravo Warehouse Move" in page and "Alpha Payroll Migration" not in page


def report_requests(job: MigrationJob) -> Iterator[tuple[str, str, dict]]:
    """(method, path, query) of every report of `job`: each page, its CSV and each of its
    CSV lists, a pass asked for by number, and the live, completion and accept views."""
    from reports.registry import REPORTS

    for kind, report in REPORTS.items():
        url = reverse("reports:job_report", args=[job.pk, kind])
        yield "get", url, {}
        yield "get", url, {"pass": "1", "issues": "1"}
        yield "get", url, {"format": "csv"}
        for listing in report.lists():
            yield "get", url, {"format": "csv", "list": listing}
    for name in ("reports:job", "reports:job_live", "reports:job_completion"):
        yield "get", reverse(name, args=[job.pk]), {}
    yield "get", reverse("reports:job_live", args=[job.pk]), {"compact": "1"}
    yield "post", reverse("reports:job_accept", args=[job.pk]), {}


def test_every_report_and_csv_of_another_customers_job_is_a_404(two_customers):
    job_a, job_b, viewer_a, viewer_b, staff = two_customers
    requests = list(report_requests(job_a))
    kinds = {path.rstrip("/").rsplit("/", 1)[1] for _, path, _ in requests}
    assert {"permissions", "assessment", "files", "events"} <= kinds
    a, b = signed_in(viewer_a), signed_in(viewer_b)
    for method, path, query in requests:
        if method == "get":  # the request is real: A's own viewer is answered
            assert a.get(path, query).status_code == 200, (path, query)
        response = getattr(b, method)(path, query)
        assert response.status_code == 404, (method, path, query)
        assert not any(m.lower() in body_of(response).lower() for m in A_MARKERS), path
    files = body_of(a.get(reverse("reports:job_report", args=[job_a.pk, "files"]),
                          {"format": "csv"}))  # fmt: skip
    assert "alpha-salaries-2024" in files  # what B was refused is there
    for _method, path, query in report_requests(job_b):  # and B reads its own
        if _method == "get":
            assert b.get(path, query).status_code == 200, (path, query)


def test_one_selector_decides(two_customers, django_user_model):
    job_a, job_b, viewer_a, viewer_b, staff = two_customers
    both = make_viewer(django_user_model, "auditor@both.test", job_a.customer, job_b.customer)
    assert set(jobs_visible_to(viewer_a)) == {job_a}
    assert set(jobs_visible_to(both)) == {job_a, job_b}
    assert set(jobs_visible_to(staff)) == {job_a, job_b}
    assert set(endpoints_visible_to(viewer_a)) == {job_a.source, job_a.destination}
    assert set(endpoints_visible_to(both)) == {
        job_a.source,
        job_a.destination,
        job_b.source,
        job_b.destination,
    }
    viewer_a.is_active = False
    assert not jobs_visible_to(viewer_a).exists()
    assert not endpoints_visible_to(viewer_a).exists()
    with pytest.raises(Exception) as excinfo:
        job_get_for(user=viewer_b, pk=job_a.pk)
    assert type(excinfo.value).__name__ == "Http404"
    page = body_of(signed_in(both).get("/portal/"))
    assert "Alpha Payroll Migration" in page and "Bravo Warehouse Move" in page


def test_customer_viewer_is_refused_in_the_admin(two_customers):
    job_a, job_b, viewer_a, viewer_b, staff = two_customers
    client = signed_in(viewer_a)
    for path in ["/admin/", "/admin/jobs/migrationjob/", f"/admin/jobs/migrationjob/{job_a.pk}/"]:
        response = client.get(path)
        assert response.status_code == 403
        assert "Alpha Payroll Migration" not in body_of(response)


def test_portal_pages_cost_a_bounded_number_of_queries(
    two_customers, django_assert_max_num_queries
):
    job_a, job_b, viewer_a, viewer_b, staff = two_customers
    client = signed_in(viewer_a)
    with django_assert_max_num_queries(12):
        assert client.get(f"/portal/jobs/{job_a.pk}/").status_code == 200
    with django_assert_max_num_queries(12):
        assert client.get("/portal/").status_code == 200
