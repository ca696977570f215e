"""The coalescer's rules, and the local (inotify) watch reporting what a user does."""

from __future__ import annotations

import os
import time
from pathlib import Path

from migrator.engine.watch import Change, Coalescer
from migrator.storage.local import LocalConnector


def test_a_burst_on_one_path_is_one_change_after_the_window():
    c = Coalescer(window=0.1, max_wait=1.0)
    c.add(Change("a.txt", "created"), now=0.0)
    c.add(Change("a.txt", "modified"), now=0.05)
    c.add(Change("a.txt", "modified"), now=0.08)
    assert c.due(now=0.15) == []  # still busy
    assert c.due(now=0.2) == [Change("a.txt", "created")]
    assert len(c) == 0


def test_created_then_deleted_cancels_and_deleted_then_created_is_modified():
    c = Coalescer(window=0.1)
    c.add(Change("tmp.txt", "created"), now=0.0)
    c.add(Change("tmp.txt", "deleted"), now=0.01)
    c.add(Change("b.txt", "deleted"), now=0.0)
    c.add(Change("b.txt", "created"), now=0.01)
    assert c.drain() == [Change("b.txt", "modified")]


def test_a_move_keeps_from_and_to_and_chains():
    c = Coalescer(window=0.1)
    c.add(Change("a", "moved", "b"), now=0.0)
    c.add(Change("b", "moved", "c"), now=0.01)
    c.add(Change("x", "modified"), now=0.02)
    c.add(Change("x", "moved", "y"), now=0.03)  # written, then renamed: new content at y
    assert c.drain() == [Change("a", "moved", "c"), Change("x", "deleted"), Change("y", "created")]


def test_a_path_written_without_pause_is_still_applied_after_max_wait():
    c = Coalescer(window=0.1, max_wait=0.5)
    for i in range(10):
        c.add(Change("log.txt", "modified"), now=i * 0.06)
    assert c.due(now=0.55) == [Change("log.txt", "modified")]


def _collect(watch, want, timeout: float = 5.0) -> list:
    """Changes from the watch until `want(coalesced)` holds, coalesced as the runner does."""
    c = Coalescer(window=0.1)
    seen: list[Change] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = watch.get(timeout=0.05)
        if isinstance(item, Change):
            c.add(item)
        seen.extend(c.due())
        if want(seen):
            return seen
    raise AssertionError(f"watch reported {seen}")


def test_the_local_watch_sees_create_modify_delete_and_move(tmp_path: Path):
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "old.txt").write_text("old")
    (tmp_path / "gone.txt").write_text("gone")
    conn = LocalConnector(str(tmp_path))
    assert conn.capabilities.watch
    watch = conn.watch("")
    try:
        (tmp_path / "deep" / "er" / "new.txt").write_text("new")
        seen = _collect(watch, lambda s: Change("deep/er/new.txt", "created") in s)
        with open(tmp_path / "old.txt", "a") as f:
            f.write("more")
        seen = _collect(watch, lambda s: Change("old.txt", "modified") in s)
        os.unlink(tmp_path / "gone.txt")
        seen = _collect(watch, lambda s: Change("gone.txt", "deleted") in s)
        os.rename(tmp_path / "old.txt", tmp_path / "deep" / "moved.txt")
        seen = _collect(watch, lambda s: Change("old.txt", "moved", "deep/moved.txt") in s)
        assert all(c.kind == "moved" for c in seen), seen
    finally:
        watch.close()
    assert watch.get(timeout=0.1) is None  # closed: ends at once


def test_the_gcs_watch_lists_the_bucket_and_reports_what_changed(gcs_server, gcs_bucket):
    from migrator.storage.gcs import from_url

    bucket = gcs_server.client().bucket(gcs_bucket)
    bucket.blob("root/old.txt").upload_from_string(b"old")
    bucket.blob("root/gone.txt").upload_from_string(b"gone")
    bucket.blob("beside/other.txt").upload_from_string(b"outside the watched prefix")
    conn = from_url(f"gs://{gcs_bucket}/root")
    assert conn.capabilities.watch
    watch = conn.watch("", interval=0.2)
    try:
        assert watch.get(timeout=0.5) is None  # what was there before is no change
        bucket.blob("root/deep/er/new.txt").upload_from_string(b"new")
        bucket.blob("root/old.txt").upload_from_string(b"old, written again")
        bucket.blob("root/gone.txt").delete()
        bucket.blob("beside/more.txt").upload_from_string(b"outside again")
        want = {
            Change("deep/er/new.txt", "created"),
            Change("old.txt", "modified"),
            Change("gone.txt", "deleted"),
        }
        seen = _collect(watch, lambda s: want <= set(s))
        assert set(seen) == want, seen  # nothing outside the prefix, nothing twice
        bucket.blob("root/deep/er/new.txt").delete()
        assert _collect(watch, lambda s: s) == [Change("deep/er/new.txt", "deleted")]
    finally:
        watch.close()
    assert watch.get(timeout=0.1) is None


def test_the_gcs_watch_reports_a_failed_listing_and_carries_on(gcs_server, gcs_bucket):
    from migrator.storage.base import WatchError
    from migrator.storage.gcs import from_url

    bucket = gcs_server.client().bucket(gcs_bucket)
    bucket.blob("a.txt").upload_from_string(b"a")
    watch = from_url(f"gs://{gcs_bucket}").watch("", interval=0.2)
    try:
        poller = watch.poller
        real = poller.client.list_blobs
        calls = {"n": 0}

        def failing_once(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 1:
                raise ConnectionError("connection reset by peer")
            return real(*args, **kwargs)

        poller.client.list_blobs = failing_once
        item = None
        deadline = time.monotonic() + 5
        while not isinstance(item, WatchError) and time.monotonic() < deadline:
            item = watch.get(timeout=0.1)
        assert isinstance(item, WatchError) and "listing the bucket failed" in item.message
        bucket.blob("b.txt").upload_from_string(b"b")
        assert Change("b.txt", "created") in _collect(watch, lambda s: s)
    finally:
        watch.close()
