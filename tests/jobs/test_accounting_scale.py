"""The accounting check at a pass's end in constant cost, and a scan that outlives the task
timeout: it hands itself on instead of being killed and standing still (issue 16)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from jobs import selectors, services
from jobs.models import Batch, Event, FileItem, MigrationJob, Pass
from migrator.engine import scan as engine_scan

from .factories import Steps, new_job

pytestmark = pytest.mark.django_db(transaction=True)

FAILED = "Accounting check failed"


def synthetic(files: int, folders: int = 10) -> str:
    return f"synthetic://?files={files}&folders={folders}&min_size=1&max_size=64"


def until_finish(job: MigrationJob, steps: Steps) -> Pass:
    """Everything but the pass's end: scanned and copied, nothing pending."""
    services.job_start(job=job)
    while steps.run("customer_dispatch") + steps.run("scan_pass") + steps.run("copy_batch"):
        pass
    p = Pass.objects.get(job=job)
    assert (p.scan_finished, p.pending) == (True, 0)
    return p


def test_the_pass_end_check_catches_a_tampered_counter_as_the_group_by_does():
    job = new_job(synthetic(300), "null://")
    with Steps() as steps:
        p = until_finish(job, steps)
        assert selectors.accounting_mismatch(job_pass=p) == {}
        Pass.objects.filter(pk=p.pk).update(copied=p.copied + 7)  # behind the sums' back
        p.refresh_from_db()
        full = selectors.accounting_mismatch(job_pass=p, full=True)
        assert full == {"copied": (307, 300)}
        assert selectors.accounting_mismatch(job_pass=p) == full
        steps.run("finish_pass")
    job.refresh_from_db()
    assert job.state == "completed_with_errors"
    said = list(Event.objects.filter(job=job, message__startswith=FAILED).values_list("message"))
    assert said == [(f"{FAILED} (counter, manifest): {{'copied': (307, 300)}}",)]
    with pytest.raises(CommandError, match="2 check"):
        call_command("accounting_verify", str(p.pk))


def test_a_row_left_pending_that_no_counter_knows_fails_the_check():
    job = new_job(synthetic(40), "null://")
    with Steps() as steps:
        p = until_finish(job, steps)
        row = FileItem.objects.filter(job_pass=p, kind="file").order_by("id").first()
        FileItem.objects.filter(pk=row.pk).update(state="pending")  # behind its back
        assert selectors.accounting_mismatch(job_pass=p) == {"pending": (0, 1)}
        steps.run("finish_pass")
    job.refresh_from_db()
    assert job.state == "completed_with_errors"


def test_retried_files_keep_the_sums_true(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.txt").write_text(str(i))
    job = new_job(src.as_uri(), (tmp_path / "dst").as_uri())
    with Steps() as steps:
        p = until_finish(job, steps)
        FileItem.objects.filter(job_pass=p, kind="file", source_path__endswith="f2.txt").update(
            state="failed", reason="io_error"
        )
        # as a batch that failed it would have left the counters and its own sums
        Pass.objects.filter(pk=p.pk).update(copied=5, failed=1)
        Batch.objects.filter(job_pass=p).update(files_copied=F("files_copied") - 1, files_failed=1)
        steps.run("finish_pass")
        job.refresh_from_db()
        assert job.state == "completed_with_errors"
        assert services.job_retry_failed(job=job) == 1
        steps.run()
    job.refresh_from_db()
    assert job.state == "completed"
    assert not Event.objects.filter(job=job, message__startswith=FAILED).exists()


def check_queries(job: MigrationJob, steps: Steps) -> list[str]:
    p = until_finish(job, steps)
    with CaptureQueriesContext(connection) as captured:
        assert selectors.accounting_mismatch(job_pass=p) == {}
    return [q["sql"] for q in captured.captured_queries]


def test_the_check_costs_the_same_queries_at_any_size(settings):
    settings.MIGRATOR_BATCH_FILES = 200
    with Steps() as steps:
        small = check_queries(new_job(synthetic(20, 2), "null://"), steps)
        large = check_queries(new_job(synthetic(4000, 40), "null://"), steps)
    assert len(small) == len(large) == 3
    table = FileItem._meta.db_table
    on_manifest = [sql for sql in large if table in sql]
    assert len(on_manifest) == 1 and "LIMIT" in on_manifest[0]  # the pending rows, bounded
    if connection.vendor == "sqlite":  # counted on the index alone, never the rows
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {on_manifest[0]}")
            plan = " ".join(str(r[-1]) for r in cursor.fetchall())
        assert "COVERING INDEX item_pass_state_id" in plan


def test_a_scan_past_the_task_timeout_hands_itself_on_and_loses_nothing(settings, monkeypatch):
    settings.MIGRATOR_TASK_TIMEOUT = 0.02  # hands on after the first chunk past 16 ms
    monkeypatch.setattr(engine_scan, "SCAN_FIRST_FLUSH_ROWS", 100)
    monkeypatch.setattr(engine_scan, "SCAN_FLUSH_ROWS", 200)
    files = 3000
    job = new_job(synthetic(files, 30), "null://")
    scans = 0
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
        while steps.run("scan_pass", limit=1):
            scans += 1
            p = Pass.objects.get(job=job)
            if not p.scan_finished:  # handed on: the lease is free, the next task queued
                assert (p.scan_lease_owner, p.scan_lease_expires) == ("", None)
                assert [f for f, _ in steps.queue].count("jobs.tasks.scan_pass") == 1
        steps.run()
    assert scans >= 3
    job.refresh_from_db()
    assert job.state == "completed"
    p = Pass.objects.get(job=job)
    assert (p.seen, p.copied, p.pending, p.folders_seen) == (files, files, 0, 30)
    rows = FileItem.objects.filter(job_pass=p, kind="file")
    assert rows.count() == rows.values("source_path").distinct().count() == files
    handed = Event.objects.filter(job=job, message__startswith="Scan handed on").count()
    assert handed == scans - 1
    assert not Event.objects.filter(job=job, message__startswith=FAILED).exists()
