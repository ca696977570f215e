"""The verify pass (issue 15): every file re-compared with the destination, nothing
written; a difference fails the file with verify_mismatch, an absent object with
missing_at_destination."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from jobs import services
from jobs.choices import JobState, PassKind
from jobs.models import FileItem, Pass

from .conftest import make_tree, tree_of
from .factories import Steps, new_job, run_job


def _verify(job):
    with Steps() as steps:
        services.job_start_verify(job=job)
        steps.run()
    job.refresh_from_db()
    return job, Pass.objects.filter(job=job, kind=PassKind.VERIFY).latest("number")


def _failed(p: Pass) -> dict[str, tuple[str, str]]:
    rows = FileItem.objects.filter(job_pass=p, state="failed")
    return {r.source_path: (r.reason, r.message) for r in rows}


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.django_db(transaction=True)
def test_local_verify_after_copy_then_changed_and_deleted(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=20, folders=3)
    job = run_job(new_job(src.as_uri(), dst.as_uri()))
    assert job.state == JobState.COMPLETED and tree_of(dst) == expected

    job, verify = _verify(job)
    assert job.state == JobState.COMPLETED
    assert verify.seen == len(expected) and verify.unchanged == len(expected)
    assert (verify.copied, verify.failed, verify.pending, verify.bytes_copied) == (0, 0, 0, 0)

    changed, gone = sorted(expected)[:2]
    (dst / changed).write_bytes(b"edited at the destination, longer than it was" * 100)
    (dst / gone).unlink()
    before = _snapshot(dst)

    job, again = _verify(job)
    assert job.state == JobState.COMPLETED_WITH_ERRORS
    failed = _failed(again)
    assert set(failed) == {changed, gone}
    assert failed[changed][0] == "verify_mismatch" and "size at destination" in failed[changed][1]
    assert failed[gone][0] == "missing_at_destination"
    assert again.unchanged == len(expected) - 2 and again.copied == 0
    assert again.seen == again.copied + again.unchanged + again.excluded + again.failed
    assert _snapshot(dst) == before  # nothing written: neither repaired nor re-created


@pytest.mark.django_db(transaction=True)
def test_local_verify_same_size_older_mtime_is_a_mismatch(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=6, folders=1)
    job = run_job(new_job(src.as_uri(), dst.as_uri()))
    name = sorted(tree_of(dst))[0]
    target = dst / name
    data = target.read_bytes()
    target.write_bytes(bytes(reversed(data)))  # same size, other bytes
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    job, verify = _verify(job)
    assert _failed(verify)[name][0] == "verify_mismatch"
    assert "modification time" in _failed(verify)[name][1]


@pytest.mark.django_db(transaction=True)
def test_gcs_verify_compares_hashes_and_writes_nothing(tmp_path, gcs_server):
    bucket = gcs_server.make_bucket()
    src = tmp_path / "src"
    expected = make_tree(src, files=12, folders=2)
    job = run_job(new_job(src.as_uri(), f"gs://{bucket}/in", options={"profile": "posix"}))
    assert job.state == JobState.COMPLETED

    job, verify = _verify(job)
    assert (verify.unchanged, verify.failed, verify.copied) == (len(expected), 0, 0)

    client = gcs_server.client()
    names = sorted(expected)
    # same size, other bytes, and the mtime we recorded kept: only the md5 tells
    changed = client.bucket(bucket).get_blob(f"in/{names[0]}")
    metadata = dict(changed.metadata or {})
    blob = client.bucket(bucket).blob(f"in/{names[0]}")
    blob.metadata = metadata
    blob.upload_from_string(bytes(reversed(expected[names[0]])))
    client.bucket(bucket).blob(f"in/{names[1]}").delete()
    generations = {b.name: (b.generation, b.md5_hash) for b in client.list_blobs(bucket)}

    job, again = _verify(job)
    failed = _failed(again)
    assert set(failed) == {names[0], names[1]}
    reason, message = failed[names[0]]
    assert reason == "verify_mismatch" and re.match(r"(md5|crc32c) at destination", message)
    assert failed[names[1]][0] == "missing_at_destination"
    assert again.unchanged == len(expected) - 2
    after = {b.name: (b.generation, b.md5_hash) for b in client.list_blobs(bucket)}
    assert after == generations  # nothing written, nothing deleted
