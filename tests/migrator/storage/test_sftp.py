"""The SFTP connector against a real OpenSSH sshd (tests/servers/sftp.py): one clear
sentence from check() for each way an endpoint can be wrong, before any work; a host key
that does not match its pin; a file or folder that vanishes mid-scan or mid-copy; a
connection dropped mid-copy and mid-scan, retried."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from migrator.engine.copy import CopyOptions, CopyTask, State, copy_one
from migrator.storage import ConnectFailed, Entry, NotFound, ScanError, Transient, connector_for
from migrator.storage.local import LocalConnector
from migrator.storage.sftp import WINDOW, SftpConnector, from_url, parse_url
from tests.servers.sftp import SftpServer
from tests.servers.util import free_port

MTIME_NS = 1_600_000_000_000_000_000


def served_tree(server: SftpServer, files: dict[str, bytes]) -> Path:
    """A fresh folder on the server holding `files`, owned by the SSH user."""
    folder = server.new_folder("bad")
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    server.give(folder)
    return folder


def check_error(url: str, secret: str | None) -> str:
    connector = from_url(url, secret)
    try:
        with pytest.raises(ConnectFailed) as caught:
            connector.check()
    finally:
        connector.close()
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- check(): one clear sentence before any work -------------------------------------------


def test_check_passes_with_password_and_with_key_and_reports_the_host_key(sftp_server):
    folder = served_tree(sftp_server, {"a.txt": b"a"})
    for secret in (sftp_server.password, sftp_server.private_key):
        with from_url(sftp_server.url(folder), secret) as connector:
            connector.check()
            assert connector.host_key_fingerprint == sftp_server.fingerprint
            assert [e.path for e in connector.scan()] == ["a.txt"]


def test_wrong_password(sftp_server):
    folder = served_tree(sftp_server, {"a.txt": b"a"})
    message = check_error(sftp_server.url(folder), "not-the-password")
    assert f"the password is wrong for user {sftp_server.user}" in message
    assert "not-the-password" not in message


def test_wrong_key(sftp_server, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    folder = served_tree(sftp_server, {"a.txt": b"a"})
    message = check_error(sftp_server.url(folder), other.read_text())
    assert f"the private key is wrong for user {sftp_server.user}" in message
    assert "PRIVATE KEY" not in message


def test_wrong_host_key_names_both_fingerprints_and_sends_no_credentials(sftp_server):
    folder = served_tree(sftp_server, {"a.txt": b"a"})
    pinned = "SHA256:" + "A" * 43
    connector = from_url(sftp_server.url(folder, hostkey=pinned), sftp_server.password)
    with pytest.raises(ConnectFailed) as caught:
        connector.check()
    message = str(caught.value)
    assert "host key mismatch" in message
    assert sftp_server.fingerprint in message and pinned in message
    assert connector._transport is None  # nothing left open
    # the scan is refused the same way: no listing from an impostor
    (error,) = list(connector.scan())
    assert isinstance(error, ScanError) and "host key mismatch" in str(error.error)


def test_the_right_pin_passes_with_plus_and_slash_in_the_url(sftp_server):
    folder = served_tree(sftp_server, {"a.txt": b"a"})
    url = sftp_server.url(folder, hostkey=sftp_server.fingerprint)  # raw base64: '+', '/'
    assert parse_url(url)[4]["hostkey"] == sftp_server.fingerprint
    with from_url(url, sftp_server.password) as connector:
        connector.check()


def test_closed_port_unknown_host_missing_folder_no_credentials(sftp_server):
    closed = f"sftp://{sftp_server.user}@127.0.0.1:{free_port()}/srv"
    assert "connection refused at 127.0.0.1:" in check_error(closed, sftp_server.password)
    unknown = f"sftp://{sftp_server.user}@no-such-host.invalid:22/srv"
    assert "unknown host no-such-host.invalid" in check_error(unknown, sftp_server.password)
    missing = sftp_server.url(sftp_server.base / "nowhere")
    assert "/nowhere does not exist on 127.0.0.1" in check_error(missing, sftp_server.password)
    folder = served_tree(sftp_server, {"a.txt": b"a"})
    assert "no SFTP credentials" in check_error(sftp_server.url(folder), None)


def test_bad_urls_are_refused_without_connecting():
    for url, words in (
        ("sftp://alice:pw@host/srv", "never in the URL"),
        ("sftp://host/srv", "sftp://user@host"),
        ("sftp://alice@host/srv?hostkey=MD5:aa", "SHA256"),
        ("sftp://alice@host/srv?colour=blue", "unknown SFTP URL option"),
    ):
        with pytest.raises(ValueError, match=words):
            connector_for(url, "pw")


def test_secret_never_in_repr(sftp_server):
    connector = from_url(sftp_server.url("/srv"), sftp_server.password)
    assert sftp_server.password not in repr(connector)
    assert sftp_server.password not in connector.where


# -- vanished ------------------------------------------------------------------------------


def test_folder_vanished_mid_scan_is_reported_and_the_scan_goes_on(sftp_server):
    folder = served_tree(sftp_server, {"a/one.txt": b"1", "b/two.txt": b"2", "c.txt": b"3"})
    with from_url(sftp_server.url(folder), sftp_server.password) as connector:
        scan = connector.scan()
        first = next(scan)
        assert (first.path, first.kind) == ("a", "dir")
        shutil.rmtree(folder / "a")  # gone between its parent's listing and its own
        rest = list(scan)
    errors = [item for item in rest if isinstance(item, ScanError)]
    assert [(e.path, type(e.error)) for e in errors] == [("a", NotFound)]
    assert [i.path for i in rest if not isinstance(i, ScanError)] == ["b", "b/two.txt", "c.txt"]


def test_file_vanished_before_copy_is_reported_vanished(sftp_server, tmp_path):
    folder = served_tree(sftp_server, {"gone.txt": b"soon gone"})
    with from_url(sftp_server.url(folder), sftp_server.password) as src:
        (entry,) = list(src.scan())
        (folder / "gone.txt").unlink()
        task = CopyTask(1, entry.path, entry.path, size=entry.size, mtime_ns=entry.mtime_ns)
        out = copy_one(task, src, LocalConnector(str(tmp_path)), CopyOptions(backoff=0.01))
    assert (out.state, out.reason) == (State.FAILED, "vanished")
    assert not (tmp_path / "gone.txt").exists()


# -- dropped connections -------------------------------------------------------------------


# paramiko's read-ahead thread dies with EOFError when the line is cut under it: the
# reader raises Transient from what it saved, which is what these tests check
thread_dies = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def drop(connector: SftpConnector) -> None:
    """Cut the connector's TCP connection under paramiko, as a network failure would."""
    assert connector._transport is not None
    connector._transport.sock.shutdown(socket.SHUT_RDWR)


@thread_dies
def test_connection_dropped_mid_copy_is_retried_and_the_copy_completes(sftp_server, tmp_path):
    # past one read-ahead window: on a busy machine the whole first window could arrive
    # before the line is cut, and then only a later window's requests meet the drop
    data = os.urandom(WINDOW + (1 << 20))
    folder = served_tree(sftp_server, {"big.bin": data})
    src = from_url(sftp_server.url(folder), sftp_server.private_key)
    opened = src.open

    def open_then_drop_once(path: str):
        stream = opened(path)
        if not getattr(src, "dropped", False):
            src.dropped = True  # type: ignore[attr-defined]
            stream.read(1 << 16)  # some bytes came, then the line went
            drop(src)
        return stream

    src.open = open_then_drop_once  # type: ignore[method-assign]
    task = CopyTask(1, "big.bin", "big.bin", size=len(data), mtime_ns=MTIME_NS)
    try:
        out = copy_one(task, src, LocalConnector(str(tmp_path)), CopyOptions(backoff=0.01))
    finally:
        src.close()
    assert (out.state, out.attempts) == (State.COPIED, 2)
    assert (tmp_path / "big.bin").read_bytes() == data
    assert os.stat(tmp_path / "big.bin").st_mtime_ns == MTIME_NS


@thread_dies
def test_a_read_on_a_dropped_connection_raises_transient(sftp_server):
    folder = served_tree(sftp_server, {"f.bin": os.urandom(1 << 20)})
    with from_url(sftp_server.url(folder), sftp_server.password) as connector:
        stream = connector.open("f.bin")
        drop(connector)
        with pytest.raises(Transient):
            while stream.read(1 << 16):
                pass
        stream.close()
        assert connector.stat("f.bin").size == 1 << 20  # reconnected


def test_connection_dropped_mid_scan_is_retried_and_counted(sftp_server):
    files = {f"d{i}/f{j}.txt": b"x" * j for i in range(3) for j in range(3)}
    folder = served_tree(sftp_server, files)
    with from_url(sftp_server.url(folder), sftp_server.password) as connector:
        scan = connector.scan()
        seen = [next(scan)]
        drop(connector)
        seen += list(scan)
        # the cut is seen at once (paramiko's reader thread), else by a failed listing
        assert connector.reconnects + connector.retries >= 1
    assert not [item for item in seen if isinstance(item, ScanError)]
    assert sorted(e.path for e in seen if e.kind == "file") == sorted(files)


def test_written_files_keep_their_second_and_leave_no_temp_file(sftp_server):
    folder = sftp_server.new_folder("w")
    with from_url(sftp_server.url(folder), sftp_server.password) as connector:
        connector.write("x/y.txt", io.BytesIO(b"hello"), Entry("x/y.txt", "file", 5, MTIME_NS))
    assert (folder / "x" / "y.txt").read_bytes() == b"hello"
    assert os.stat(folder / "x" / "y.txt").st_mtime_ns == MTIME_NS
    assert os.listdir(folder / "x") == ["y.txt"]
    assert os.stat(folder / "x" / "y.txt").st_uid == sftp_server.uid  # written as the user


class DropsMidway(io.RawIOBase):
    """A source stream that cuts the destination's connection after its first read."""

    def __init__(self, data: bytes, connector: SftpConnector) -> None:
        self._data, self._pos, self._connector = data, 0, connector

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._pos and self._connector._transport is not None:
            drop(self._connector)
        count = min(len(buffer), 1 << 20, len(self._data) - self._pos)
        buffer[:count] = self._data[self._pos : self._pos + count]
        self._pos += count
        return count


def test_connection_dropped_mid_write_is_transient_and_nothing_shows(sftp_server):
    folder = sftp_server.new_folder("w")
    data = os.urandom(4 << 20)
    entry = Entry("a/big.bin", "file", len(data), MTIME_NS)
    with from_url(sftp_server.url(folder), sftp_server.password) as connector:
        with pytest.raises(Transient):
            connector.write("a/big.bin", DropsMidway(data, connector), entry)
        # reconnected: nothing under the name, no temp file in the listing
        assert [e.path for e in connector.scan()] == ["a"]
        with pytest.raises(NotFound):
            connector.stat("a/big.bin")
        connector.write("a/big.bin", io.BytesIO(data), entry)  # the retry, as the engine does
        assert connector.stat("a/big.bin").size == len(data)
    assert (folder / "a" / "big.bin").read_bytes() == data
    assert os.listdir(folder / "a") == ["big.bin"]  # the retry replaced the temp file
