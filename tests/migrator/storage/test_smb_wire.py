"""The SMB connector's own message path, against the real Samba AD DC: signatures
checked on every response, idle links reused across connectors and replaced when dead,
and smbprotocol's path kept where the share encrypts."""

from __future__ import annotations

import io
import os
import socket
import threading
import time

import pytest

from migrator.storage import ConnectFailed, Entry, connector_for
from migrator.storage.smb.link import _LeanLink, _Link, _LinkLost
from migrator.storage.smb.pool import _POOL
from migrator.storage.smb.wire import _close, _create

FILE_READ_ATTRIBUTES, SYNCHRONIZE = 0x80, 0x100000


@pytest.fixture
def url(samba_dc):
    return samba_dc.smb_url("data", samba_dc.make_folder("data"))


def put(connector, path: str, data: bytes) -> None:
    connector.write(path, io.BytesIO(data), Entry(path, "file", len(data), 0))


def read(connector, path: str) -> bytes:
    with connector.open(path) as stream:
        return stream.read()


def test_signed_share_uses_the_lean_path_and_checks_every_signature(samba_dc, url):
    connector = connector_for(url, samba_dc.admin_password)
    try:
        data = os.urandom(3_000_000)  # several pipelined READs, answered asynchronously
        put(connector, "big.bin", data)
        assert read(connector, "big.bin") == data
        link = connector._local.link
        assert isinstance(link, _LeanLink) and link.sign is not None

        honest = link.sign
        link.sign = lambda body, message_id, response: (
            bytes(16) if response else honest(body, message_id, response)
        )  # our requests still signed right; every answer now looks forged
        probe = [_create(link.prefix + url.rsplit("/", 1)[1], FILE_READ_ATTRIBUTES | SYNCHRONIZE),
                 _close()]  # fmt: skip
        with pytest.raises(_LinkLost, match="signature is wrong"):
            link.exchange(probe, 10)
        assert not link.alive
        assert read(connector, "big.bin") == data  # a new link, verified again
    finally:
        connector.close()


def test_idle_links_are_reused_by_the_next_connector_of_the_same_account(samba_dc, url):
    first = connector_for(url, samba_dc.admin_password)
    put(first, "a.txt", b"a")
    link = first._local.link
    first.close()

    second = connector_for(url, samba_dc.admin_password)
    try:
        assert read(second, "a.txt") == b"a"
        assert second._local.link is link  # no new logon
    finally:
        second.close()

    wrong = connector_for(url, "not-the-password")  # never handed a pooled link
    with pytest.raises(ConnectFailed, match="wrong user name or password"):
        wrong.check()


def test_a_pooled_link_the_server_closed_is_replaced(samba_dc, url):
    first = connector_for(url, samba_dc.admin_password)
    put(first, "a.txt", b"a")
    link = first._local.link
    first.close()
    link.sock.shutdown(socket.SHUT_RDWR)  # as if the server had gone away meanwhile

    second = connector_for(url, samba_dc.admin_password)
    try:
        assert read(second, "a.txt") == b"a"
        assert second._local.link is not link
    finally:
        second.close()


def test_an_encrypting_share_keeps_smbprotocols_path(samba_dc):
    from tests.servers.samba import SEALED_SHARE

    name = f"t-{os.urandom(6).hex()}"
    connector = connector_for(samba_dc.smb_url(SEALED_SHARE, name), samba_dc.admin_password)
    try:
        connector.mkdir("")
        data = os.urandom(2_500_000)
        put(connector, "sealed/big.bin", data)
        put(connector, "sealed/small.txt", b"small")
        assert read(connector, "sealed/big.bin") == data
        assert [e.path for e in connector.scan("")] == [
            "sealed",
            "sealed/big.bin",
            "sealed/small.txt",
        ]
        link = connector._local.link
        assert type(link) is _Link
        assert link.session.encrypt_data or link.tree.encrypt_data
    finally:
        connector.close()
    assert samba_dc.disk_path(SEALED_SHARE, f"{name}/sealed/big.bin").read_bytes() == data


def test_pool_is_per_account(samba_dc, url):
    admin = connector_for(url, samba_dc.admin_password)
    admin.stat("")
    admin.close()
    alice_url = url.replace(f";{samba_dc.admin_user}@", ";alice@")
    alice = connector_for(alice_url, samba_dc.password_for("alice"))
    try:
        alice.stat("")
        assert alice._local.link.session.username.endswith("alice")
    finally:
        alice.close()
    _POOL.flush(alice._pool_key)


@pytest.mark.shared_outage  # the DC is down for every test process meanwhile
def test_a_scan_waits_for_a_restarting_server_and_goes_on(samba_dc):
    """A listing is safe to repeat: the walk picks up where it was once the DC is back."""
    from tests.servers.samba import restart_dc

    name = samba_dc.make_folder("target")  # [target]: made directly on its disk
    disk = samba_dc.disk_path("target", name)
    for i in range(6):
        (disk / f"d{i}").mkdir()
        (disk / f"d{i}" / "x.txt").write_bytes(b"x")
    connector = connector_for(samba_dc.smb_url("target", name), samba_dc.admin_password)
    try:
        walk = connector.scan("")
        seen = [next(walk).path, next(walk).path]  # d0 listed, d0/x.txt next
        restart = threading.Thread(target=restart_dc, args=(samba_dc, 2.0))
        restart.start()
        deadline = time.monotonic() + 30
        while _listening(samba_dc.host, samba_dc.port):  # the DC is down now
            assert time.monotonic() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        seen += [item.path for item in walk]
        waited = time.monotonic() - started
        restart.join()
    finally:
        connector.close()
    assert waited >= 2.0  # it did wait for the server, which was away that long
    assert seen == [p for i in range(6) for p in (f"d{i}", f"d{i}/x.txt")]


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
