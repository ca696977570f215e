"""Jobs into and out of GCS, against gcp-storage-emulator."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest

from jobs import services
from jobs.choices import JobState
from jobs.models import Event, FileItem, Pass
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
    settings.MIGRATOR_BATCH_ATTEMPTS = 1  # no later tries of the batch: it never comes back
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


@pytest.mark.django_db(transaction=True)
def test_objects_with_empty_and_dot_parts_each_get_a_row_and_a_safe_name(tmp_path, gcs_server):
    """Legal object names that no folder tree can hold as they are ("in//abs.txt",
    "in/./dot.txt"): each object is one manifest row, carried over under a renamed
    folder (in the rename report), `seen` equals the objects listed, nothing escapes.
    Right below the source folder ("//" just after "in/") they fail, each with a reason."""
    bucket = gcs_server.make_bucket()
    names = {
        "in/plain.txt": b"plain",
        "in//abs.txt": b"one empty part",
        "in///abs2.txt": b"two empty parts",
        "in/./dot.txt": b"a dot part",
        "in/a//b.txt": b"empty part lower down",
        "in/a/c.txt": b"c",
    }
    raw = gcs_server.client().bucket(bucket)
    for name, data in names.items():
        raw.blob(name).upload_from_string(data, retry=None)
    root = tmp_path / "root"
    whole = new_job(f"gs://{bucket}", (root / "dst").as_uri())
    with Steps() as steps:
        services.job_start(job=whole)
        steps.run()
    whole.refresh_from_db()
    p = Pass.objects.get(job=whole)
    assert (p.seen, p.copied, p.failed, p.pending) == (6, 6, 0, 0)
    assert whole.state == JobState.COMPLETED
    rows = FileItem.objects.filter(job_pass=p, kind="file")
    files = dict(rows.values_list("source_path", "dest_path"))
    assert files["in//abs.txt"] == "in/_/abs.txt"
    assert files["in///abs2.txt"] == "in/_/_/abs2.txt"
    assert files["in/a//b.txt"] == "in/a/_/b.txt"
    # "in/" and "in/." cannot both become "in/_": the second gets a stable suffix
    assert files["in/./dot.txt"].startswith("in/_~") and files["in/./dot.txt"].endswith("/dot.txt")
    assert (files["in/plain.txt"], files["in/a/c.txt"]) == ("in/plain.txt", "in/a/c.txt")
    folders = FileItem.objects.filter(job_pass=p, kind="dir")
    renamed = dict(folders.exclude(rules="").values_list("source_path", "rules"))
    assert renamed["in/"] == "empty_name" and "dot_name" in renamed["in/."]
    assert tree_of(root / "dst") == {dst: names[src] for src, dst in files.items()}
    assert sorted(x.name for x in root.iterdir()) == ["dst"]  # nothing beside the root

    below = new_job(f"gs://{bucket}/in", (root / "dst2").as_uri())
    with Steps() as steps:
        services.job_start(job=below)
        steps.run()
    p = Pass.objects.get(job=below)
    assert (p.seen, p.copied, p.failed, p.pending) == (6, 4, 2, 0)
    failed = FileItem.objects.filter(job_pass=p, state="failed")
    assert sorted(failed.values_list("source_path", "reason")) == [
        ("//abs2.txt", "unsafe_path"), ("/abs.txt", "unsafe_path")
    ]  # fmt: skip
    assert all("choose the folder above" in m for m in failed.values_list("message", flat=True))


@pytest.mark.django_db(transaction=True)
def test_gcs_away_for_30_seconds_mid_job_loses_nothing_and_the_job_completes(
    tmp_path, settings, monkeypatch
):
    """The GCS server stops after some batches and comes back 30 s later on the same
    address: the files it could not take wait (pending, their batches tried again later),
    and the job then completes with every object once, whole."""
    settings.MIGRATOR_RETRY_BACKOFF = 0.05
    settings.MIGRATOR_RETRY_ATTEMPTS = 2
    settings.MIGRATOR_RETRY_LATER_SECONDS = 3
    settings.MIGRATOR_BATCH_FILES = 5
    data = tmp_path / "gcs-data"
    data.mkdir()
    log = tmp_path / "emulator.log"
    proc, url = start_emulator(log, data_dir=data)
    port = int(url.rsplit(":", 1)[1])
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="test", credentials=AnonymousCredentials())
        client.create_bucket("outage")
        src = tmp_path / "src"
        expected = make_tree(src, files=30, folders=3, size=2000)
        job = new_job(src.as_uri(), "gs://outage/x")
        with Steps() as steps:
            services.job_start(job=job)
            steps.run("customer_dispatch")
            steps.run("scan_pass")
            assert steps.run("copy_batch", limit=2) == 2  # some batches land first
            _stop(proc)  # away
            down_until = time.monotonic() + 30
            while time.monotonic() < down_until:  # workers keep trying meanwhile
                services.leases_reap()
                steps.run()
                time.sleep(1)
            p = Pass.objects.get(job=job)
            assert p.failed == 0 and p.pending > 0  # waiting, not failed
            proc, _ = start_emulator(log, port=port, data_dir=data)  # back, same address
            deadline = time.monotonic() + 60
            while job.state != JobState.COMPLETED and time.monotonic() < deadline:
                services.leases_reap()
                steps.run()
                job.refresh_from_db()
                time.sleep(0.5)
        blobs = {b.name: b for b in client.list_blobs("outage")}
        files = FileItem.objects.filter(job=job, kind="file")
        where = dict(files.values_list("source_path", "dest_path"))
        assert sorted(where) == sorted(expected)
        for rel, content in expected.items():  # (the gcs profile renames '#' and '?')
            got = client.bucket("outage").blob(f"x/{where[rel]}").download_as_bytes()
            assert got == content, rel
    finally:
        _stop(proc)
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    p = Pass.objects.get(job=job)
    assert (p.seen, p.copied + p.unchanged, p.failed, p.pending) == (30, 30, 0, 0)
    assert sorted(blobs) == sorted(f"x/{d}" for d in where.values())  # each once, no more
    waited = Event.objects.filter(job=job, message__contains="wait for their endpoint")
    assert waited.exists() and all(e.staff_only for e in waited)
