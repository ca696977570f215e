"""GCS beyond the contract: refused corrupt uploads, mtime metadata other tools read and
write, listings of buckets other tools filled, errors, URLs."""

from __future__ import annotations

import base64
import hashlib
import io
import random
import time
from datetime import UTC, datetime

import pytest
import requests
from google.api_core import exceptions as gexc

from migrator.storage import (
    AccessDenied,
    ConnectFailed,
    Entry,
    InvalidPath,
    NotFound,
    ScanError,
    StorageError,
    Transient,
    connector_for,
    path_key,
)
from migrator.storage.gcs import (
    CHUNK,
    SMALL_FILE_MAX,
    ChecksumMismatch,
    GCSConnector,
    _wrap,
    from_url,
    in_path_order,
    mtime_metadata,
    parse_rfc3339_ns,
)
from tests.servers.util import free_port

MTIME_NS = 1_600_000_000_123_456_789


@pytest.fixture
def bucket(gcs_server, gcs_bucket):
    """The raw bucket, to see and plant objects the way other tools would."""
    return gcs_server.client().bucket(gcs_bucket)


@pytest.fixture
def gcs(gcs_bucket):
    connector = from_url(f"gs://{gcs_bucket}/root")
    yield connector
    connector.close()


def write(connector, path, data, **entry_fields):
    fields = {"size": len(data), "mtime_ns": MTIME_NS} | entry_fields
    return connector.write(path, io.BytesIO(data), Entry(path, "file", **fields))


def object_names(bucket):
    return sorted(blob.name for blob in bucket.client.list_blobs(bucket))


# --- corrupted uploads ------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, SMALL_FILE_MAX + CHUNK // 2], ids=["small", "resumable"])
def test_upload_whose_bytes_do_not_match_the_source_md5_is_refused(gcs, bucket, size):
    data = random.Random(size).randbytes(size)
    wrong = hashlib.md5(data + b"corrupted in transit").hexdigest()

    with pytest.raises(ChecksumMismatch) as caught:
        write(gcs, "file.bin", data, hashes=(("md5", wrong),))

    assert caught.value.reason == "checksum_mismatch"
    assert object_names(bucket) == []


def test_refused_resumable_overwrite_keeps_the_old_object(gcs):
    write(gcs, "file.bin", b"good")
    data = random.Random(1).randbytes(SMALL_FILE_MAX + 1)

    with pytest.raises(ChecksumMismatch):
        write(gcs, "file.bin", data, hashes=(("md5", "0" * 32),))

    assert gcs.open("file.bin").read() == b"good"


def test_matching_source_hashes_are_accepted(gcs):
    data = b"exactly these bytes"
    truth = (("md5", hashlib.md5(data).hexdigest()),)
    assert write(gcs, "ok.txt", data, hashes=truth).hash("md5") == truth[0][1]


def test_the_servers_md5_refusal_maps_to_checksum_mismatch(bucket):
    blob = bucket.blob("raw.bin")
    blob.md5_hash = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
    with pytest.raises(gexc.BadRequest) as caught:
        blob.upload_from_string(b"these bytes", retry=None)

    error = _wrap(caught.value, "raw.bin")

    assert isinstance(error, ChecksumMismatch)
    assert error.path == "raw.bin"


# --- mtime metadata ---------------------------------------------------------------------


def test_mtime_is_stored_under_gsutil_and_rclone_keys(gcs, bucket):
    write(gcs, "dated.txt", b"x")

    metadata = bucket.get_blob("root/dated.txt").metadata

    assert metadata["goog-reserved-file-mtime"] == "1600000000"
    assert metadata["mtime"] == "2020-09-13T12:26:40.123456789Z"


@pytest.mark.parametrize(
    ("metadata", "expected_ns"),
    [
        ({"goog-reserved-file-mtime": "1600000000"}, 1_600_000_000 * 10**9),
        ({"mtime": "2020-09-13T14:26:40.5+02:00"}, 1_600_000_000_500_000_000),
        ({"mtime": "2020-09-13T12:26:40.000000007Z"}, 1_600_000_000_000_000_007),
        (  # rclone's key left stale by a tool that only updates gsutil's
            {"mtime": "2001-01-01T00:00:00.1Z", "goog-reserved-file-mtime": "1600000000"},
            1_600_000_000 * 10**9,
        ),
    ],
)
def test_mtime_written_by_other_tools_is_read(gcs, bucket, metadata, expected_ns):
    blob = bucket.blob("root/other.txt")
    blob.metadata = metadata
    blob.upload_from_string(b"from gsutil or rclone")

    (scanned,) = gcs.scan()

    assert scanned.mtime_ns == expected_ns
    assert gcs.stat("other.txt").mtime_ns == expected_ns


@pytest.mark.parametrize("metadata", [None, {"mtime": "not a time"}])
def test_without_usable_mtime_metadata_the_upload_time_is_used(gcs, bucket, metadata):
    blob = bucket.blob("root/plain.txt")
    blob.metadata = metadata
    blob.upload_from_string(b"no usable metadata")
    updated = bucket.get_blob("root/plain.txt").updated

    mtime_ns = gcs.stat("plain.txt").mtime_ns

    assert mtime_ns == int(updated.timestamp()) * 10**9 + updated.microsecond * 1000
    assert abs(mtime_ns / 10**9 - datetime.now(tz=UTC).timestamp()) < 60


def test_rfc3339_keeps_nanoseconds_and_offsets():
    assert parse_rfc3339_ns("1970-01-01T00:00:00.000000001Z") == 1
    assert parse_rfc3339_ns("1970-01-01T01:00:00+01:00") == 0
    assert parse_rfc3339_ns("1969-12-31T23:59:59.5Z") == -500_000_000
    for ns in (0, 1, MTIME_NS, -1_500_000_000, 4_102_444_800_999_999_999):
        assert parse_rfc3339_ns(mtime_metadata(ns)["mtime"]) == ns


# --- listings of buckets other tools filled ---------------------------------------------


def test_folder_placeholders_are_folders_not_files(gcs, bucket):
    for name in ("root/", "root/empty/", "root/docs/", "root/docs/a.txt"):
        bucket.blob(name).upload_from_string(b"")

    items = list(gcs.scan())

    assert [(e.path, e.kind) for e in items] == [
        ("docs", "dir"),
        ("docs/a.txt", "file"),
        ("empty", "dir"),
    ]
    assert gcs.stat("docs").kind == "dir"


def test_folder_names_list_a_folder_once(gcs, bucket):
    for name in ("root/docs/a.txt", "root/docs/b.txt", "root/docs/sub/c.txt", "root/x.txt"):
        bucket.blob(name).upload_from_string(b"1")
    assert gcs.folder_names("docs", 100) == {"a.txt", "b.txt", "sub"}
    assert gcs.folder_names("", 100) == {"docs", "x.txt"}
    assert gcs.folder_names("nothing/here", 100) == set()  # nothing there yet: no stat needed
    assert gcs.folder_names("docs", 2) is None  # too many: the copy stats each file instead


def test_a_file_and_a_folder_of_one_name_are_both_listed(gcs, bucket):
    for name in ("root/x", "root/x/inner", "root/x-y", "root/x.z"):
        bucket.blob(name).upload_from_string(name.encode())

    items = list(gcs.scan())

    assert [(e.path, e.kind) for e in items] == [
        ("x", "file"),
        ("x", "dir"),
        ("x/inner", "file"),
        ("x-y", "file"),
        ("x.z", "file"),
    ]


def test_empty_and_dot_parts_are_listed_as_names_and_every_object_is_reached(gcs, bucket):
    # (the emulator itself cannot store a '..' component; real GCS can)
    for name in ("root/a//b", "root/a///b2", "root/b/./c", "root/c/ok.txt"):
        bucket.blob(name).upload_from_string(name.encode(), retry=None)

    items = list(gcs.scan())

    assert not [i for i in items if isinstance(i, ScanError)]
    assert [(i.path, i.kind) for i in items] == [
        ("a", "dir"), ("a/", "dir"), ("a//", "dir"), ("a///b2", "file"), ("a//b", "file"),
        ("b", "dir"), ("b/.", "dir"), ("b/./c", "file"), ("c", "dir"), ("c/ok.txt", "file"),
    ]  # fmt: skip
    with gcs.open("a//b") as stream:  # read back under the listed name, as it is
        assert stream.read() == b"root/a//b"
    assert gcs.stat("b/./c").size == len(b"root/b/./c")
    with pytest.raises(InvalidPath):  # but never written under such a name
        gcs.write("x//y", io.BytesIO(b"no"), Entry("x//y", "file", 2, 0))


def test_objects_named_with_a_leading_slash_are_each_reported(bucket):
    for name in ("/abs.txt", "//deeper/x.txt", "plain.txt"):
        bucket.blob(name).upload_from_string(b"x", retry=None)
    conn = connector_for(f"gs://{bucket.name}")
    try:
        items = list(conn.scan())
    finally:
        conn.close()
    failed = sorted(i.path for i in items if isinstance(i, ScanError))
    assert failed == ["//deeper/x.txt", "/abs.txt"]
    assert "plain.txt" in [i.path for i in items if isinstance(i, Entry)]


def test_delete_of_a_folder_with_objects_is_refused(gcs):
    write(gcs, "full/a.txt", b"a")
    with pytest.raises(StorageError) as caught:
        gcs.delete("full")
    assert not isinstance(caught.value, NotFound)
    assert gcs.stat("full/a.txt").size == 1


def test_in_path_order_matches_path_key_for_any_listing():
    rng = random.Random(7)
    for _ in range(500):
        names = {"".join(rng.choice("ab-. /") for _ in range(rng.randint(1, 4))) for _ in range(8)}
        entries = {(n.split("/")[0], "/" in n) for n in names if n.split("/")[0]}
        raws = sorted(name + ("/" if folder else "") for name, folder in entries)
        ordered = [(name, folder) for name, folder, _ in in_path_order((r, None) for r in raws)]
        assert ordered == sorted(entries, key=lambda e: (path_key(e[0]), e[1]))


# --- errors, reachability, URLs ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (gexc.NotFound("gone"), NotFound),
        (gexc.Forbidden("no"), AccessDenied),
        (gexc.Unauthorized("who"), AccessDenied),
        (gexc.TooManyRequests("slow down"), Transient),
        (gexc.ServiceUnavailable("later"), Transient),
        (gexc.InternalServerError("oops"), Transient),
        (requests.ConnectionError("reset by peer"), Transient),
        (requests.Timeout("read timed out"), Transient),
    ],
)
def test_errors_map_to_typed_storage_errors(raised, expected):
    error = _wrap(raised, "a/b.txt")
    assert type(error) is expected
    assert error.path == "a/b.txt"


def test_check_on_an_unreachable_host_fails_fast_in_words(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    connector = from_url("gs://some-bucket/prefix")
    started = time.monotonic()

    with pytest.raises(ConnectFailed) as caught:
        connector.check()

    assert time.monotonic() - started < 5
    assert "cannot reach" in str(caught.value)


def test_check_on_a_missing_bucket_names_it(gcs_server):
    with pytest.raises(ConnectFailed) as caught:
        from_url("gs://no-such-bucket-here").check()
    assert "bucket no-such-bucket-here does not exist" in str(caught.value)


def test_url_names_bucket_and_literal_prefix(gcs_server, gcs_bucket):
    connector = connector_for(f"gs://{gcs_bucket}/a b/#1?x/")
    assert isinstance(connector, GCSConnector)
    assert (connector.bucket_name, connector.root) == (gcs_bucket, "a b/#1?x/")
    write(connector, "f.txt", b"in the prefix")
    assert connector.open("f.txt").read() == b"in the prefix"
    assert [b.name for b in connector.client.list_blobs(gcs_bucket)] == ["a b/#1?x/f.txt"]


@pytest.mark.parametrize("url", ["gs://", "gs://UPPER/x", "gs://b/../x", "s3://bucket/x"])
def test_malformed_urls_are_refused(gcs_server, url):
    with pytest.raises(ValueError):
        from_url(url)
