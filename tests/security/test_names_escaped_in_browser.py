"""Hostile file, job, customer and endpoint names on every report page and in the portal,
rendered by headless Chromium from the live server: no script runs (no dialog opens,
window.__xss stays undefined) and each name is shown as text."""

from __future__ import annotations

import pytest

from accounts.models import Customer
from jobs import services as job_services
from jobs.models import FileItem
from migrator.sanitize import Sanitizer
from reports.registry import REPORTS
from tests.accounts.conftest import make_viewer, run_to_end

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = '"><script>window.__xss=1</script>'  # a folder and a file: '/' is a separator
SVG = "<svg onload=window.__xss=2>"
NAMES = [IMG, SCRIPT, SVG]


@pytest.fixture
def hostile_job(tmp_path, django_user_model):
    staff = django_user_model.objects.create_superuser("eng", "eng@example.test", PASSWORD)
    src, dst = tmp_path / "src", tmp_path / "dst"
    for name in NAMES:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text("x")
    (src / "in-the-way" / f"{IMG}.txt").parent.mkdir(parents=True)
    (src / "in-the-way" / f"{IMG}.txt").write_text("fails")
    # a folder where the (renamed) file goes: that file fails, a row of the errors report
    blocked = Sanitizer.for_destination("file", "windows").sanitize_path(f"in-the-way/{IMG}.txt")
    (dst / blocked.path).mkdir(parents=True)
    customer = Customer.objects.create(name=f"Customer {SVG}")
    s = job_services.endpoint_create(name=f"source {IMG}", url=src.as_uri(), customer=customer)
    d = job_services.endpoint_create(name=f"dest {SCRIPT}", url=dst.as_uri(), customer=customer)
    job = job_services.job_create(customer=customer, name=f"Job {SCRIPT}", source=s,
                                  destination=d, user=staff,
                                  options={"profile": "windows"})  # fmt: skip
    run_to_end(job, user=staff)
    job.refresh_from_db()
    make_viewer(django_user_model, "viewer@hostile.test", customer)
    return job


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state()


def test_hostile_names_are_text_on_every_page(live_server, page, hostile_job):
    job = hostile_job
    items = FileItem.objects.filter(job=job)
    assert items.filter(state="failed").exists()  # the errors report has a row
    assert items.exclude(dest_path="").exclude(dest_path=models_f("source_path")).exists()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    base = live_server.url
    pages = [f"/reports/jobs/{job.pk}/{kind}/" for kind in REPORTS]
    pages += [f"/reports/jobs/{job.pk}/", f"/reports/jobs/{job.pk}/completion/",
              f"/reports/jobs/{job.pk}/live/", "/reports/search/?q=%3Cimg",
              f"/reports/jobs/{job.pk}/files/?q=%3Cimg", "/portal/",
              f"/portal/jobs/{job.pk}/"]  # fmt: skip
    for who in ("viewer@hostile.test", "eng"):
        page.context.clear_cookies()
        sign_in(page, base, who)
        if who == "eng":
            pages += [f"/admin/jobs/migrationjob/{job.pk}/change/",
                      f"/admin/jobs/migrationjob/{job.pk}/manifest/",
                      f"/admin/jobs/migrationjob/{job.pk}/events/", "/admin/jobs/endpoint/",
                      "/admin/jobs/migrationjob/", "/admin/accounts/customer/"]  # fmt: skip
        shown = ""
        for path in pages:
            response = page.goto(base + path)
            assert response.status == 200, (who, path, response.status)
            page.wait_for_timeout(50)  # onerror of a broken image fires after load
            assert page.evaluate("typeof window.__xss") == "undefined", (who, path)
            assert dialogs == [], (who, path, dialogs)
            assert page.locator("script:has-text('__xss')").count() == 0, (who, path)
            assert page.locator("img[src=x], svg[onload]").count() == 0, (who, path)
            shown += page.inner_text("body")
        for name in NAMES:  # the names are on the pages, as the text they are
            assert name in shown, (who, name)
    # the watch is real: the same names unescaped run at once
    page.set_content(f"<body>{IMG}{SCRIPT}</body>")
    page.wait_for_timeout(200)
    assert dialogs == ["1"] and page.evaluate("window.__xss") == 1


def models_f(name: str):
    from django.db.models import F

    return F(name)
