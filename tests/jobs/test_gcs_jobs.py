"""Jobs into and out of GCS, against gcp-storage-emulator."""

from __future__ import annotations

import base64
import hashlib

import pytest

from jobs import services
from jobs.choices import JobState
from jobs.models import FileItem, Pass
from tests.servers.gcs import _stop, start_emulator

from .conftest import make_tree, tree_of
from .factories import Steps, new_job


def test_cli_file_to_gcs_then_rerun_is_a_no_op_and_back_to_file(cli, tmp_path, gcs_server):
    bucket = gcs_server.make_bucket()
    src = tmp_path / "src"
    expected = make_tree(src, files=25)
    dest = f"gs://{bucket}/migrated"

    # posix: keep the names as they are ('#', '?' are legal in GCS; the default gcs
    # profile would rename them, see test_sanitize_jobs)
    first = cli.run("--source", src.as_uri(), "--destination", dest, "--json", "--profile", "posix")
    assert first.code == 0, first.stderr
    assert first.json["copied"] == len(expected)

    client = gcs_server.client()
    blobs = {b.name: b for b in client.list_blobs(bucket)}
    assert sorted(blobs) == sorted(f"migrated/{p}" for p in expected)
    for rel, data in expected.items():
        blob = blobs[f"migrated/{rel}"]
        assert blob.md5_hash == base64.b64encode(hashlib.md5(data).digest()).decode()
        assert client.bucket(bucket).blob(blob.name).download_as_bytes() == data
        assert "goog-reserved-file-mtime" in (blob.metadata or {})

    again = cli.run(
        "--source", src.as_uri(), "--destination", dest, "--json", "--profile", "posix"
    ).json
    assert (again["copied"], again["unchanged"], again["state"]) == (0, len(expected), "completed")

    back = tmp_path / "back"
    restored = cli.run("--source", dest, "--destination", back.as_uri(), "--json")
    assert restored.code == 0, restored.stderr
    assert tree_of(back) == expected


def test_cli_missing_bucket_is_one_clear_line(cli, tmp_path, gcs_server):
    (tmp_path / "src").mkdir()
    result = cli.run("--source", (tmp_path / "src").as_uri(), "--destination", "gs://no-such-b/x")
    assert result.code == 2
    assert result.stderr.count("\n") == 1 and "no-such-b" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_destination_down_mid_job_retries_then_fails_with_reason(tmp_path, settings, monkeypatch):
    settings.MIGRATOR_RETRY_BACKOFF = 0.05
    settings.MIGRATOR_RETRY_ATTEMPTS = 3
    proc, url = start_emulator(tmp_path / "emulator.log")
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        storage.Client(project="test", credentials=AnonymousCredentials()).create_bucket("down")
        src = tmp_path / "src"
        make_tree(src, files=5, folders=1)
        job = new_job(src.as_uri(), "gs://down/x")
        with Steps() as steps:
            services.job_start(job=job)
            steps.run("customer_dispatch")
            steps.run("scan_pass")
            _stop(proc)  # the destination goes away after the scan
            steps.run()
    finally:
        _stop(proc)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED_WITH_ERRORS
    p = Pass.objects.get(job=job)
    assert (p.seen, p.failed, p.pending) == (5, 5, 0)
    items = FileItem.objects.filter(job=job, kind="file")
    assert {(i.reason, i.attempts) for i in items} == {("destination_unavailable", 3)}
