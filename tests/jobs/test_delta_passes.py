"""Catch-up (delta) passes against real storage: a second pass compares the source with the
last pass's manifest and the destination with what we wrote, copies only what changed,
and resolves objects changed at the destination by the job's conflicts policy."""

from __future__ import annotations

import csv
import io
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from jobs import selectors, services
from jobs.choices import JobState
from jobs.models import Event, FileItem, Pass
from migrator.storage.local import LocalConnector

from .conftest import make_tree, tree_of
from .factories import new_job, run_job

LOCAL_CALLS = ("open", "stat", "write", "mkdir", "folder_names", "delete")


def _count_calls(monkeypatch, cls, names) -> Counter:
    calls: Counter = Counter()
    for name in names:
        original = getattr(cls, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, counted)
    return calls


def _last_pass(job) -> Pass:
    return Pass.objects.filter(job=job).order_by("-number").first()


def _rows(job_pass: Pass) -> dict[str, FileItem]:
    return {r.source_path: r for r in FileItem.objects.filter(job_pass=job_pass, kind="file")}


def _accounted(p: Pass) -> bool:
    return p.seen == p.copied + p.unchanged + p.excluded + p.failed + p.pending


@pytest.mark.django_db(transaction=True)
def test_second_local_pass_copies_nothing_then_copies_only_what_changed(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=30)
    dst.mkdir()
    job = new_job(src.as_uri(), dst.as_uri())
    job = run_job(job)
    assert job.state == JobState.COMPLETED
    assert tree_of(dst) == expected

    # second pass over an unchanged tree: nothing opened, statted or written
    calls = _count_calls(monkeypatch, LocalConnector, LOCAL_CALLS)
    job = run_job(job)
    second = _last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    assert (second.seen, second.unchanged, second.copied) == (30, 30, 0)
    assert (second.delta_new, second.delta_changed, second.conflicts) == (0, 0, 0)
    assert second.delta_checked and second.batches_total == 0
    # nothing per file: only the destination's check at the start of a pass (its root)
    assert calls == Counter(mkdir=1), calls
    assert _accounted(second)

    # a new file, a changed one, one deleted and one edited at the destination
    (src / "d0" / "new.txt").write_bytes(b"brand new")
    changed = src / "d0" / "d1" / "d2" / "file-006.dat"
    changed.write_bytes(b"changed at the source")
    removed = "d0/d1/d2/d3/file-007.dat"
    (dst / removed).unlink()
    edited = dst / "d0" / "file-008.dat"
    edited.write_bytes(b"edited at the destination")
    later = time.time() + 5
    os.utime(edited, (later, later))
    calls.clear()
    job = run_job(job)
    third = _last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    assert (third.delta_new, third.delta_changed, third.conflicts) == (1, 1, 1)
    assert (third.seen, third.copied, third.unchanged) == (31, 4, 27)
    assert _accounted(third)
    rows = _rows(third)
    assert rows["d0/new.txt"].change == "new"
    assert rows["d0/d1/d2/file-006.dat"].change == "changed"
    assert rows[removed].change == "missing"
    assert rows["d0/file-008.dat"].change == "conflict"
    assert "size" in rows["d0/file-008.dat"].message
    assert tree_of(dst) == tree_of(src)  # source wins: the edit is overwritten
    assert calls["write"] == 4


def test_options_check_refuses_an_unknown_conflicts_policy(db, tmp_path):
    job = new_job(tmp_path.as_uri(), (tmp_path / "d").as_uri())
    with pytest.raises(ValueError, match="conflicts policy"):
        services.job_options_check(
            options={"conflicts": "newest_wins"}, destination=job.destination
        )
    services.job_options_check(options={"conflicts": "keep_both"}, destination=job.destination)
