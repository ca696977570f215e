"""In a real browser (Debian's Chromium via Playwright) against the live server, with a
real worker cluster running the job."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pytest

from accounts.models import Customer
from jobs import services
from jobs.models import MigrationJob
from tests.jobs.conftest import REPO, base_env, current_db_url, make_tree
from tests.servers.browser import screenshot
from tests.servers.util import kill_group

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "Browser-Test-pw-42"


@pytest.fixture
def cluster():
    """A django-q2 cluster working on the test database."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=REPO,
        env=base_env(current_db_url(), MIGRATOR_BATCH_FILES="10", MIGRATOR_WORKERS="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield proc
    kill_group(proc)


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit], input[type=submit]")


def test_staff_starts_a_job_in_the_admin_and_opens_its_report(
    live_server, page, cluster, tmp_path, django_user_model
):
    django_user_model.objects.create_superuser("eng", "eng@example.test", PASSWORD)
    src = tmp_path / "src"
    make_tree(src, files=30)
    customer = Customer.objects.create(name="Umbrella")
    s = services.endpoint_create(name="share", url=src.as_uri(), customer=customer)
    d = services.endpoint_create(name="bucket", url=(tmp_path / "dst").as_uri(), customer=customer)
    job = services.job_create(customer=customer, name="Umbrella move", source=s, destination=d)

    sign_in(page, live_server.url, "eng")
    page.goto(f"{live_server.url}/admin/jobs/migrationjob/")
    page.check(f"input[name=_selected_action][value='{job.pk}']")
    page.select_option("select[name=action]", "action_start")
    page.click("button[name=index]")
    page.wait_for_selector("text=Start: 1 job(s).")
    page.click("text=View report")
    page.wait_for_selector("h1:has-text('Umbrella move')")
    for _ in range(60):
        job.refresh_from_db()
        if job.state == "completed":
            break
        page.wait_for_timeout(500)
    page.reload()
    assert page.locator("h1 .state").inner_text() == "Completed"
    screenshot(page, "staff-report-summary")
    page.click("nav.tabs >> text=Files")
    page.wait_for_selector("td.path")
    assert page.locator("td.path", has_text="plain.txt").count() >= 1
    assert MigrationJob.objects.get(pk=job.pk).current_pass.copied == 30


def test_customer_viewer_watches_progress_without_reload_filters_and_downloads_csv(
    live_server, page, cluster, tmp_path, django_user_model
):
    from accounts.choices import AccountSource, MembershipSource
    from accounts.models import Membership, Profile

    customer = Customer.objects.create(name="Wayne Enterprises")
    other = Customer.objects.create(name="Stark Industries")
    user = django_user_model.objects.create_user("lucius", email="lucius@wayne.test",
                                                 password=PASSWORD)  # fmt: skip
    Profile.objects.create(user=user, source=AccountSource.LOCAL)
    Membership.objects.create(user=user, customer=customer, source=MembershipSource.MANUAL)
    src = tmp_path / "src"
    make_tree(src, files=40, size=5000)
    s = services.endpoint_create(name="share", url=src.as_uri(), customer=customer)
    d = services.endpoint_create(name="dst", url=(tmp_path / "dst").as_uri(), customer=customer)
    job = services.job_create(customer=customer, name="Batcave archive", source=s,
                              destination=d, bwlimit=40_000)  # fmt: skip
    s2 = services.endpoint_create(name="s2", url=src.as_uri(), customer=other)
    services.job_create(customer=other, name="Stark secret", source=s2, destination=s2)

    sign_in(page, live_server.url, "lucius")
    page.wait_for_url("**/portal/**")
    page.wait_for_load_state("networkidle")
    assert "Batcave archive" in page.content() and "Stark secret" not in page.content()
    assert "Wayne Enterprises" in page.locator("header").inner_text()
    services.job_start(job=job)
    page.click("text=Batcave archive")
    page.wait_for_load_state("networkidle")
    page.evaluate("window.__sameDocument = 42")
    first = page.locator(".files-done").inner_text()
    page.wait_for_function(
        "(first) => { const el = document.querySelector('.files-done');"
        " return el && el.textContent.trim() !== first.trim(); }",
        arg=first,
        timeout=30_000,
    )
    assert page.evaluate("window.__sameDocument") == 42, "the page reloaded"
    screenshot(page, "portal-job-progress")
    page.wait_for_selector(".state:has-text('Completed')", timeout=60_000)
    assert page.evaluate("window.__sameDocument") == 42

    page.click("text=Files")
    page.fill("input[name=ext]", "dat")
    page.click("button:has-text('Filter')")
    page.wait_for_selector("td.path")
    shown = page.locator("tbody td.path:first-child").all_inner_texts()
    assert shown and all(p.endswith(".dat") for p in shown)
    screenshot(page, "portal-report-files")
    with page.expect_download() as info:
        page.click("text=Download CSV")
    with open(info.value.path(), encoding="utf-8") as downloaded:
        rows = list(csv.reader(io.StringIO(downloaded.read())))
    assert rows[0][0] == "source_path"
    assert set(shown) <= {r[0] for r in rows[1:]}
    assert all(r[0].endswith(".dat") and r[5] == "copied" for r in rows[1:])

    page.goto(f"{live_server.url}/reports/jobs/{job.pk}/completion/")
    assert "CET" in page.content() or "CEST" in page.content()  # the viewer's time zone
