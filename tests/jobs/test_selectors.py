"""Reads, over a job run through the real services on a real folder: progress from the
counters, the summary, the manifest's own count, and who sees which job."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.http import Http404

from accounts.models import Customer, Membership
from jobs import selectors, services
from jobs.models import FileItem, Pass

from .conftest import make_tree
from .factories import Steps, new_job

pytestmark = pytest.mark.django_db(transaction=True)


def run(job) -> Pass:
    with Steps() as steps:
        services.job_start(job=job)
        steps.run()
    return Pass.objects.get(job=job)


def test_progress_and_summary_agree_with_the_manifest(tmp_path, settings):
    settings.MIGRATOR_BATCH_FILES = 4
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=10, folders=2)
    (src / "Thumbs.db").write_bytes(b"junk")
    job = new_job(src.as_uri(), dst.as_uri())
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
        steps.run("scan_pass")
        job.refresh_from_db()
        during = selectors.job_progress(job=job)
        assert (during["seen"], during["done"], during["pending"]) == (11, 1, 10)
        assert during["fraction"] == pytest.approx(1 / 11)
        steps.run()
    job.refresh_from_db()
    after = selectors.job_progress(job=job)
    assert (after["done"], after["pending"], after["fraction"]) == (11, 0, 1.0)
    assert after["eta_h"] == "—"
    p = Pass.objects.get(job=job)
    truth = selectors.manifest_truth(pass_id=p.pk)
    assert truth == {"copied": 10, "excluded": 1}
    summary = selectors.job_summary(job=job)
    keys = ("state", "seen", "copied", "excluded", "failed", "pending")
    assert [summary[k] for k in keys] == ["completed", 11, 10, 1, 0, 0]
    assert summary["excluded_by_reason"] == {"junk_file": 1}
    assert summary["seen"] == sum(truth.values())


def test_manifest_truth_counts_rows_not_counters(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=3, folders=1)
    p = run(new_job(src.as_uri(), dst.as_uri()))
    FileItem.objects.filter(job_pass=p, kind="file").update(state="failed")  # behind its back
    assert selectors.manifest_truth(pass_id=p.pk) == {"failed": 3}
    p.refresh_from_db()
    assert p.copied == 3  # the counters did not move: the end-of-pass check would say so


def test_a_viewer_sees_only_its_customers_jobs(tmp_path):
    src = tmp_path / "src"
    make_tree(src, files=1)
    mine = new_job(src.as_uri(), (tmp_path / "a").as_uri())
    other_customer = Customer.objects.create(name="Other")
    theirs_src = services.endpoint_create(name="s2", url=src.as_uri(), customer=other_customer)
    theirs_dst = services.endpoint_create(
        name="d2", url=(tmp_path / "b").as_uri(), customer=other_customer
    )
    theirs = services.job_create(customer=other_customer, name="theirs", source=theirs_src,
                                 destination=theirs_dst)  # fmt: skip
    viewer = get_user_model().objects.create_user("viewer", password="x")
    Membership.objects.create(user=viewer, customer=mine.customer)
    assert list(selectors.jobs_visible_to(viewer)) == [mine]
    assert set(selectors.endpoints_visible_to(viewer)) == {mine.source, mine.destination}
    with pytest.raises(Http404):
        selectors.job_get_for(user=viewer, pk=theirs.pk)
    staff = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    assert set(selectors.jobs_visible_to(staff)) == {mine, theirs}
