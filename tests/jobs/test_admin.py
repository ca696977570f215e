"""The support engineer's admin, as a staff user sees it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from django.urls import reverse

from jobs.choices import JobState
from jobs.models import Event, MigrationJob
from tests.servers.util import stop_group

from .conftest import REPO, base_env, current_db_url, make_tree
from .factories import EndpointFactory, JobFactory
from .test_execution import Steps, new_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("eng", "eng@example.test", "pw-Very-long-1")
    client.force_login(user)
    return client


def test_start_from_the_admin_runs_the_job_and_the_page_shows_progress(staff, tmp_path):
    src = tmp_path / "src"
    make_tree(src, files=6)
    job = new_job(src.as_uri(), (tmp_path / "dst").as_uri())
    changelist = reverse("admin:jobs_migrationjob_changelist")
    with Steps() as steps:
        response = staff.post(
            changelist, {"action": "action_start", "_selected_action": [job.pk]}, follow=True
        )
        assert "Start: 1 job(s)." in response.content.decode()
        steps.run()
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    page = staff.get(changelist).content.decode()
    assert "Completed" in page and "6 / 6 files" in page
    live = staff.get(reverse("admin:jobs_migrationjob_live", args=[job.pk])).content.decode()
    assert "6 copied" in live and "Pass 1 finished" in live
    change = staff.get(reverse("admin:jobs_migrationjob_change", args=[job.pk])).content.decode()
    assert reverse("admin:jobs_migrationjob_live", args=[job.pk]) in change


def test_bulk_pause_and_cancel_and_refusals_in_words(staff):
    jobs = [JobFactory(state=JobState.COPYING) for _ in range(2)]
    done = JobFactory(state=JobState.COMPLETED)
    url = reverse("admin:jobs_migrationjob_changelist")
    ids = [j.pk for j in jobs] + [done.pk]
    page = staff.post(url, {"action": "action_pause", "_selected_action": ids}, follow=True)
    text = page.content.decode()
    assert "Pause: 2 job(s)." in text and "is completed" in text
    assert {MigrationJob.objects.get(pk=j.pk).state for j in jobs} == {JobState.PAUSED}
    staff.post(url, {"action": "action_cancel", "_selected_action": ids})
    assert {MigrationJob.objects.get(pk=j.pk).state for j in jobs} == {JobState.CANCELLED}


def test_live_panel_filters_events_by_level(staff):
    job = JobFactory()
    Event.objects.create(job=job, level="info", message="hello info")
    Event.objects.create(job=job, level="error", message="disk <b>full</b>")
    url = reverse("admin:jobs_migrationjob_live", args=[job.pk])
    errors = staff.get(url, {"level": "error"}).content.decode()
    assert "disk &lt;b&gt;full&lt;/b&gt;" in errors and "hello info" not in errors


def test_test_connection_reports_errors_in_words(staff, tmp_path, gcs_server):
    good = EndpointFactory(name="Good", url=tmp_path.as_uri())
    missing = EndpointFactory(name="Gone", url=(tmp_path / "nope").as_uri())
    bucket = EndpointFactory(name="Nobucket", url="gs://no-such-bucket-here/x")
    url = reverse("admin:jobs_endpoint_changelist")
    page = staff.post(
        url,
        {"action": "test_connection", "_selected_action": [good.pk, missing.pk, bucket.pk]},
        follow=True,
    ).content.decode()
    assert "Good: connection OK" in page
    assert "Gone: folder does not exist" in page
    assert "Nobucket:" in page and "does not exist" in page.split("Nobucket:")[1][:200]


def test_endpoint_secret_is_write_only(staff):
    url = reverse("admin:jobs_endpoint_add")
    staff.post(url, {"name": "share", "url": "smb://EXAMPLE;bob@127.0.0.1/data",
                     "secret": "Sup3r-Secret-pw"})  # fmt: skip
    endpoint = EndpointFactory._meta.model.objects.get(name="share")
    assert endpoint.get_secret() == "Sup3r-Secret-pw"
    assert "Sup3r-Secret-pw" not in endpoint.secret_encrypted
    page = staff.get(reverse("admin:jobs_endpoint_change", args=[endpoint.pk])).content.decode()
    assert "Sup3r-Secret-pw" not in page and endpoint.secret_encrypted not in page


def test_banner_when_no_worker_cluster_and_none_when_one_runs(staff, settings):
    index = reverse("admin:index")
    assert "No worker cluster is running" in staff.get(index).content.decode()
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=REPO,
        env=base_env(current_db_url()),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "No worker cluster is running" in staff.get(index).content.decode():
            assert time.monotonic() < deadline, "the cluster never reported itself"
            time.sleep(0.5)
    finally:
        stop_group(cluster)
