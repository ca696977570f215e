"""The copy engine with in-memory fakes: retries, verify, policies (no server needed here;
the same paths run against real servers in tests/jobs and tests/migrator/storage). At
the end, what a file that moved while it was read leaves at each real destination."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from migrator.engine.copy import CopyOptions, CopyTask, Policy, State, copy_batch, copy_one
from migrator.engine.streams import RateLimiter
from migrator.storage import Capabilities, Connector, Entry, NotFound, Transient, Written


class MemoryStore(Connector):
    capabilities = Capabilities(hashes=frozenset({"md5"}), directories=False)

    def __init__(self, files=None, fail_writes=0, corrupt=False):
        self.files: dict[str, bytes] = dict(files or {})
        self.fail_writes = fail_writes
        self.corrupt = corrupt
        self.writes = 0

    def scan(self, prefix=""):
        for path in sorted(self.files):
            yield self.stat(path)

    def stat(self, path):
        if path not in self.files:
            raise NotFound(path)
        data = self.files[path]
        return Entry(path, "file", len(data), 0, (("md5", hashlib.md5(data).hexdigest()),))

    def open(self, path):
        if path not in self.files:
            raise NotFound(path)
        return io.BytesIO(self.files[path])

    def write(self, path, stream, entry):
        self.writes += 1
        if self.fail_writes:
            self.fail_writes -= 1
            stream.read()
            raise Transient(path, "503 service unavailable")
        data = stream.read()
        stored = data[:-1] + b"X" if self.corrupt and data else data
        self.files[path] = stored
        return Written(len(stored), (("md5", hashlib.md5(stored).hexdigest()),))

    def mkdir(self, path, entry=None):
        return False

    def delete(self, path):
        self.files.pop(path)


def task(path="a.txt", size=5):
    return CopyTask(item_id=1, source_path=path, dest_path=path, size=size)


def test_transient_destination_errors_are_retried_with_backoff_then_succeed():
    src, dst = MemoryStore({"a.txt": b"hello"}), MemoryStore(fail_writes=2)
    out = copy_one(task(), src, dst, CopyOptions(backoff=0.01))
    assert (out.state, out.attempts) == (State.COPIED, 3)
    assert dst.files["a.txt"] == b"hello"


def test_destination_down_fails_with_reason_after_the_retries():
    src, dst = MemoryStore({"a.txt": b"hello"}), MemoryStore(fail_writes=99)
    out = copy_one(task(), src, dst, CopyOptions(backoff=0.01, retry_attempts=3))
    assert (out.state, out.reason, out.attempts) == (State.FAILED, "destination_unavailable", 3)
    assert dst.writes == 3


def test_checksum_mismatch_is_caught_and_the_bad_object_removed():
    src, dst = MemoryStore({"a.txt": b"hello"}), MemoryStore(corrupt=True)
    out = copy_one(task(), src, dst, CopyOptions())
    assert (out.state, out.reason) == (State.FAILED, "checksum_mismatch")
    assert "a.txt" not in dst.files


def test_identical_is_unchanged_and_overwrite_rewrites():
    src, dst = MemoryStore({"a.txt": b"hello"}), MemoryStore({"a.txt": b"hello"})
    assert copy_one(task(), src, dst, CopyOptions()).state == State.UNCHANGED
    assert dst.writes == 0
    assert copy_one(task(), src, dst, CopyOptions(policy=Policy.OVERWRITE)).state == State.COPIED
    assert dst.writes == 1


def test_batch_stops_between_files_when_asked():
    src = MemoryStore({f"f{i}": b"x" for i in range(20)})
    dst = MemoryStore()
    calls = iter(range(1000))
    tasks = [CopyTask(i, f"f{i}", f"f{i}", size=1) for i in range(20)]
    opts = CopyOptions(threads=1, should_stop=lambda: next(calls) >= 5)
    out = copy_batch(tasks, lambda: src, lambda: dst, opts)
    assert len(out) == 5 and len(dst.files) == 5


def test_rate_limiter_paces_bytes():
    import time

    limiter = RateLimiter(1_000_000)
    start = time.monotonic()
    for _ in range(4):
        limiter.consume(100_000)
    assert time.monotonic() - start >= 0.35


def test_a_new_folder_is_listed_once_instead_of_a_stat_per_file(tmp_path):
    """Local to local, on disk: into a new folder no file is stat'ed at the destination
    (one listing says none is there); on a rerun the listing names them all, each is
    stat'ed and found unchanged; a file changed at the destination meanwhile is copied."""
    from migrator.storage.local import LocalConnector

    class Counting(LocalConnector):
        stats = 0

        def stat(self, path):
            Counting.stats += 1
            return super().stat(path)

    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    tasks = []
    for i in range(50):
        (src / "docs" / f"f{i:02d}.txt").write_bytes(b"x" * i)
        st = (src / "docs" / f"f{i:02d}.txt").stat()
        tasks.append(CopyTask(i, f"docs/f{i:02d}.txt", f"docs/f{i:02d}.txt", "file", st.st_size,
                              st.st_mtime_ns))  # fmt: skip

    def run():
        dst = str(tmp_path / "dst")
        return copy_batch(tasks, lambda: LocalConnector(str(src)), lambda: Counting(dst),
                          CopyOptions(threads=1))  # fmt: skip

    first = run()
    assert {o.state for o in first} == {State.COPIED} and len(first) == 50
    assert Counting.stats == 0
    assert (tmp_path / "dst" / "docs" / "f07.txt").read_bytes() == b"x" * 7
    (tmp_path / "dst" / "docs" / "f07.txt").write_bytes(b"changed at the destination")
    Counting.stats = 0
    again = {o.item_id: o.state for o in run()}
    assert Counting.stats == 50
    assert again[7] == State.COPIED and list(again.values()).count(State.UNCHANGED) == 49
    assert (tmp_path / "dst" / "docs" / "f07.txt").read_bytes() == b"x" * 7


def _appender(path, stop, every: float = 0.02):
    import threading
    import time

    def run():
        while not stop.is_set():
            with open(path, "ab") as f:
                f.write(b"more\n")
            time.sleep(every)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_file_growing_while_copied_is_retried_and_never_torn(tmp_path):
    """A log file appended to while it is read: the read that saw it move keeps nothing
    (the destination's temp file is dropped), the copy is tried again, and once the
    writer stops the destination holds the file as it is then, whole."""
    import threading

    from migrator.storage.local import LocalConnector

    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    path = src_dir / "app.log"
    path.write_bytes(b"x" * (1 << 20))
    stop = threading.Event()
    writer = _appender(path, stop)
    threading.Timer(0.6, stop.set).start()  # the writer stops during the retries
    src, dst = LocalConnector(str(src_dir)), LocalConnector(str(dst_dir))
    t = CopyTask(1, "app.log", "app.log", size=1 << 20)
    slow = RateLimiter(4 << 20)  # a quarter of a second to read it
    out = copy_one(t, src, dst, CopyOptions(backoff=0.3, retry_attempts=5), slow)
    writer.join()
    assert (out.state, out.reason) == (State.COPIED, "")
    assert out.attempts > 1  # the first read saw the file move
    assert (dst_dir / "app.log").read_bytes() == path.read_bytes()
    assert sorted(p.name for p in dst_dir.iterdir()) == ["app.log"]  # no temp file left


def test_a_file_that_never_stops_changing_fails_with_its_reason_and_leaves_nothing(tmp_path):
    import threading

    from migrator.storage.local import LocalConnector

    src_dir, dst_dir = tmp_path / "src", tmp_path / "dst"
    src_dir.mkdir()
    path = src_dir / "busy.db"
    path.write_bytes(b"y" * (512 << 10))
    stop = threading.Event()
    writer = _appender(path, stop)
    try:
        src, dst = LocalConnector(str(src_dir)), LocalConnector(str(dst_dir))
        t = CopyTask(1, "busy.db", "busy.db", size=512 << 10)
        slow = RateLimiter(4 << 20)
        out = copy_one(t, src, dst, CopyOptions(backoff=0.05, retry_attempts=3), slow)
    finally:
        stop.set()
        writer.join()
    assert (out.state, out.reason, out.attempts) == (State.FAILED, "changed_during_copy", 3)
    assert "while it was read" in out.message
    assert not dst_dir.exists() or list(dst_dir.iterdir()) == []


def _destination(kind: str, tmp_path, request):
    """(a writable connector of `kind` at an empty place, what is stored there: every
    name, temp files and unfinished objects included)."""
    if kind == "local":
        from migrator.storage.local import LocalConnector

        root = tmp_path / "dst"
        root.mkdir()
        return LocalConnector(str(root)), lambda: sorted(p.name for p in root.rglob("*"))
    if kind == "smb":
        from migrator.storage import connector_for

        dc = request.getfixturevalue("samba_dc")
        base = dc.make_folder("data")
        disk = dc.disk_path("data", base)
        conn = connector_for(dc.smb_url("data", base), dc.admin_password)
        return conn, lambda: sorted(p.name for p in disk.rglob("*"))
    bucket = request.getfixturevalue("gcs_bucket")
    client = request.getfixturevalue("gcs_server").client()
    conn = request.getfixturevalue("contract_gcs")
    return conn, lambda: sorted(b.name for b in client.list_blobs(bucket, prefix="root/"))


@pytest.mark.parametrize("kind", ["local", "smb", "gcs"])
@pytest.mark.parametrize("size", [1000, 8 << 20], ids=["small", "whole-chunks"])
def test_a_file_that_moved_by_its_last_byte_leaves_nothing_at_any_destination(
    kind, size, tmp_path, request
):
    """The source says the file moved only when its last byte was read, after the
    destination was handed every byte (8 MiB: whole chunks of SMB and GCS uploads, so
    nothing short says the end): no object, no temp file, no finished upload."""
    from migrator.storage.local import LocalConnector

    class MovedAtTheEnd(LocalConnector):
        def changed_while_read(self, stream):
            return "it was modified while it was read"

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.log").write_bytes(os.urandom(size))
    src = MovedAtTheEnd(str(tmp_path / "src"))
    dst, stored = _destination(kind, tmp_path, request)
    try:
        t = CopyTask(1, "app.log", "app.log", size=size)
        out = copy_one(t, src, dst, CopyOptions(backoff=0.01, retry_attempts=2))
        assert (out.state, out.reason, out.attempts) == (State.FAILED, "changed_during_copy", 2)
        assert stored() == []
        with pytest.raises(NotFound):
            dst.stat("app.log")
    finally:
        dst.close()
