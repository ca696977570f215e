"""The job pipeline through the real services, driven step by step in-process."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from accounts.models import Customer
from jobs import services
from jobs.choices import JobState
from jobs.models import Event, FileItem, MigrationJob, Pass
from migrator.storage import Entry
from migrator.storage.local import LocalConnector

from .conftest import make_tree, tree_of
from .factories import Steps, new_job

pytestmark = pytest.mark.django_db(transaction=True)


def test_file_vanishing_between_scan_and_copy_is_reported_vanished(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=8)
    job = new_job(src.as_uri(), dst.as_uri())
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
        steps.run("scan_pass")
        (src / "d0" / "plain.txt").unlink()
        steps.run()
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED_WITH_ERRORS
    item = FileItem.objects.get(source_path="d0/plain.txt")
    assert (item.state, item.reason) == ("failed", "vanished")
    p = Pass.objects.get(job=job)
    assert (p.seen, p.copied, p.failed, p.pending) == (8, 7, 1, 0)
    del expected["d0/plain.txt"]
    assert tree_of(dst) == expected
    assert Event.objects.filter(job=job, level="error", message__contains="vanished").exists()


def test_pause_stops_copying_and_resume_finishes(tmp_path, settings):
    settings.MIGRATOR_BATCH_FILES = 3
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=9, folders=1)
    job = new_job(src.as_uri(), dst.as_uri())
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
        steps.run("scan_pass")
        services.job_pause(job=job)
        steps.run()  # the batches see the pause and hand themselves back
        p = Pass.objects.get(job=job)
        assert (p.copied, p.pending) == (0, 9)
        assert not list(dst.rglob("*.dat"))
        services.job_resume(job=job)
        steps.run()
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert tree_of(dst) == expected


def test_cancel_leaves_the_rest_pending_and_accounted(tmp_path, settings):
    settings.MIGRATOR_BATCH_FILES = 2
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=6, folders=1)
    job = new_job(src.as_uri(), dst.as_uri())
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
        steps.run("scan_pass")
        services.job_cancel(job=job)
        steps.run()
    job.refresh_from_db()
    p = Pass.objects.get(job=job)
    assert job.state == JobState.CANCELLED
    assert p.seen == p.copied + p.unchanged + p.excluded + p.failed + p.pending == 6
    assert p.pending == 6


def test_retry_failed_copies_what_failed_once_fixed(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=4, folders=1)
    dst.mkdir()
    (dst / "d0").mkdir()
    (dst / "d0" / "plain.txt").mkdir()  # a folder where a file must go: that file fails
    job = new_job(src.as_uri(), dst.as_uri())
    with Steps() as steps:
        services.job_start(job=job)
        steps.run()
        job.refresh_from_db()
        assert job.state == JobState.COMPLETED_WITH_ERRORS
        (dst / "d0" / "plain.txt").rmdir()
        assert services.job_retry_failed(job=job) == 1
        steps.run()
    job.refresh_from_db()
    p = Pass.objects.get(job=job)
    assert job.state == JobState.COMPLETED
    assert (p.copied, p.failed, p.pending) == (4, 0, 0)
    assert (dst / "d0" / "plain.txt").is_file()


def test_names_that_would_escape_the_destination_are_never_written(tmp_path):
    """A source (say, an object store) can list '../x' or absolute names; the planner
    fails them with unsafe_path and nothing lands outside the destination root."""

    class HostileSource(LocalConnector):
        def scan(self, prefix=""):
            yield Entry("ok.txt", "file", 2, 0)
            yield Entry("../escaped.txt", "file", 2, 0)
            yield Entry("a/../../escaped2.txt", "file", 2, 0)
            yield Entry("/etc/evil.txt", "file", 2, 0)

    src, dst = tmp_path / "src", tmp_path / "root" / "dst"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    job = new_job(src.as_uri(), dst.as_uri())
    import jobs.connectors as connectors

    original = connectors.connector_for

    def patched(url, secret=None):
        return HostileSource(str(src)) if url == src.as_uri() else original(url, secret)

    connectors.connector_for = patched
    try:
        with Steps() as steps:
            services.job_start(job=job)
            steps.run()
    finally:
        connectors.connector_for = original
    unsafe = FileItem.objects.filter(reason="unsafe_path").values_list("source_path", flat=True)
    assert sorted(unsafe) == ["../escaped.txt", "/etc/evil.txt", "a/../../escaped2.txt"]
    assert sorted(p.name for p in (tmp_path / "root").rglob("*")) == ["dst", "ok.txt"]
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED_WITH_ERRORS


def test_per_customer_limit_queues_the_rest_in_order(tmp_path):
    customer = Customer.objects.create(name="Limited", max_running_jobs=1)
    jobs = []
    for i in range(3):
        src = tmp_path / f"src{i}"
        make_tree(src, files=2, folders=1)
        s = services.endpoint_create(name=f"s{i}", url=src.as_uri(), customer=customer)
        d = services.endpoint_create(name=f"d{i}", url=(tmp_path / f"d{i}").as_uri())
        jobs.append(services.job_create(customer=customer, name=f"j{i}", source=s, destination=d))
    with Steps() as steps:
        for job in jobs:
            services.job_start(job=job)
        steps.run("customer_dispatch")
        states = [MigrationJob.objects.get(pk=j.pk).state for j in jobs]
        assert states == ["scanning", "queued", "queued"]
        steps.run()
    assert [MigrationJob.objects.get(pk=j.pk).state for j in jobs] == ["completed"] * 3


def test_source_lost_mid_scan_resumes_after_the_cursor_soon(tmp_path, monkeypatch):
    """The source fails after some entries: the scan gives its lease back for a short
    pause (not the task timeout), says so, and the next scan goes on after the last
    committed entry: every file once."""
    from jobs import sink
    from migrator.engine import scan as engine_scan
    from migrator.storage import Transient

    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=8)
    scan = LocalConnector.scan
    calls = []

    def failing_scan(self, prefix=""):
        calls.append(prefix)
        for n, entry in enumerate(scan(self, prefix)):
            if len(calls) == 1 and n == 4:
                raise Transient(entry.path, "connection reset by peer")
            yield entry

    monkeypatch.setattr(LocalConnector, "scan", failing_scan)
    monkeypatch.setattr(engine_scan, "SCAN_FIRST_FLUSH_ROWS", 2)  # entries before the failure
    monkeypatch.setattr(engine_scan, "SCAN_FLUSH_ROWS", 2)  # are committed, two at a time
    monkeypatch.setattr(sink, "SCAN_RESUME_SECONDS", 1)
    job = new_job(src.as_uri(), dst.as_uri())
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
        with pytest.raises(Transient):
            steps.run("scan_pass")
        p = Pass.objects.get(job=job)
        assert not p.scan_finished and p.scan_cursor
        lease_left = (p.scan_lease_expires - timezone.now()).total_seconds()
        assert 0 < lease_left <= sink.SCAN_RESUME_SECONDS
        # staff read the error itself; customers read that it resumes, without the detail
        warning = Event.objects.get(job=job, level="warning", message__startswith="Scan inter")
        assert "connection reset by peer" in warning.message and "resumes" in warning.message
        assert warning.staff_only
        public = Event.objects.get(job=job, level="warning", staff_only=False)
        assert public.message == (
            "The scan was interrupted: the source stopped answering; it resumes where it "
            f"stopped in {sink.SCAN_RESUME_SECONDS} s."
        )
        assert "connection reset" not in public.message and str(src) not in public.message
        assert services.leases_reap()["scans"] == 0  # not before the pause is over
        time.sleep(lease_left + 0.1)
        assert services.leases_reap()["scans"] == 1
        steps.run()
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert len(calls) == 2
    p.refresh_from_db()
    assert (p.seen, p.copied, p.failed, p.pending) == (8, 8, 0, 0)
    assert FileItem.objects.filter(job_pass=p, kind="file").count() == 8  # none twice
    assert tree_of(dst) == expected


def test_a_runner_in_a_process_holding_a_connection_copies_on_threads(tmp_path):
    """Copy processes are forked only from a process with no database connection and no
    other thread (migrator_run's start); forking this one would share its open connection
    with the children. Here the runner copies on its own threads and the job completes."""
    from jobs.inline import InlineRunner

    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=6)
    job = new_job(src.as_uri(), dst.as_uri())  # this process's connection is open
    with InlineRunner(workers=2, processes=2) as runner:
        assert runner.processes is None
        services.job_start(job=job)
        job = runner.wait(job)
    assert job.state == JobState.COMPLETED
    assert tree_of(dst) == expected
