"""Bad input for the S3 connector, against moto's server (which checks credentials):
wrong credentials, a missing bucket or endpoint, objects that vanish mid-scan and
mid-copy, throttling, multipart uploads that fail, objects other tools wrote.

Throttling cannot be asked of moto: a botocore handler answers chosen requests with
503 SlowDown before they are sent, on every client the test's connectors make.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable
from hashlib import md5
from pathlib import Path

import pytest
from botocore.awsrequest import AWSResponse

from migrator.engine.copy import CopyOptions
from migrator.engine.memory import run_pass
from migrator.storage import ConnectFailed, Entry, ScanError, connector_for, s3
from tests.servers.s3 import S3Server
from tests.servers.util import free_port

from .sinks import AttemptsSink, assert_accounted, by_path

MIB = 1 << 20
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
FILES = {"a.txt": b"alpha" * 100, "b.txt": b"bravo" * 200, "sub/c.txt": b"charlie"}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: object):
        yield self._data


class Hooks:
    """botocore handlers registered on every S3 client made while the test runs."""

    def __init__(self) -> None:
        self.handlers: list[tuple[str, Callable]] = []

    def on(self, event: str, handler: Callable) -> None:
        self.handlers.append((event, handler))

    def slow_down(self, operation: str, key_suffix: str, times: int) -> list[str]:
        """Answer the first `times` requests of `operation` (for a key ending with
        `key_suffix`, "" for any) with 503 SlowDown; returns the list of what was refused."""
        refused: list[str] = []
        lock = threading.Lock()

        def handler(request, **_: object):
            path = request.url.split("?", 1)[0]
            with lock:
                if len(refused) >= times or not path.endswith(key_suffix):
                    return None
                refused.append(path)
            headers = {"Content-Type": "application/xml", "Retry-After": "0"}
            return AWSResponse(request.url, 503, headers, _Body(SLOW_DOWN))

        self.on(f"before-send.s3.{operation}", handler)
        return refused


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Hooks:
    made = Hooks()
    real = s3.make_client

    def make_client(options, secret=None):
        client = real(options, secret)
        for event, handler in made.handlers:
            client.meta.events.register(event, handler)
        return client

    monkeypatch.setattr(s3, "make_client", make_client)
    return made


@pytest.fixture
def filled(s3_server: S3Server, s3_bucket: str) -> str:
    """A bucket holding FILES under the prefix "data"; returns the source URL."""
    client = s3_server.client()
    for path, data in FILES.items():
        client.put_object(Bucket=s3_bucket, Key=f"data/{path}", Body=data)
    return s3_server.s3_url(s3_bucket, "data")


# --- check(): one clear error before any work ------------------------------------------


def test_wrong_credentials_fail_check_in_one_clear_error(s3_server: S3Server, filled: str):
    for secret, words in (
        (f"AKIAWRONGWRONGWRONG0:{s3_server.secret_key}", "wrong access key"),
        (f"{s3_server.access_key}:not-the-secret-key", "wrong secret key"),
    ):
        with connector_for(filled, secret) as conn, pytest.raises(ConnectFailed) as caught:
            conn.check()
        message = str(caught.value)
        assert words in message
        assert caught.value.path.startswith("s3://")
        assert "not-the-secret-key" not in message and s3_server.secret_key not in message

    with connector_for(filled, s3_server.secret) as conn:
        conn.check()  # the right key passes


def test_missing_bucket_endpoint_and_credentials_fail_check_in_words(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    missing = s3_server.s3_url("no-such-bucket-here", "x")
    with connector_for(missing, s3_server.secret) as conn, pytest.raises(ConnectFailed) as caught:
        conn.check()
    assert "bucket no-such-bucket-here does not exist" in str(caught.value)

    nowhere = f"s3://bucket/x?endpoint=http://127.0.0.1:{free_port()}"
    with connector_for(nowhere, s3_server.secret) as conn, pytest.raises(ConnectFailed) as caught:
        conn.check()
    assert "cannot reach http://127.0.0.1:" in str(caught.value)

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with connector_for(missing) as conn, pytest.raises(ConnectFailed) as caught:
        conn.check()
    assert "no S3 credentials" in str(caught.value)

    with pytest.raises(ConnectFailed, match="ACCESS_KEY_ID:SECRET_ACCESS_KEY"):
        connector_for(missing, "only-one-part")


@pytest.mark.parametrize(
    "url",
    [
        "s3://AB/prefix",  # not a bucket name
        "s3://key:secret@bucket/prefix",  # credentials never in the URL
        "s3://bucket/prefix?endpoint=ftp://host",
        "s3://bucket/prefix?colour=blue",
        "s3://bucket/prefix?mtime=yesterday",
    ],
)
def test_malformed_urls_are_refused(url: str):
    with pytest.raises(ValueError):
        connector_for(url, "k:s")


# --- vanished objects -------------------------------------------------------------------


def test_object_vanished_mid_copy_fails_as_vanished(
    s3_server: S3Server, s3_bucket: str, filled: str, hooks: Hooks, tmp_path: Path
):
    admin = s3_server.client()
    gone: list[str] = []

    def delete_first(params, **_: object) -> None:  # just before the copy reads it
        if params["Key"] == "data/b.txt" and not gone:
            admin.delete_object(Bucket=s3_bucket, Key="data/b.txt")
            gone.append(params["Key"])

    hooks.on("provide-client-params.s3.GetObject", delete_first)
    sink = run_pass(filled, tmp_path.as_uri(), source_secret=s3_server.secret)

    assert gone == ["data/b.txt"]
    assert by_path(sink) == {
        "a.txt": ("copied", ""),
        "b.txt": ("failed", "vanished"),
        "sub/c.txt": ("copied", ""),
    }
    assert_accounted(sink)
    assert (tmp_path / "a.txt").read_bytes() == FILES["a.txt"]
    assert not (tmp_path / "b.txt").exists()


def test_object_vanished_mid_scan_is_seen_then_vanished(
    s3_server: S3Server, s3_bucket: str, filled: str, hooks: Hooks, tmp_path: Path
):
    admin = s3_server.client()
    gone: list[str] = []

    def delete_first(params, **_: object) -> None:  # between the listing and the head
        if params["Key"] == "data/a.txt" and not gone:
            admin.delete_object(Bucket=s3_bucket, Key="data/a.txt")
            gone.append(params["Key"])

    hooks.on("provide-client-params.s3.HeadObject", delete_first)
    sink = run_pass(filled, tmp_path.as_uri(), source_secret=s3_server.secret)

    assert gone == ["data/a.txt"]
    assert by_path(sink) == {
        "a.txt": ("failed", "vanished"),
        "b.txt": ("copied", ""),
        "sub/c.txt": ("copied", ""),
    }
    assert_accounted(sink)
    assert sink.counts()["seen"] == 3


# --- throttling -------------------------------------------------------------------------


def test_throttled_reads_are_retried_with_backoff_and_counted(
    s3_server: S3Server, filled: str, hooks: Hooks, tmp_path: Path
):
    refused = hooks.slow_down("GetObject", "/data/b.txt", times=2)
    sink = AttemptsSink()
    options = CopyOptions(backoff=0.05, threads=1)
    started = time.monotonic()
    run_pass(filled, tmp_path.as_uri(), source_secret=s3_server.secret, options=options, sink=sink)

    assert len(refused) == 2
    assert {path: state for path, (state, _) in by_path(sink).items()} == dict.fromkeys(
        ("a.txt", "b.txt", "sub/c.txt"), "copied"
    )
    assert sink.attempts == {"a.txt": 1, "b.txt": 3, "sub/c.txt": 1}
    assert time.monotonic() - started >= 0.05 + 0.1  # the engine's backoff, doubled
    assert (tmp_path / "b.txt").read_bytes() == FILES["b.txt"]


def test_throttled_listing_pages_are_retried_with_backoff_and_counted(
    s3_server: S3Server, filled: str, hooks: Hooks
):
    refused = hooks.slow_down("ListObjectsV2", "", times=2)
    with connector_for(filled, s3_server.secret) as conn:
        started = time.monotonic()
        items = list(conn.scan(""))
        elapsed = time.monotonic() - started

        assert len(refused) == 2
        assert not [i for i in items if isinstance(i, ScanError)]
        assert [i.path for i in items] == ["a.txt", "b.txt", "sub", "sub/c.txt"]  # fmt: skip
        assert conn.retries == 2
        assert elapsed >= s3.BACKOFF * (1 + 2)


def test_throttling_that_does_not_end_is_a_transient_scan_error(
    s3_server: S3Server, filled: str, hooks: Hooks, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(s3, "BACKOFF", 0.01)
    hooks.slow_down("ListObjectsV2", "", times=1000)
    with connector_for(filled, s3_server.secret) as conn:
        items = list(conn.scan(""))
        assert conn.retries == s3.RETRIES - 1
    (error,) = items
    assert isinstance(error, ScanError)
    assert error.error.transient and "SlowDown" in str(error.error)


# --- multipart uploads and objects other tools wrote ------------------------------------


class Breaks(io.RawIOBase):
    def __init__(self, data: bytes, fail_at: int) -> None:
        self._data, self._pos, self._fail_at = data, 0, fail_at

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._pos >= self._fail_at:
            raise OSError("source went away")
        count = min(len(buffer), 1 << 20, len(self._data) - self._pos)
        buffer[:count] = self._data[self._pos : self._pos + count]
        self._pos += count
        return count


def test_failed_multipart_upload_is_aborted(s3_server: S3Server, s3_bucket: str, hooks: Hooks):
    data = bytes(range(256)) * (40 * 1024)  # 10 MiB: a multipart upload
    parts: list[str] = []
    hooks.on("before-send.s3.UploadPart", lambda request, **_: parts.append(request.url))
    url = s3_server.s3_url(s3_bucket, "up")
    with connector_for(url, s3_server.secret) as conn:
        with pytest.raises(OSError, match="source went away"):
            conn.write("big.bin", Breaks(data, 9 * MIB), Entry("big.bin", "file", len(data)))
        uploads = s3_server.client().list_multipart_uploads(Bucket=s3_bucket)
        assert uploads.get("Uploads", []) == []  # no parts left behind to pay for
        assert list(conn.scan("")) == []

        parts.clear()
        written = conn.write("big.bin", io.BytesIO(data), Entry("big.bin", "file", len(data), 7))
        assert len(parts) == 2  # really uploaded in parts
        # its md5 was kept, as rclone keeps it, so a later pass can compare by hash
        head = s3_server.client().head_object(Bucket=s3_bucket, Key="up/big.bin")
        assert base64.b64decode(head["Metadata"]["md5chksum"]).hex() == md5(data).hexdigest()
        assert conn.stat("big.bin").hash("md5") == written.hash("md5") == md5(data).hexdigest()
        assert conn.stat("big.bin").mtime_ns == 7


def test_objects_written_by_other_tools(s3_server: S3Server, s3_bucket: str):
    client = s3_server.client()
    # rclone keeps the mtime as seconds with a fraction
    client.put_object(Bucket=s3_bucket, Key="rclone.txt", Body=b"r",
                      Metadata={"mtime": "1600000000.123456789"})  # fmt: skip
    # a multipart upload with no md5 kept anywhere: the md5 is unknown, never made up
    upload = client.create_multipart_upload(Bucket=s3_bucket, Key="parts.bin")["UploadId"]
    parts = []
    for number, body in ((1, b"x" * (5 * MIB)), (2, b"y")):
        answer = client.upload_part(Bucket=s3_bucket, Key="parts.bin", UploadId=upload,
                                    PartNumber=number, Body=body)  # fmt: skip
        parts.append({"ETag": answer["ETag"], "PartNumber": number})
    client.complete_multipart_upload(Bucket=s3_bucket, Key="parts.bin", UploadId=upload,
                                     MultipartUpload={"Parts": parts})  # fmt: skip
    # a folder placeholder ("Create folder" in the console) is a folder, not a file
    client.put_object(Bucket=s3_bucket, Key="empty-folder/", Body=b"")

    with connector_for(s3_server.s3_url(s3_bucket), s3_server.secret) as conn:
        items = {i.path: i for i in conn.scan("")}
        assert sorted(items) == ["empty-folder", "parts.bin", "rclone.txt"]
        assert items["empty-folder"].kind == "dir"
        assert items["rclone.txt"].mtime_ns == 1_600_000_000_123_456_789
        assert items["parts.bin"].size == 5 * MIB + 1
        assert items["parts.bin"].hash("md5") is None
        assert conn.stat("parts.bin").hash("md5") is None


def test_move_of_an_object_too_large_for_one_copy_goes_in_parts(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
):
    data = bytes(range(256)) * (44 * 1024)  # 11 MiB: three ranges
    with connector_for(s3_server.s3_url(s3_bucket, "m"), s3_server.secret) as conn:
        conn.write("a/big.bin", io.BytesIO(data), Entry("a/big.bin", "file", len(data), 42))
        monkeypatch.setattr(s3, "MAX_COPY", 0)  # as if over 5 GiB, the most one copy takes
        monkeypatch.setattr(s3, "COPY_PART", 5 * MIB)

        conn.move("a", "b")

        assert [(e.path, e.kind) for e in conn.scan("")] == [("b", "dir"), ("b/big.bin", "file")]
        moved = conn.stat("b/big.bin")
        assert (moved.size, moved.mtime_ns, moved.hash("md5")) == (
            len(data),
            42,
            md5(data).hexdigest(),
        )
        etag = s3_server.client().head_object(Bucket=s3_bucket, Key="m/b/big.bin")["ETag"]
        assert etag.endswith('-3"')  # copied on the server in three parts
        assert s3_server.client().list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_upload_mtime_option_scans_without_heads(s3_server: S3Server, s3_bucket: str, hooks: Hooks):
    client = s3_server.client()
    for index in range(3):
        client.put_object(Bucket=s3_bucket, Key=f"d/f{index}.txt", Body=b"x" * index,
                          Metadata={"mtime": "1600000000.5"})  # fmt: skip
    uploaded = {o["Key"]: o["LastModified"] for o in client.list_objects_v2(
        Bucket=s3_bucket)["Contents"]}  # fmt: skip
    heads: list[str] = []
    hooks.on("before-send.s3.HeadObject", lambda request, **_: heads.append(request.url))

    with connector_for(s3_server.s3_url(s3_bucket) + "&mtime=upload", s3_server.secret) as conn:
        files = [e for e in conn.scan("") if e.kind == "file"]
    assert heads == []  # the listing alone
    assert [(e.path, e.size) for e in files] == [("d/f0.txt", 0), ("d/f1.txt", 1), ("d/f2.txt", 2)]
    for entry in files:
        assert entry.mtime_ns == int(uploaded[entry.path].timestamp()) * 10**9
        assert entry.hash("md5") == md5(b"x" * entry.size).hexdigest()

    with connector_for(s3_server.s3_url(s3_bucket), s3_server.secret) as conn:
        files = [e for e in conn.scan("") if e.kind == "file"]
    assert len(heads) == 3  # by default: a head each, for the mtime kept in metadata
    assert {e.mtime_ns for e in files} == {1_600_000_000_500_000_000}
