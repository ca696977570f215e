"""One contract every connector passes against its real server (rclone fstests, fsspec
tests/abstract). Tests are kind-agnostic: they branch only on what a connector declares
in `capabilities` (hashes, mtime precision, folders, ACLs, writes, the names it refuses).
Whatever a connector declares it cannot do raises Unsupported when asked. A destination
that verifies and discards (`capabilities.discards`, null://) is held to what it does:
every write is verified and reported, and nothing written is ever read back.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Iterable

import google_crc32c
import pytest

from migrator.sanitize import hard_limits_from
from migrator.storage import (
    ConnectFailed,
    Connector,
    Entry,
    InvalidPath,
    NotFound,
    ScanError,
    Unsupported,
    Written,
    path_key,
)

MTIME_NS = 1_600_000_000_123_456_789  # 2020-09-13, with every nanosecond digit set
MIB = 1 << 20


class StreamBroke(Exception):
    """What a failing source stream raises; a write must let it through unchanged."""


class SourceStream(io.RawIOBase):
    """`data` in short, uneven reads (as network sources give them), optionally failing
    once `fail_at` bytes were handed out, or calling `during` once past `during_at`."""

    def __init__(self, data: bytes, fail_at=None, during=None, during_at=0) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._fail_at = fail_at
        self._during = during
        self._during_at = during_at

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._fail_at is not None and self._pos >= self._fail_at:
            raise StreamBroke("source connection dropped")
        if self._during is not None and self._pos >= self._during_at:
            during, self._during = self._during, None
            during()
        count = min(len(buffer), 100_003, len(self._data) - self._pos)
        buffer[:count] = self._data[self._pos : self._pos + count]
        self._pos += count
        return count


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def put(connector: Connector, path: str, data: bytes, mtime_ns: int = MTIME_NS) -> Written:
    return connector.write(path, SourceStream(data), Entry(path, "file", len(data), mtime_ns))


def read_all(connector: Connector, path: str) -> bytes:
    stream = connector.open(path)
    try:
        chunks = []
        while chunk := stream.read(MIB):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        stream.close()


def listing(connector: Connector, prefix: str = "") -> list[Entry]:
    items = list(connector.scan(prefix))
    errors = [item for item in items if isinstance(item, ScanError)]
    assert not errors, errors
    return items


def expected_hashes(data: bytes) -> dict[str, str]:
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "crc32c": google_crc32c.Checksum(data).digest().hex(),
    }


def assert_hashes(connector: Connector, reported: Written | Entry, data: bytes) -> None:
    """Every hash the connector declares is reported, and is the hash of `data`."""
    truth = expected_hashes(data)
    for algo in connector.capabilities.hashes:
        assert reported.hash(algo) == truth[algo], algo


def assert_mtime(connector: Connector, entry: Entry, mtime_ns: int) -> None:
    assert abs(entry.mtime_ns - mtime_ns) < connector.capabilities.mtime_precision_ns


def kept(connector: Connector, expected: list) -> list:
    """What a scan shows of what was written: all of it, or nothing where it is discarded."""
    return [] if connector.capabilities.discards else expected


def assert_stored(connector: Connector, path: str, data: bytes, mtime_ns: int = MTIME_NS):
    """What a user sees: stat, the bytes, and hashes as the connector reports them."""
    if connector.capabilities.discards:  # verified when written, then nothing to read back
        for action in (connector.stat, connector.open):
            with pytest.raises(NotFound):
                action(path)
        assert listing(connector) == []
        return
    entry = connector.stat(path)
    assert entry.path == path
    assert entry.kind == "file"
    assert entry.size == len(data)
    assert_mtime(connector, entry, mtime_ns)
    assert_hashes(connector, entry, data)
    assert read_all(connector, path) == data


def implied_folders(paths: Iterable[str]) -> set[str]:
    return {p.rsplit("/", i)[0] for p in paths for i in range(1, p.count("/") + 1)}


def assert_scan_order(items: list[Entry]) -> None:
    keys = [path_key(item.path) for item in items]
    assert all(a < b for a, b in zip(keys, keys[1:], strict=False)), [i.path for i in items]


# --- write, stat, open ------------------------------------------------------------------


def test_fresh_root_scans_empty(connector):
    assert listing(connector) == []


@pytest.mark.parametrize("size", [1, 5_000, 3 * MIB + 7])
def test_write_round_trips_bytes_size_mtime_and_hashes(connector, size):
    data = payload(size, seed=size)
    written = put(connector, "file.bin", data)

    assert written.size == size
    assert_hashes(connector, written, data)
    assert_stored(connector, "file.bin", data)


@pytest.mark.parametrize("mtime_ns", [946_684_800_000_000_000, 1_700_000_000_999_999_999])
def test_mtime_round_trips(connector, mtime_ns):
    put(connector, "dated.txt", b"when", mtime_ns=mtime_ns)
    if connector.capabilities.discards:
        assert_stored(connector, "dated.txt", b"when", mtime_ns)
        return
    assert_mtime(connector, connector.stat("dated.txt"), mtime_ns)
    (scanned,) = listing(connector)
    assert_mtime(connector, scanned, mtime_ns)


def test_empty_file(connector):
    written = put(connector, "empty", b"")
    assert written.size == 0
    assert_hashes(connector, written, b"")
    assert_stored(connector, "empty", b"")
    assert [(e.path, e.size) for e in listing(connector)] == kept(connector, [("empty", 0)])


def test_large_file_streams_through(connector):
    data = payload(20 * MIB + 12_345, seed=20)
    written = put(connector, "big/large.bin", data)
    assert written.size == len(data)
    assert_hashes(connector, written, data)
    assert_stored(connector, "big/large.bin", data)


def test_overwrite_replaces_content(connector):
    put(connector, "doc.txt", b"first version, rather longer than the second")
    put(connector, "doc.txt", b"second", mtime_ns=MTIME_NS + 10**9)
    assert_stored(connector, "doc.txt", b"second", mtime_ns=MTIME_NS + 10**9)
    assert [e.path for e in listing(connector)] == kept(connector, ["doc.txt"])


# --- atomic writes ----------------------------------------------------------------------

# A failure before the first buffered chunk, and one in the middle of a multi-chunk upload.
FAIL_POINTS = [pytest.param(1_000, id="small"), pytest.param(12 * MIB, id="large")]


@pytest.mark.parametrize("fail_at", FAIL_POINTS)
def test_failed_write_leaves_nothing(connector, fail_at):
    data = payload(fail_at + MIB)
    entry = Entry("new.bin", "file", len(data), MTIME_NS)
    with pytest.raises(StreamBroke):
        connector.write("new.bin", SourceStream(data, fail_at=fail_at), entry)

    assert listing(connector) == []  # neither the object nor a temp file
    with pytest.raises(NotFound):
        connector.stat("new.bin")


@pytest.mark.parametrize("fail_at", FAIL_POINTS)
def test_failed_overwrite_keeps_the_old_file(connector, fail_at):
    put(connector, "keep.txt", b"the good old content")
    data = payload(fail_at + MIB)
    entry = Entry("keep.txt", "file", len(data), MTIME_NS + 5)
    with pytest.raises(StreamBroke):
        connector.write("keep.txt", SourceStream(data, fail_at=fail_at), entry)

    assert_stored(connector, "keep.txt", b"the good old content")
    assert [e.path for e in listing(connector)] == kept(connector, ["keep.txt"])


def test_write_in_progress_is_invisible(connector):
    put(connector, "busy.bin", b"old")
    seen: dict[str, object] = {}

    def look() -> None:  # runs when the write has consumed 10 MiB of its source
        seen["scan"] = [(e.path, e.size) for e in listing(connector)]
        try:
            seen["stat"] = connector.stat("busy.bin").size
        except NotFound:
            seen["stat"] = None

    data = payload(12 * MIB)
    entry = Entry("busy.bin", "file", len(data), MTIME_NS)
    connector.write("busy.bin", SourceStream(data, during=look, during_at=10 * MIB), entry)

    if connector.capabilities.discards:
        assert seen == {"scan": [], "stat": None}
    else:
        assert seen == {"scan": [("busy.bin", 3)], "stat": 3}
    assert_stored(connector, "busy.bin", data)


# --- scan -------------------------------------------------------------------------------

TREE = [
    "B.txt",
    "a.txt",
    "a b.txt",
    "a-b.txt",
    "a/b.txt",
    "a/c/d.txt",
    "a/c/e.txt",
    "b/e.txt",
    "é.txt",
]


def test_scan_yields_every_entry_depth_first_in_path_order(connector):
    for index, path in enumerate(TREE):
        put(connector, path, path.encode() * (index + 1))

    items = listing(connector)

    assert_scan_order(items)
    expected = kept(connector, sorted(set(TREE) | implied_folders(TREE), key=path_key))
    assert [item.path for item in items] == expected
    assert {item.path for item in items if item.kind == "dir"} == implied_folders(expected)
    for item in items:
        if item.kind == "file":
            data = item.path.encode() * (TREE.index(item.path) + 1)
            assert item.size == len(data)
            assert_mtime(connector, item, MTIME_NS)
            assert_hashes(connector, item, data)


def test_scan_of_a_prefix(connector):
    for path in TREE:
        put(connector, path, b"x")

    items = listing(connector, "a")

    assert [item.path for item in items] == kept(
        connector, ["a/b.txt", "a/c", "a/c/d.txt", "a/c/e.txt"]
    )
    assert [item.path for item in listing(connector, "a/c")] == kept(
        connector, ["a/c/d.txt", "a/c/e.txt"]
    )


def test_mkdir(connector):
    if connector.capabilities.directories:
        assert connector.mkdir("made/inner") is True
        assert connector.mkdir("made/inner") is False
        assert [(e.path, e.kind) for e in listing(connector)] == [
            ("made", "dir"),
            ("made/inner", "dir"),
        ]
    else:  # folders are implied by names: nothing to create, nothing to see
        with pytest.raises(Unsupported):
            connector.mkdir("made/inner")
        assert listing(connector) == []
    put(connector, "made/inner/f.txt", b"f")
    assert_stored(connector, "made/inner/f.txt", b"f")


# --- missing things ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["nope.txt", "no/such/folder/file.txt"])
def test_missing_path_raises_not_found(connector, path):
    put(connector, "present.txt", b"here")
    for action in (connector.stat, connector.open, connector.delete):
        with pytest.raises(NotFound) as caught:
            action(path)
        assert caught.value.path == path


def test_delete_then_stat_raises_not_found(connector):
    put(connector, "gone.txt", b"bye")
    put(connector, "stays.txt", b"hi")

    if connector.capabilities.discards:  # it was never kept
        with pytest.raises(NotFound):
            connector.delete("gone.txt")
    else:
        connector.delete("gone.txt")

    with pytest.raises(NotFound):
        connector.stat("gone.txt")
    with pytest.raises(NotFound):
        connector.open("gone.txt")
    assert [e.path for e in listing(connector)] == kept(connector, ["stays.txt"])
    assert_stored(connector, "stays.txt", b"hi")


# --- move -------------------------------------------------------------------------------


def test_move_a_file_and_a_folder_with_its_contents(connector):
    assert connector.capabilities.rename  # kinds that declare none are not collected (conftest)
    put(connector, "a/one.txt", b"one")
    put(connector, "a/sub/two.txt", b"two")
    put(connector, "target.txt", b"old")

    connector.move("a/one.txt", "target.txt")  # replaces the file there
    connector.move("a", "deep/new/place")  # missing parents are made

    files = [e.path for e in listing(connector) if e.kind == "file"]
    assert files == ["deep/new/place/sub/two.txt", "target.txt"]
    assert_stored(connector, "target.txt", b"one")  # bytes and mtime moved with it
    assert_stored(connector, "deep/new/place/sub/two.txt", b"two")
    for gone in ("a/one.txt", "a/sub/two.txt"):
        with pytest.raises(NotFound):
            connector.stat(gone)
    with pytest.raises(NotFound) as caught:
        connector.move("nope.txt", "elsewhere.txt")
    assert caught.value.path == "nope.txt"
    for src, dst in (("target.txt", "../escape.txt"), ("target.txt", "")):
        with pytest.raises(InvalidPath):
            connector.move(src, dst)
    assert_stored(connector, "target.txt", b"one")


def test_move_is_unsupported_where_not_declared(populated):
    file = next(item.path for item in listing(populated) if item.kind == "file")
    if populated.capabilities.rename:
        populated.move(file, f"moved/{file}")
        assert populated.stat(f"moved/{file}").kind == "file"
        return
    with pytest.raises(Unsupported):
        populated.move(file, "moved.txt")
    assert populated.stat(file).kind == "file"


# --- names ------------------------------------------------------------------------------

NAMES = [
    "with space.txt",
    "é accentué.txt",
    "日本/語のファイル.txt",
    "#hash.txt",
    "question?.txt",
    "100%.txt",
    "50%20off.txt",
    "quote's.txt",
    'double"quote.txt',
    "-leading-dash",
    "=equals",
    "+plus&amp;;semi,comma.txt",
    "[brackets]{braces}.txt",
    "star*.txt",
    "colon:name.txt",
    "trailing space ",
    "emoji 🎉.txt",
]


@pytest.mark.parametrize("name", NAMES)
def test_names_round_trip_or_are_refused_as_invalid(connector, name):
    if hard_limits_from(connector.scheme, connector.capabilities).is_valid_path(name):
        put(connector, name, name.encode())
        assert_stored(connector, name, name.encode())
        assert [e.path for e in listing(connector) if e.kind == "file"] == kept(connector, [name])
    else:  # a name the destination cannot hold is refused, with a typed error
        with pytest.raises(InvalidPath):
            put(connector, name, name.encode())
        assert listing(connector) == []


@pytest.mark.parametrize(
    "path",
    ["", "..", "../escape.txt", "a/../../escape.txt", "a/./b.txt", "a//b.txt", "/abs.txt"],
)
def test_unsafe_paths_are_refused(connector, path):
    with pytest.raises(InvalidPath):
        put(connector, path, b"must not land anywhere")
    if path:
        # an object store reads a listed name as it is (nothing of that name is there);
        # a file system refuses a path that could climb out of its root
        expected = NotFound if connector.capabilities.literal_names else InvalidPath
        with pytest.raises(expected):
            connector.stat(path)
    assert listing(connector) == []


# --- every connector, read-only ones too ------------------------------------------------


@pytest.fixture
def populated(any_connector: Connector) -> Connector:
    """A connector with files in folders: TREE written where it can be, else its own."""
    assert not any_connector.capabilities.discards  # those are not collected (conftest)
    if any_connector.capabilities.writable:
        for index, path in enumerate(TREE):
            put(any_connector, path, payload(index * 1_000, seed=index))
    return any_connector


def test_scan_is_depth_first_with_each_folder_before_its_contents(populated):
    items = listing(populated)

    assert_scan_order(items)
    files = [item.path for item in items if item.kind == "file"]
    assert files
    assert {item.path for item in items if item.kind == "dir"} == implied_folders(files)
    for item in items:
        assert item.kind in ("file", "dir")
        parent = item.path.rpartition("/")[0]
        if parent:
            assert items.index(next(i for i in items if i.path == parent)) < items.index(item)


def test_stat_and_open_agree_with_the_scan(populated):
    for item in listing(populated):
        if item.kind != "file":
            continue
        entry = populated.stat(item.path)
        assert (entry.path, entry.kind, entry.size) == (item.path, "file", item.size)
        assert_mtime(populated, entry, item.mtime_ns)
        data = read_all(populated, item.path)
        assert len(data) == item.size
        assert read_all(populated, item.path) == data


def test_scan_of_a_prefix_is_that_part_of_the_whole_scan(populated):
    whole = listing(populated)
    folder = next(item.path for item in whole if item.kind == "dir")

    part = listing(populated, folder)

    assert part == [item for item in whole if item.path.startswith(folder + "/")]
    assert part


def test_missing_and_unsafe_paths_on_every_connector(populated):
    for path in ("nope.txt", "no/such/folder/file.txt"):
        for action in (populated.stat, populated.open):
            with pytest.raises(NotFound) as caught:
                action(path)
            assert caught.value.path == path
    # a file system refuses paths that could climb out of its root; an object store
    # reads such a name as it is, and nothing of that name is there
    expected = NotFound if populated.capabilities.literal_names else InvalidPath
    for path in ("..", "../escape.txt", "a/../../escape.txt", "a//b.txt", "/abs.txt"):
        with pytest.raises(expected):
            populated.stat(path)


def test_what_a_connector_declares_it_cannot_do_raises_unsupported(populated):
    capabilities = populated.capabilities
    file = next(item.path for item in listing(populated) if item.kind == "file")
    entry = populated.stat(file)
    refused = []
    if not capabilities.acl:
        refused += [lambda: populated.read_acl(file), lambda: populated.write_acl(file, b"")]
    else:
        assert populated.read_acl(file) is not None
    if not capabilities.watch:
        refused.append(lambda: populated.watch(""))
    if not capabilities.directories:
        refused.append(lambda: populated.mkdir("new-folder"))
    if not capabilities.writable:
        refused += [
            lambda: populated.write("new.txt", io.BytesIO(b"x"), Entry("new.txt", "file", 1)),
            lambda: populated.write(file, io.BytesIO(b"x"), entry),
            lambda: populated.mkdir("new-folder"),
            lambda: populated.delete(file),
        ]
    for call in refused:
        with pytest.raises(Unsupported):
            call()
    assert populated.stat(file) == entry
    assert "new.txt" not in {item.path for item in listing(populated)}


def test_hard_limits_are_the_declared_ones(any_connector):
    capabilities = any_connector.capabilities
    limits = hard_limits_from(any_connector.scheme, capabilities)
    for limit, units in (
        (capabilities.max_name_bytes, "bytes"),
        (capabilities.max_name_units, "units"),
    ):
        if limit is None:
            continue
        char = "é"  # 2 UTF-8 bytes, 1 UTF-16 unit
        longest = char * (limit // 2 if units == "bytes" else limit)
        assert limits.is_valid(longest)
        assert not limits.is_valid(longest + char)
    for char in capabilities.forbidden_chars:
        assert not limits.is_valid(f"a{char}b")
    assert limits.case_insensitive == capabilities.case_insensitive


# --- check ------------------------------------------------------------------------------


def test_check_passes_on_a_usable_root(connector):
    connector.check()
    put(connector, "x.txt", b"x")
    connector.check()


def test_check_fails_in_words_when_the_root_is_missing(missing_connector):
    assert not missing_connector.capabilities.discards  # no root: not collected (conftest)
    with pytest.raises(ConnectFailed) as caught:
        missing_connector.check()
    assert caught.value.message
