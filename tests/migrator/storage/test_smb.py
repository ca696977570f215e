"""SMB-specific behaviour against the real Samba AD DC: ACLs, users who may not read,
locks, bad credentials, long paths, reconnects. The shared contract is in test_contract.py."""

from __future__ import annotations

import io
import os
import subprocess
import time
import uuid

import pytest
import smbclient

from migrator.acl import sd
from migrator.acl.sd import Ace, SecurityDescriptor
from migrator.storage import (
    AccessDenied,
    ConnectFailed,
    Entry,
    Locked,
    NotFound,
    ScanError,
    Transient,
    connector_for,
    path_key,
)
from migrator.storage.smb import SMBConnector, from_url
from migrator.storage.smb.wire import ATTR_HIDDEN
from tests.servers.util import free_port

FULL, MODIFY, READ = sd.FILE_ALL_ACCESS, sd.FILE_MODIFY, sd.FILE_READ_EXECUTE
OICI = sd.OBJECT_INHERIT_ACE | sd.CONTAINER_INHERIT_ACE
FIXTURE_FOLDERS = {"alice-only", "denied", "finance", "public"}


@pytest.fixture
def share(samba_dc):
    """The whole [data] share, as Administrator."""
    connector = connector_for(samba_dc.smb_url("data"), samba_dc.admin_password)
    yield connector
    connector.close()


@pytest.fixture
def as_user(samba_dc):
    """as_user(name, share="data", path="") -> a connector logged on as that user."""
    opened = []

    def make(user: str, share: str = "data", path: str = "") -> SMBConnector:
        connector = connector_for(samba_dc.smb_url(share, path, user), samba_dc.password_for(user))
        opened.append(connector)
        return connector

    yield make
    for connector in opened:
        connector.close()


@pytest.fixture
def folder(samba_dc, share):
    """A fresh empty folder in [data]: (its path in the share, a connector rooted there)."""
    name = samba_dc.make_folder("data")
    connector = connector_for(samba_dc.smb_url("data", name), samba_dc.admin_password)
    yield name, connector
    connector.close()


def put(connector, path: str, data: bytes, mtime_ns: int = 0, attributes: int = 0) -> None:
    connector.write(
        path, io.BytesIO(data), Entry(path, "file", len(data), mtime_ns, attributes=attributes)
    )


def read(connector, path: str) -> bytes:
    with connector.open(path) as stream:
        return stream.read()


def fixture_items(items):
    """Scan results outside the t-… folders other tests make at the share root."""
    return [i for i in items if i.path.split("/")[0] in FIXTURE_FOLDERS]


# --- what the fixture set up, read back ---------------------------------------------------


def test_scan_reports_sizes_mtimes_and_attributes_from_the_listing(samba_dc, share):
    items = list(share.scan("public"))
    assert [(i.path, i.kind) for i in items] == [
        ("public/hidden.txt", "file"),
        ("public/readme.txt", "file"),
    ]
    for item in items:
        on_disk = os.stat(samba_dc.disk_path("data", item.path))
        assert item.size == on_disk.st_size
        assert item.mtime_ns == on_disk.st_mtime_ns // 100 * 100
    hidden, readme = items
    assert hidden.attributes & ATTR_HIDDEN
    assert not readme.attributes & ATTR_HIDDEN
    assert read(share, "public/readme.txt") == b"hello everyone\n"


def test_scan_order_as_administrator(share):
    items = fixture_items(share.scan(""))
    assert not [i for i in items if isinstance(i, ScanError)]
    paths = [i.path for i in items]
    assert paths == sorted(paths, key=path_key)
    assert "finance/archive/2019.txt" in paths
    assert paths.index("finance/archive") < paths.index("finance/archive/2019.txt")


def test_acl_of_a_group_readable_folder(samba_dc, share):
    acl = share.read_acl("finance")
    assert acl.owner == samba_dc.sids["Administrator"]
    assert acl.group == samba_dc.sids["Domain Users"]
    assert not acl.protected
    assert set(acl.dacl) == {
        Ace("allow", samba_dc.sids["Administrator"], FULL, OICI),
        Ace("allow", samba_dc.sids["Finance"], READ, OICI),
    }
    # a file made inside inherits: same masks, flagged inherited, no inheritance flags of
    # its own
    inherited = share.read_acl("finance/report.txt").dacl
    assert Ace("allow", samba_dc.sids["Finance"], READ, sd.INHERITED_ACE) in inherited
    assert all(ace.inherited for ace in inherited)


def test_acl_of_a_protected_user_folder(samba_dc, share):
    acl = share.read_acl("alice-only")
    assert acl.protected
    assert Ace("allow", samba_dc.sids["alice"], FULL, OICI) in acl.dacl
    assert not any(ace.inherited for ace in acl.dacl)


def test_acl_with_an_explicit_deny(samba_dc, share):
    dacl = share.read_acl("denied").dacl
    assert dacl[0] == Ace("deny", samba_dc.sids["bob"], FULL, OICI)
    assert dacl[0].is_deny
    assert Ace("allow", samba_dc.sids["Domain Users"], MODIFY, OICI) in dacl


def test_write_acl_round_trip(samba_dc, folder):
    _, connector = folder
    put(connector, "doc.txt", b"x")
    connector.mkdir("sub")
    sids = samba_dc.sids
    wanted = SecurityDescriptor(
        owner=sids["alice"],
        group=sids["Domain Users"],
        dacl=(
            Ace("deny", sids["bob"], MODIFY, 0),
            Ace("allow", sids["alice"], FULL, 0),
            Ace("allow", sids["Finance"], READ, 0),
        ),
    ).with_protected(True)

    for path in ("doc.txt", "sub"):
        connector.write_acl(path, wanted)
        got = connector.read_acl(path)
        assert (got.owner, got.group, got.dacl, got.protected) == (
            wanted.owner,
            wanted.group,
            wanted.dacl,
            True,
        )
    # and as raw bytes, turning protection off again
    connector.write_acl("doc.txt", sd.serialize(wanted.with_protected(False)))
    assert not connector.read_acl("doc.txt").protected


def test_acl_decides_who_reads(samba_dc, folder, as_user):
    name, connector = folder
    put(connector, "mine.txt", b"alice's")
    sids = samba_dc.sids
    connector.write_acl(
        "mine.txt",
        SecurityDescriptor(
            owner=sids["alice"],
            group=sids["Domain Users"],
            dacl=(Ace("allow", sids["alice"], FULL), Ace("allow", sids["Administrator"], FULL)),
        ).with_protected(True),
    )
    assert read(as_user("alice", path=name), "mine.txt") == b"alice's"
    with pytest.raises(AccessDenied) as caught:
        as_user("bob", path=name).open("mine.txt")
    assert caught.value.path == "mine.txt"


# --- users who may not read everything ----------------------------------------------------


def test_scan_as_bob_reports_denied_folders_and_goes_on(samba_dc, as_user):
    items = fixture_items(as_user("bob").scan(""))
    errors = {i.path: i.error for i in items if isinstance(i, ScanError)}
    assert set(errors) == {"alice-only", "denied", "finance"}
    assert all(isinstance(e, AccessDenied) for e in errors.values())
    paths = [i.path for i in items]
    for folder_name in errors:  # the folder's own entry, then its error
        assert paths.index(folder_name) + 1 == paths.index(
            folder_name, paths.index(folder_name) + 1
        )
    entries = [i.path for i in items if isinstance(i, Entry)]
    assert "public/readme.txt" in entries
    assert not [p for p in entries if p.startswith(("finance/", "alice-only/", "denied/"))]


def test_scan_as_alice_reads_her_folders(as_user):
    connector = as_user("alice")
    items = fixture_items(connector.scan(""))
    assert not [i for i in items if isinstance(i, ScanError)]
    entries = {i.path for i in items}
    assert {"finance/report.txt", "alice-only/diary.txt", "denied/secret.txt"} <= entries
    assert read(connector, "alice-only/diary.txt") == b"dear diary\n"


def test_bob_cannot_open_a_file_denied_to_him(as_user):
    bob = as_user("bob")
    with pytest.raises(AccessDenied):
        bob.open("denied/secret.txt")
    with pytest.raises(AccessDenied):
        bob.read_acl("finance/report.txt")
    assert read(bob, "public/readme.txt") == b"hello everyone\n"


# --- connecting ---------------------------------------------------------------------------


def test_wrong_password_is_one_clear_error(samba_dc):
    connector = connector_for(samba_dc.smb_url("data", user="alice"), "not-her-password")
    started = time.monotonic()
    with pytest.raises(ConnectFailed) as caught:
        connector.check()
    assert time.monotonic() - started < 5
    assert "wrong user name or password" in str(caught.value)
    assert "EXAMPLE\\alice" in str(caught.value)
    with pytest.raises(ConnectFailed):  # every operation says the same, none is retried
        connector.stat("")


def test_disabled_account_is_refused(samba_dc):
    connector = connector_for(
        samba_dc.smb_url("data", user="carol"), samba_dc.password_for("carol")
    )
    with pytest.raises(ConnectFailed) as caught:
        connector.check()
    assert "disabled" in str(caught.value) or "wrong user name or password" in str(caught.value)


def test_unreachable_port_fails_fast_in_words(samba_dc):
    port = free_port()  # nothing listens there
    connector = from_url(f"smb://EXAMPLE;alice@127.0.0.1:{port}/data", "x")
    started = time.monotonic()
    with pytest.raises(ConnectFailed) as caught:
        connector.check()
    assert time.monotonic() - started < 5
    assert f"cannot reach 127.0.0.1:{port}" in str(caught.value)


def test_missing_share_and_missing_folder(samba_dc):
    with pytest.raises(ConnectFailed) as caught:
        connector_for(samba_dc.smb_url("nosuchshare"), samba_dc.admin_password).check()
    assert "no share named 'nosuchshare'" in str(caught.value)
    with pytest.raises(ConnectFailed) as caught:
        connector_for(samba_dc.smb_url("data", "no/such"), samba_dc.admin_password).check()
    assert "no folder 'no/such'" in str(caught.value)


@pytest.mark.shared_outage  # every test process's connections to [target] drop meanwhile
def test_reconnects_after_the_server_drops_the_share(samba_dc):
    # [target] only, so no other connection of the session is disturbed
    name = samba_dc.make_folder("target")
    connector = connector_for(samba_dc.smb_url("target", name), samba_dc.admin_password)
    try:
        put(connector, "a.txt", b"before")
        subprocess.run(
            [
                "smbcontrol",
                "-s",
                str(samba_dc.directory / "etc" / "smb.conf"),
                "smbd",
                "close-share",
                "target",
            ],
            check=True,
            capture_output=True,
        )
        time.sleep(0.5)
        assert read(connector, "a.txt") == b"before"  # the next operation reconnects
        put(connector, "b.txt", b"after")
        assert [e.path for e in connector.scan("")] == ["a.txt", "b.txt"]
    finally:
        connector.close()


def test_operations_after_close_reconnect(folder):
    _, connector = folder
    put(connector, "x.txt", b"1")
    connector.close()
    assert read(connector, "x.txt") == b"1"


# --- locks --------------------------------------------------------------------------------


def test_file_open_exclusively_by_another_client_is_locked(samba_dc, folder):
    name, connector = folder
    put(connector, "busy.xlsx", b"the spreadsheet")
    other = samba_dc.smbclient_kwargs("alice")  # a second client, on its own connection
    unc = samba_dc.unc("data", f"{name}/busy.xlsx")
    with smbclient.open_file(unc, "rb", share_access=None, **other) as theirs:
        with pytest.raises(Locked) as caught:
            connector.open("busy.xlsx")
        assert caught.value.path == "busy.xlsx"
        assert caught.value.transient  # retried later, not failed for good
        # Replacing it is still atomic: Samba (unlike Windows, which answers a sharing
        # violation, mapped to Locked) lets the rename through; their handle keeps the old
        # bytes and nobody ever sees a partial file.
        put(connector, "busy.xlsx", b"new version")
        assert theirs.read() == b"the spreadsheet"
    assert read(connector, "busy.xlsx") == b"new version"
    assert [(e.path, e.size) for e in connector.scan("")] == [("busy.xlsx", 11)]


def test_byte_range_lock_of_another_client_is_locked(samba_dc, folder):
    from smbprotocol.open import LockFlags, SMB2LockElement

    name, connector = folder
    put(connector, "ledger.db", b"0123456789" * 10)
    other = samba_dc.smbclient_kwargs("alice")
    unc = samba_dc.unc("data", f"{name}/ledger.db")
    with smbclient.open_file(unc, "rb", share_access="rwd", buffering=0, **other) as theirs:
        lock = SMB2LockElement()
        lock["offset"], lock["length"] = 0, 100
        lock["flags"] = (
            LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
        )
        theirs.fd.lock([lock])
        with pytest.raises(Locked):
            read(connector, "ledger.db")
    assert read(connector, "ledger.db") == b"0123456789" * 10


# --- names and paths ----------------------------------------------------------------------


def test_paths_longer_than_260_characters(folder):
    _, connector = folder
    parts = [f"{i:02d} " + "long folder name " * 3 + "end" for i in range(6)]
    path = "/".join(parts) + "/" + "file with a long name " * 3 + "end.txt"
    assert len(path) > 300
    data = os.urandom(70_000)
    put(connector, path, data)
    assert read(connector, path) == data
    assert connector.stat(path).size == len(data)
    scanned = [e.path for e in connector.scan("") if e.kind == "file"]
    assert scanned == [path]


def test_mtime_keeps_100ns_and_hidden_attribute_is_copied(folder):
    _, connector = folder
    mtime_ns = 1_234_567_890_123_456_789
    put(connector, "h.txt", b"h", mtime_ns=mtime_ns, attributes=ATTR_HIDDEN)
    entry = connector.stat("h.txt")
    assert entry.mtime_ns == mtime_ns // 100 * 100
    assert entry.attributes & ATTR_HIDDEN


def test_a_file_is_not_a_folder(folder):
    _, connector = folder
    put(connector, "f", b"x")
    items = list(connector.scan("f"))
    assert len(items) == 1 and isinstance(items[0], ScanError)
    with pytest.raises(NotFound):
        connector.stat("f/inside")


def test_delete_of_a_non_empty_folder_is_refused(folder):
    _, connector = folder
    put(connector, "d/x", b"x")
    with pytest.raises(Exception) as caught:
        connector.delete("d")
    assert "not empty" in str(caught.value)
    connector.delete("d/x")
    connector.delete("d")
    assert list(connector.scan("")) == []


def test_a_missing_root_is_made_by_mkdir_or_by_the_first_write(samba_dc):
    base = f"t-{uuid.uuid4().hex[:12]}"
    made = connector_for(samba_dc.smb_url("data", f"{base}/made/root"), samba_dc.admin_password)
    written = connector_for(samba_dc.smb_url("data", f"{base}/written"), samba_dc.admin_password)
    try:
        with pytest.raises(ConnectFailed):
            made.check()
        assert made.mkdir("") is True  # what a job does for a new destination
        assert made.mkdir("") is False
        made.check()
        put(written, "a/b.txt", b"b")
        assert read(written, "a/b.txt") == b"b"
    finally:
        made.close()
        written.close()


def test_threads_use_their_own_connections(folder):
    from concurrent.futures import ThreadPoolExecutor

    _, connector = folder
    blobs = {f"f{i}.bin": os.urandom(300_000 + i) for i in range(12)}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kv: put(connector, *kv), blobs.items()))
        back = dict(pool.map(lambda p: (p, read(connector, p)), blobs))
    assert back == blobs
    assert len(connector._links) >= 2


# --- URLs ---------------------------------------------------------------------------------


def test_url_parsing():
    c = from_url("smb://EXAMPLE;alice@fs.example.test/Shared%20Docs/Team/2024", "pw")
    assert (c.host, c.port, c.share, c.root, c.domain, c.user) == (
        "fs.example.test",
        445,
        "Shared Docs",
        "Team/2024",
        "EXAMPLE",
        "alice",
    )
    c = from_url("smb://bob@10.0.0.5:4450/data", "pw")
    assert (c.port, c.share, c.root, c.domain, c.user) == (4450, "data", "", "", "bob")
    for bad in (
        "smb://alice:pw@host/data",
        "smb://host/data",
        "smb://alice@host",
        "smb://alice@host/data/../x",
    ):
        with pytest.raises(ValueError):
            from_url(bad, "pw")


def test_transient_is_raised_when_the_server_goes_away_mid_job(samba_dc, folder):
    """A connection that dies under an operation that cannot be repeated (a streaming
    write) fails with Transient, and the connector works again afterwards."""
    _, connector = folder
    put(connector, "warm.txt", b"w")

    class Dropping(io.RawIOBase):
        def __init__(self):
            self.sent = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            if self.sent >= 3 << 20:
                return 0
            if self.sent >= 1 << 20:
                connector._local.link.conn.transport.close()  # the wire is cut
            n = min(len(buffer), 256 << 10)
            buffer[:n] = b"z" * n
            self.sent += n
            return n

    with pytest.raises(Transient):
        connector.write("big.bin", Dropping(), Entry("big.bin", "file", 3 << 20, 0))
    assert read(connector, "warm.txt") == b"w"
    assert [e.path for e in connector.scan("")] == ["warm.txt"]


# --- the fixture's directory, as the LDAP side sees it --------------------------------------


def test_fixture_directory_over_ldap(samba_dc):
    import ldap

    conn = ldap.initialize(samba_dc.ldap_uri)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.simple_bind_s(f"alice@{samba_dc.realm}", samba_dc.password_for("alice"))

    def one(name: str) -> dict:
        (dn, attrs), *_ = conn.search_s(
            samba_dc.base_dn, ldap.SCOPE_SUBTREE, f"(sAMAccountName={name})"
        )
        return attrs

    assert any(b"CN=Finance" in dn for dn in one("alice")["memberOf"])
    platform = one("Platform")
    assert any(b"CN=Engineering" in dn for dn in platform["memberOf"])  # nested group
    assert any(b"CN=Platform" in dn for dn in one("bob")["memberOf"])
    assert int(one("carol")["userAccountControl"][0]) & 0x2  # disabled
    with pytest.raises(ldap.INVALID_CREDENTIALS):
        ldap.initialize(samba_dc.ldap_uri).simple_bind_s(
            f"carol@{samba_dc.realm}", samba_dc.password_for("carol")
        )
    conn.unbind_s()
