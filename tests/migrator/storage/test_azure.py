"""Bad input for the Azure Blob connector, against Azurite (which checks Shared Key
signatures): a wrong key, a missing container or endpoint, blobs that vanish mid-copy,
throttling, large blobs uploaded in blocks, blobs other tools wrote.

Azurite cannot be asked to throttle: a tiny HTTP proxy in front of it answers chosen
requests with 503 ServerBusy and forwards the rest (a Shared Key signature covers the
account and path, not the host, so the proxied requests are still valid).
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from migrator.engine.copy import CopyOptions
from migrator.engine.memory import run_pass
from migrator.storage import ConnectFailed, Entry, NotFound, ScanError, connector_for
from migrator.storage import azure as az
from tests.servers.azure import AzureServer
from tests.servers.util import free_port

from .sinks import AttemptsSink, assert_accounted, by_path

MIB = 1 << 20
FILES = {"a.txt": b"alpha" * 100, "b.txt": b"bravo" * 200, "sub/c.txt": b"charlie"}
SERVER_BUSY = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    b"<Message>The server is busy.</Message></Error>"
)


class BusyProxy:
    """Forwards HTTP requests to Azurite; answers the first `times` requests for which
    `match(method, path_and_query)` holds with 503 ServerBusy instead."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.account_path = parts.path
        self.refused: list[str] = []
        self.rule: tuple[Callable[[str, str], bool], int] = (lambda m, p: False, 0)
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                match, times = proxy.rule
                with proxy._lock:
                    refuse = len(proxy.refused) < times and match(self.command, self.path)
                    if refuse:
                        proxy.refused.append(f"{self.command} {self.path}")
                if refuse:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("x-ms-error-code", "ServerBusy")
                    self.send_header("Content-Length", str(len(SERVER_BUSY)))
                    self.end_headers()
                    self.wfile.write(SERVER_BUSY)
                    return
                upstream = http.client.HTTPConnection(*proxy.target, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body, headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    skip = ("transfer-encoding", "connection")
                    if self.command != "HEAD":  # a HEAD's length is the blob's: kept
                        skip += ("content-length",)
                    if key.lower() not in skip:
                        self.send_header(key, value)
                if self.command != "HEAD":  # a HEAD's length is the blob's, no body follows
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}{self.account_path}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def refuse(self, match: Callable[[str, str], bool], times: int) -> None:
        self.rule = (match, times)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(azure_server: AzureServer) -> Iterator[BusyProxy]:
    made = BusyProxy(azure_server.endpoint)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def filled(azure_server: AzureServer, azure_container: str) -> str:
    """A container holding FILES under the prefix "data"; returns the source URL."""
    container = azure_server.container(azure_container)
    for path, data in FILES.items():
        container.upload_blob(f"data/{path}", data)
    return azure_server.azure_url(azure_container, "data")


# --- check(): one clear error before any work ------------------------------------------


def test_wrong_key_fails_check_in_one_clear_error(azure_server: AzureServer, filled: str):
    wrong_key = base64.b64encode(hashlib.sha512(b"not the key").digest()).decode()
    with connector_for(filled, wrong_key) as conn, pytest.raises(ConnectFailed) as caught:
        conn.check()
    message = str(caught.value)
    assert "wrong account key or SAS token" in message
    assert caught.value.path.startswith("azure://devstoreaccount1/")
    assert wrong_key not in message and azure_server.key not in message
    assert "\n" not in message

    with connector_for(filled, azure_server.secret) as conn:
        conn.check()  # the right key passes

    with pytest.raises(ConnectFailed, match="account key \\(base64\\) or a SAS token"):
        connector_for(filled, "not a key!")


def test_missing_container_and_unreachable_endpoint_fail_check_in_words(
    azure_server: AzureServer, monkeypatch: pytest.MonkeyPatch
):
    missing = azure_server.azure_url("no-such-container", "x")
    with (
        connector_for(missing, azure_server.secret) as conn,
        pytest.raises(ConnectFailed) as caught,
    ):
        conn.check()
    assert "container no-such-container does not exist at http://127.0.0.1:" in str(caught.value)

    nowhere = azure_server.azure_url("box", "x", endpoint=f"http://127.0.0.1:{free_port()}/a")
    with (
        connector_for(nowhere, azure_server.secret) as conn,
        pytest.raises(ConnectFailed) as caught,
    ):
        conn.check()
    assert f"cannot reach {nowhere.split('endpoint=')[1]}:" in str(caught.value)

    for name in (az.ENV_KEY, az.ENV_SAS):
        monkeypatch.delenv(name, raising=False)
    with connector_for(missing) as conn, pytest.raises(ConnectFailed) as caught:
        conn.check()
    assert "no Azure credentials" in str(caught.value)

    monkeypatch.setenv(az.ENV_KEY, azure_server.key)  # the CLI's way: the key from the env
    existing = azure_server.azure_url(azure_server.make_container(), "x")
    with connector_for(existing) as conn:
        conn.check()


@pytest.mark.parametrize(
    "url",
    [
        "azure://AB/box/prefix",  # not an account name
        "azure://acct/B_x/prefix",  # not a container name
        "azure://key@acct/box/prefix",  # credentials never in the URL
        "azure://acct/box/prefix?endpoint=ftp://host",
        "azure://acct/box/prefix?colour=blue",
    ],
)
def test_malformed_urls_are_refused(url: str):
    with pytest.raises(ValueError):
        connector_for(url, "c2VjcmV0LXNlY3JldC1zZWNyZXQ=")


# --- vanished blobs ---------------------------------------------------------------------


def test_blob_vanished_mid_copy_fails_as_vanished(
    azure_server: AzureServer,
    azure_container: str,
    filled: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    container = azure_server.container(azure_container)
    gone: list[str] = []
    real_open = az.AzureConnector.open

    def open_after_delete(self, path):  # deleted between the scan and the copy's read
        if path == "b.txt" and not gone:
            container.delete_blob("data/b.txt")
            gone.append(path)
        return real_open(self, path)

    monkeypatch.setattr(az.AzureConnector, "open", open_after_delete)
    dst = tmp_path / "dst"
    dst.mkdir()
    sink = run_pass(filled, dst.as_uri(), source_secret=azure_server.secret)

    assert gone == ["b.txt"]
    assert by_path(sink) == {
        "a.txt": ("copied", ""),
        "b.txt": ("failed", "vanished"),
        "sub/c.txt": ("copied", ""),
    }
    assert_accounted(sink)
    assert (dst / "a.txt").read_bytes() == FILES["a.txt"]
    assert not (dst / "b.txt").exists()


# --- throttling -------------------------------------------------------------------------


def test_busy_listing_pages_are_retried_with_backoff_and_counted(
    azure_server: AzureServer, azure_container: str, filled: str, proxy: BusyProxy
):
    proxy.refuse(lambda method, path: "comp=list" in path, times=2)
    url = azure_server.azure_url(azure_container, "data", endpoint=proxy.endpoint)
    with connector_for(url, azure_server.secret) as conn:
        started = time.monotonic()
        items = list(conn.scan(""))
        elapsed = time.monotonic() - started

        assert len(proxy.refused) == 2
        assert not [i for i in items if isinstance(i, ScanError)]
        assert [i.path for i in items] == ["a.txt", "b.txt", "sub", "sub/c.txt"]
        assert conn.retries == 2
        assert elapsed >= az.BACKOFF * (1 + 2)


def test_busy_reads_are_retried_by_the_engine_and_counted(
    azure_server: AzureServer, azure_container: str, filled: str, proxy: BusyProxy, tmp_path
):
    proxy.refuse(lambda method, path: method == "GET" and "/data/b.txt" in path, times=2)
    url = azure_server.azure_url(azure_container, "data", endpoint=proxy.endpoint)
    sink = AttemptsSink()
    options = CopyOptions(backoff=0.05, threads=1)
    run_pass(url, tmp_path.as_uri(), source_secret=azure_server.secret, options=options, sink=sink)

    assert len(proxy.refused) == 2
    assert by_path(sink) == dict.fromkeys(("a.txt", "b.txt", "sub/c.txt"), ("copied", ""))
    assert sink.attempts == {"a.txt": 1, "b.txt": 3, "sub/c.txt": 1}
    assert (tmp_path / "b.txt").read_bytes() == FILES["b.txt"]


def test_busy_that_does_not_end_is_a_transient_scan_error(
    azure_server: AzureServer,
    azure_container: str,
    filled: str,
    proxy: BusyProxy,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(az, "BACKOFF", 0.01)
    proxy.refuse(lambda method, path: "comp=list" in path, times=1000)
    url = azure_server.azure_url(azure_container, "data", endpoint=proxy.endpoint)
    with connector_for(url, azure_server.secret) as conn:
        items = list(conn.scan(""))
        assert conn.retries == az.RETRIES - 1
    (error,) = items
    assert isinstance(error, ScanError)
    assert error.error.transient and "ServerBusy" in str(error.error)


# --- block uploads and blobs other tools wrote -------------------------------------------


def test_large_blob_goes_in_blocks_visible_only_when_committed(
    azure_server: AzureServer, azure_container: str, proxy: BusyProxy
):
    data = os.urandom(3 * az.BLOCK + 12345)
    mtime = 1_600_000_000_123_456_789
    container = azure_server.container(azure_container)
    seen_during: list[bool] = []

    class Watching:
        """The source stream: while the last block is read, is the blob visible yet?"""

        def __init__(self) -> None:
            self.pos = 0

        def read(self, size: int = -1) -> bytes:
            if self.pos >= 3 * az.BLOCK:
                seen_during.append(container.get_blob_client("big/blob.bin").exists())
            size = len(data) - self.pos if size < 0 else size
            chunk = data[self.pos : self.pos + size]
            self.pos += len(chunk)
            return chunk

    # one block refused once by the service: retried here, counted, the blob whole
    proxy.refuse(lambda method, path: "comp=block&" in path or path.endswith("comp=block"), 1)
    url = azure_server.azure_url(azure_container, "big", endpoint=proxy.endpoint)
    with connector_for(url, azure_server.secret) as conn:
        written = conn.write("blob.bin", Watching(), Entry("blob.bin", "file", len(data), mtime))
        assert conn.retries == 1
        entry = conn.stat("blob.bin")
        with conn.open("blob.bin") as stream:
            assert stream.read() == data

    assert len(proxy.refused) == 1 and seen_during and not any(seen_during)
    md5 = hashlib.md5(data).hexdigest()
    assert written.hash("md5") == md5
    assert (entry.size, entry.mtime_ns, entry.hash("md5")) == (len(data), mtime, md5)
    blocks = container.get_blob_client("big/blob.bin").get_block_list("committed")[0]
    assert len(blocks) == 4


def test_blobs_other_tools_wrote(azure_server: AzureServer, azure_container: str):
    """No mtime metadata: the upload time; rclone's RFC 3339 mtime: kept to the ns."""
    container = azure_server.container(azure_container)
    container.upload_blob("x/plain.txt", b"plain")
    container.upload_blob(
        "x/rclone.txt", b"r", metadata={"mtime": "2020-09-13T12:26:40.123456789Z"}
    )
    before = time.time_ns()
    with connector_for(azure_server.azure_url(azure_container, "x"), azure_server.secret) as c:
        entries = {e.path: e for e in c.scan("") if isinstance(e, Entry)}
    assert entries["rclone.txt"].mtime_ns == 1_600_000_000_123_456_789
    assert abs(entries["plain.txt"].mtime_ns - before) < 120 * 10**9
    assert entries["plain.txt"].hash("md5") == hashlib.md5(b"plain").hexdigest()


def test_a_sas_token_as_the_secret_lists_writes_and_moves(
    azure_server: AzureServer, azure_container: str, filled: str
):
    """A container SAS (what a customer hands over instead of the account key): the move's
    server-side copy is authorised by the same token; a read-only one is refused in words."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    def sas(**allowed: bool) -> str:
        return generate_container_sas(
            azure_server.account,
            azure_container,
            account_key=azure_server.key,
            permission=ContainerSasPermissions(**allowed),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )

    token = sas(read=True, write=True, delete=True, list=True, add=True, create=True)
    with connector_for(filled, f"?{token}") as conn:
        conn.check()
        assert [e.path for e in conn.scan("")] == ["a.txt", "b.txt", "sub", "sub/c.txt"]
        conn.write("new.txt", io.BytesIO(b"by sas"), Entry("new.txt", "file", 6, 10**18))
        conn.move("new.txt", "moved/new.txt")
        with conn.open("moved/new.txt") as stream:
            assert stream.read() == b"by sas"
        with pytest.raises(NotFound):
            conn.stat("new.txt")

    with connector_for(filled, sas(read=True)) as conn, pytest.raises(ConnectFailed) as caught:
        conn.check()  # may read a blob it knows, may not list
    assert "permission denied listing the container" in str(caught.value)
    assert sas(read=True).split("sig=")[1][:10] not in str(caught.value)
