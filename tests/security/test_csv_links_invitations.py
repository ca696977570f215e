"""Every CSV a user can download neutralises formula cells; `?next=` never leaves the
site; invitation links work once and expire."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Customer, Invitation
from accounts.services import invitation_tokens
from jobs import services as job_services
from migrator.web.csv import DANGEROUS_START
from reports.registry import REPORTS
from tests.accounts.conftest import make_viewer, run_to_end, signed_in

from .conftest import PASSWORD, body_of
from .urlwalk import fill, route_text, routes

pytestmark = pytest.mark.django_db(transaction=True)

FORMULAS = ["=cmd|' -C calc'!A0.txt", "+1+1.txt", "-2+3.txt", "@SUM(A1).txt", "\tTAB.txt",
            "\rCR.txt"]  # fmt: skip


@pytest.fixture
def formula_job(tmp_path, django_user_model):
    staff = django_user_model.objects.create_superuser("eng", "eng@example.test", PASSWORD)
    src = tmp_path / "src"
    src.mkdir()
    for name in FORMULAS:
        (src / name).write_text("x")
    customer = Customer.objects.create(name='=HYPERLINK("http://evil.example")')
    s = job_services.endpoint_create(name="+source", url=src.as_uri(), customer=customer)
    d = job_services.endpoint_create(name="@dest", url=(tmp_path / "d").as_uri(),
                                     customer=customer)  # fmt: skip
    job = job_services.job_create(customer=customer, name="=1+1 job", source=s, destination=d,
                                  user=staff)  # fmt: skip
    run_to_end(job, user=staff)
    viewer = make_viewer(django_user_model, "viewer@formula.test", customer)
    return job, staff, viewer


def csv_paths(job) -> list[tuple[str, dict]]:
    """Every CSV download: each report (and list) with ?format=csv, every .csv route."""
    found = []
    for kind, report in REPORTS.items():
        url = f"/reports/jobs/{job.pk}/{kind}/"
        found += [(url, {"format": "csv"})]
        found += [(url, {"format": "csv", "list": name}) for name in report.lists()]
    for parts, _pattern in routes():
        route = route_text(parts)
        if ".csv" in route or "scim" in route:
            query = {"customer": str(job.customer_id)} if "directoryidentity" in route else {}
            for path in fill(route, None):
                if "/no-such-report." in path:
                    continue  # the API's CSV of a report that does not exist: a 404
                found.append((re.sub(r"/987654/", f"/{job.pk}/", path), query))
    return found


def cells(body: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(body)) for cell in row]


def test_every_csv_neutralises_formula_cells(formula_job):
    job, staff, viewer = formula_job
    staff_client, viewer_client = signed_in(staff), signed_in(viewer)
    downloads = csv_paths(job)
    assert any("manifest.csv" in p for p, _ in downloads)
    assert any("auditentry/export.csv" in p for p, _ in downloads)
    seen = set()
    for path, query in downloads:
        for client in (staff_client, viewer_client):
            response = client.get(path, query)
            if response.status_code != 200:  # the admin's are for staff
                assert client is viewer_client and path.startswith("/admin/"), path
                continue
            if "csv" not in response["Content-Type"]:
                assert path.endswith(("scim.json", "identity-csv/")), path
                continue
            for cell in cells(body_of(response)):
                assert not cell.startswith(DANGEROUS_START), (path, query, cell)
                seen.add(cell)
    for name in FORMULAS:  # each hostile name is there, as text
        assert "'" + name in seen, name
    assert "'=1+1 job" in seen or any(c.startswith("'=HYPERLINK") for c in seen)


EVIL = ["//evil.example", "https://evil.example", "/\\evil.example", "\\\\evil.example",
        "https:evil.example", "///evil.example", " //evil.example",
        "http://evil.example/x"]  # fmt: skip


def stays_on_site(location: str) -> bool:
    parts = urlsplit(location.strip())
    return parts.netloc in ("", "testserver") and not location.lstrip().startswith(("//", "/\\"))


@pytest.mark.parametrize("target", EVIL)
def test_next_after_sign_in_cannot_leave_the_site(target, world):
    client = Client()
    response = client.post("/accounts/login/?next=" + target,
                           {"username": "viewer-a@alpha.test", "password": PASSWORD})  # fmt: skip
    assert response.status_code == 302
    assert stays_on_site(response["Location"]), response["Location"]
    assert response["Location"] == "/portal/"  # where a viewer lands
    # signed in already, the sign-in page sends on at once: still not off-site
    again = client.get("/accounts/login/", {"next": target})
    assert stays_on_site(again["Location"]), again["Location"]
    admin = Client().get("/admin/login/", {"next": target})
    assert stays_on_site(admin["Location"]) and "evil" not in admin["Location"]
    # a form field is another way in
    field = Client().post("/accounts/login/", {"username": "eng", "password": PASSWORD,
                                               "next": target})  # fmt: skip
    assert field.status_code == 302 and stays_on_site(field["Location"]), field["Location"]


def test_next_on_the_site_is_followed(world):
    response = Client().post("/accounts/login/?next=/reports/search/",
                             {"username": "viewer-a@alpha.test", "password": PASSWORD})  # fmt: skip
    assert response["Location"] == "/reports/search/"


def invite(client: Client, email: str, customer: Customer) -> str:
    client.post("/admin/accounts/invitation/add/", {"email": email, "customer": customer.pk})
    return re.search(r"https?://[^/\s]+(/\S+)", mail.outbox[-1].body).group(1)


def accept(link: str, password: str = "Correct-Horse-Battery-9") -> tuple[Client, int]:
    client = Client()
    form = client.get(link, follow=True)
    if "has been used or has expired" in form.content.decode():
        return client, 0
    url = form.redirect_chain[-1][0]
    done = client.post(url, {"new_password1": password, "new_password2": password})
    return client, done.status_code


def test_an_invitation_link_works_once(world):
    staff = signed_in(world.staff)
    link = invite(staff, "new@alpha.test", world.a.customer)
    client, status = accept(link)
    assert status == 302 and client.get("/portal/").status_code == 200
    assert Invitation.objects.get(email="new@alpha.test").accepted_at is not None
    _, again = accept(link, "Another-Horse-Battery-7")
    assert again == 0  # refused: "has been used or has expired"
    assert Client().login(username="new@alpha.test", password="Correct-Horse-Battery-9")


def test_an_invitation_link_expires(world, monkeypatch, settings):
    staff = signed_in(world.staff)
    link = invite(staff, "late@alpha.test", world.a.customer)
    real_now = invitation_tokens._now
    later = real_now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)
    monkeypatch.setattr(invitation_tokens, "_now", lambda: later)
    _, status = accept(link)
    assert status == 0  # expired
    monkeypatch.setattr(invitation_tokens, "_now", real_now)
    _, status = accept(link)
    assert status == 302  # the same link, in time, works: what expired was the time


def test_an_invitation_link_is_not_a_password_reset_link(world, django_user_model):
    staff = signed_in(world.staff)
    link = invite(staff, "cross@alpha.test", world.a.customer)
    reset = link.replace("/accounts/invitation/", "/accounts/password/reset/")
    page = Client().get(reset, follow=True).content.decode()
    assert "has been used or has expired" in page or "invalid" in page.lower()
