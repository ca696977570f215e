"""migrator_run with SMB on either side, against the real Samba AD DC: smb→file, smb→gs,
file→smb and smb→smb; users who may not read everything; locked files; names the
destination cannot hold; long paths; bad credentials; the DC restarted mid-job."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import smbclient

from migrator.storage import connector_for
from tests.servers.samba import restart_dc
from tests.servers.util import free_port

from .conftest import LONG_FILE, make_smb_tree, run_smb, smb_source, tree_of


def mtimes_of(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
    }


def assert_mtimes_close(source: dict[str, int], copied: dict[str, int]) -> None:
    assert set(source) == set(copied)
    off = {p: (source[p], copied[p]) for p in source if abs(source[p] - copied[p]) >= 100}
    assert not off, f"mtimes differ by 100 ns or more: {off}"


# --- end to end, four directions ------------------------------------------------------------


def test_smb_to_file_byte_identical_with_mtimes_then_rerun_is_a_no_op(cli, samba_dc, tmp_path):
    name, disk = smb_source(samba_dc)
    expected = make_smb_tree(disk)
    dst = tmp_path / "dst"
    args = ("--source", samba_dc.smb_url("data", name), "--destination", dst.as_uri())

    first = run_smb(cli, samba_dc, *args)

    assert first.code == 0, first.stdout + first.stderr[-3000:]
    summary = first.json
    assert (summary["state"], summary["seen"], summary["copied"]) == (
        "completed",
        len(expected),
        len(expected),
    )
    assert summary["failed"] == summary["pending"] == 0
    assert summary["bytes_copied"] == sum(map(len, expected.values()))
    assert tree_of(dst) == expected
    assert (dst / "empty folder").is_dir()
    assert_mtimes_close(mtimes_of(disk), mtimes_of(dst))

    again = run_smb(cli, samba_dc, *args)
    assert again.code == 0, again.stderr
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_smb_to_gcs_then_rerun_is_a_no_op(cli, samba_dc, gcs_server):
    name, disk = smb_source(samba_dc)
    expected = make_smb_tree(disk, files=12)
    bucket = gcs_server.make_bucket()
    args = ("--source", samba_dc.smb_url("data", name), "--destination", f"gs://{bucket}/in")

    first = run_smb(cli, samba_dc, *args)

    assert first.code == 0, first.stdout + first.stderr[-3000:]
    assert (first.json["copied"], first.json["failed"]) == (len(expected), 0)
    client = gcs_server.client()
    gcs = client.bucket(bucket)
    names = {b.name for b in client.list_blobs(bucket)}
    assert names == {f"in/{p}" for p in expected}
    for rel, data in expected.items():
        assert gcs.blob(f"in/{rel}").download_as_bytes() == data
    with connector_for(f"gs://{bucket}/in") as dest:
        copied = {e.path: e.mtime_ns for e in dest.scan("") if e.kind == "file"}
    assert_mtimes_close(mtimes_of(disk), copied)

    again = run_smb(cli, samba_dc, *args)
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_file_to_smb_then_rerun_is_a_no_op(cli, samba_dc, tmp_path):
    src = tmp_path / "src"
    expected = make_smb_tree(src, long_path=False)  # see test_paths_over_260_characters
    name = samba_dc.make_folder("target")
    dest = samba_dc.disk_path("target", name) / "new" / "root"  # made by the job
    url = samba_dc.smb_url("target", f"{name}/new/root")
    args = ("--source", src.as_uri(), "--destination", url)

    first = run_smb(cli, samba_dc, *args)

    assert first.code == 0, first.stdout + first.stderr[-3000:]
    assert first.json["copied"] == len(expected)
    assert tree_of(dest) == expected
    assert (dest / "empty folder").is_dir()
    assert_mtimes_close(mtimes_of(src), mtimes_of(dest))
    assert not [p for p in dest.rglob("*") if p.name.startswith(".mg-")], "temp files left"

    again = run_smb(cli, samba_dc, *args)
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


def test_smb_to_smb_target_share_then_rerun_is_a_no_op(cli, samba_dc):
    name, disk = smb_source(samba_dc)
    expected = make_smb_tree(disk, long_path=False)
    target = samba_dc.make_folder("target")
    args = (
        "--source",
        samba_dc.smb_url("data", name),
        "--destination",
        samba_dc.smb_url("target", target),
    )

    first = run_smb(cli, samba_dc, *args)

    assert first.code == 0, first.stdout + first.stderr[-3000:]
    assert first.json["copied"] == len(expected)
    dest = samba_dc.disk_path("target", target)
    assert tree_of(dest) == expected
    assert_mtimes_close(mtimes_of(disk), mtimes_of(dest))

    again = run_smb(cli, samba_dc, *args)
    assert (again.json["copied"], again.json["unchanged"]) == (0, len(expected))


# --- users who may not read everything ------------------------------------------------------

DENY_BOB_FILE = "O:LAG:DUD:PAI(D;;0x1f01ff;;;{bob})(A;;0x1301bf;;;DU)(A;;0x1f01ff;;;LA)"


@pytest.fixture(scope="module")
def acl_folders(samba_dc) -> str:
    """Copies of the fixture's ACL'd folders in a folder of their own, plus a file in
    public/ that only bob may not read."""
    base = samba_dc.make_acl_folders("data")
    samba_dc.put_file("data", f"{base}/public/not-for-bob.txt", b"alice may\n")
    samba_dc.set_acl("data", f"{base}/public/not-for-bob.txt", DENY_BOB_FILE)
    return base


def test_bob_gets_what_he_may_read_and_denied_folders_are_reported(
    cli, samba_dc, acl_folders, tmp_path
):
    dst = tmp_path / "dst"
    result = run_smb(
        cli,
        samba_dc,
        "--source",
        samba_dc.smb_url("data", acl_folders, user="bob"),
        "--destination",
        dst.as_uri(),
        user="bob",
    )

    assert result.code == 1, result.stdout + result.stderr[-3000:]  # completed with errors
    summary = result.json
    assert summary["state"] == "completed_with_errors"
    assert summary["folders_failed"] == 3
    assert summary["failed_by_reason"] == {"access_denied": 1}  # the file denied to him
    assert summary["copied"] == 2
    failed = cli.query(
        "SELECT source_path, kind, reason FROM jobs_fileitem WHERE state = 'failed' "
        "ORDER BY source_path"
    )
    assert failed == [
        ("alice-only", "dir", "access_denied"),
        ("denied", "dir", "access_denied"),
        ("finance", "dir", "access_denied"),
        ("public/not-for-bob.txt", "file", "access_denied"),
    ]
    assert tree_of(dst) == {
        "public/readme.txt": b"hello everyone\n",
        "public/hidden.txt": b"you cannot see me in Explorer\n",
    }
    assert not [p for p in ("alice-only", "denied", "finance") if (dst / p).exists()]
    counts = ("copied", "unchanged", "excluded", "failed", "pending")
    assert summary["seen"] == sum(summary[k] for k in counts) and summary["pending"] == 0
    twice = "SELECT source_path FROM jobs_fileitem GROUP BY source_path HAVING COUNT(*) > 1"
    assert cli.query(twice) == []  # each item one row: a refused folder too
    events = cli.query("SELECT path FROM jobs_event WHERE level = 'error' ORDER BY path")
    assert {"alice-only", "denied", "finance"} <= {path for (path,) in events}


def test_alice_gets_every_folder_she_may_read(cli, samba_dc, acl_folders, tmp_path):
    dst = tmp_path / "dst"
    result = run_smb(
        cli,
        samba_dc,
        "--source",
        samba_dc.smb_url("data", acl_folders, user="alice"),
        "--destination",
        dst.as_uri(),
        user="alice",
    )

    assert result.code == 0, result.stdout + result.stderr[-3000:]
    assert (result.json["failed"], result.json["folders_failed"]) == (0, 0)
    copied = tree_of(dst)
    assert copied["alice-only/diary.txt"] == b"dear diary\n"
    assert copied["finance/archive/2019.txt"] == b"old numbers\n"
    assert copied["denied/secret.txt"] == b"bob must not read this\n"
    assert copied["public/not-for-bob.txt"] == b"alice may\n"
    assert len(copied) == result.json["copied"] == 7


# --- files other clients hold ---------------------------------------------------------------


def test_locked_files_fail_as_locked_after_retries_and_the_job_goes_on(cli, samba_dc, tmp_path):
    from smbprotocol.open import LockFlags, SMB2LockElement

    name, disk = smb_source(samba_dc)
    expected = make_smb_tree(disk, files=8, long_path=False)
    for locked in ("busy.xlsx", "ledger.db"):
        samba_dc.put_file("data", f"{name}/{locked}", locked.encode() * 100)
    dst = tmp_path / "dst"
    args = ("--source", samba_dc.smb_url("data", name), "--destination", dst.as_uri())
    retry = {"MIGRATOR_RETRY_ATTEMPTS": "3", "MIGRATOR_RETRY_BACKOFF": "0.05"}
    other = samba_dc.smbclient_kwargs("alice")  # another client, on its own connection
    # one program holds busy.xlsx open with no sharing (as Excel does); another holds a
    # byte-range lock over the whole of ledger.db (as a database does)
    with (
        smbclient.open_file(
            samba_dc.unc("data", f"{name}/busy.xlsx"), "rb", share_access=None, **other
        ),
        smbclient.open_file(
            samba_dc.unc("data", f"{name}/ledger.db"), "rb", share_access="rwd", buffering=0,
            **other,
        ) as ledger,
    ):  # fmt: skip
        lock = SMB2LockElement()
        lock["offset"], lock["length"] = 0, 1 << 20
        lock["flags"] = (
            LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
        )
        ledger.fd.lock([lock])

        first = run_smb(cli, samba_dc, *args, **retry)

    assert first.code == 1, first.stdout + first.stderr[-3000:]
    assert first.json["failed_by_reason"] == {"locked": 2}
    assert first.json["copied"] == len(expected)
    rows = cli.query(
        "SELECT source_path, reason, attempts FROM jobs_fileitem WHERE state = 'failed' "
        "ORDER BY source_path"
    )
    assert rows == [("busy.xlsx", "locked", 3), ("ledger.db", "locked", 3)]
    assert tree_of(dst) == expected  # nothing partial of the locked files

    # released: the next run copies just those two
    again = run_smb(cli, samba_dc, *args, **retry)
    assert again.code == 0, again.stdout + again.stderr[-3000:]
    assert (again.json["copied"], again.json["unchanged"]) == (2, len(expected))
    assert (dst / "busy.xlsx").read_bytes() == b"busy.xlsx" * 100


# --- names and paths --------------------------------------------------------------------------


def test_names_legal_on_smb_that_gcs_cannot_hold_are_renamed_or_reported(cli, samba_dc, gcs_server):
    """'#', '[' and ']' are fine on Windows and not in GCS object names (the gcs profile);
    '.well-known/acme-challenge/' is reserved by GCS; object names end at 1,024 bytes and
    SMB paths do not. Each is renamed (recorded on its manifest row) or refused with a
    reason: none is dropped without a word."""
    name, disk = smb_source(samba_dc)
    deep = "/".join(f"{i} " + "x" * 240 for i in range(5))  # 1,234 bytes
    files = {
        "ok.txt": b"fine everywhere",
        "#1 [draft].txt": b"hash and brackets",
        ".well-known/acme-challenge/token": b"reserved by GCS",
        f"{deep}/deep.txt": b"too long for an object name",
    }
    for rel, data in files.items():
        (disk / rel).parent.mkdir(parents=True, exist_ok=True)
        (disk / rel).write_bytes(data)
    bucket = gcs_server.make_bucket()

    result = run_smb(
        cli,
        samba_dc,
        "--source",
        samba_dc.smb_url("data", name),
        "--destination",
        f"gs://{bucket}/in",
    )

    assert result.code == 1, result.stdout + result.stderr[-3000:]  # completed with errors
    summary = result.json
    assert (summary["seen"], summary["copied"], summary["failed"]) == (4, 3, 1)
    assert summary["failed_by_reason"] == {"path_too_long": 1}
    assert summary["renamed"] == {"forbidden_char": 1, "reserved_path": 1}
    rows = cli.query(
        "SELECT source_path, dest_path, state, reason, renamed_from FROM jobs_fileitem "
        "WHERE kind = 'file' ORDER BY source_path"
    )
    assert rows == [
        ("#1 [draft].txt", "_1 _draft_.txt", "copied", "", "#1 [draft].txt"),
        (".well-known/acme-challenge/token", ".well-known/_acme-challenge/token", "copied", "",
         ".well-known/acme-challenge/token"),
        (f"{deep}/deep.txt", f"{deep}/deep.txt", "failed", "path_too_long", ""),
        ("ok.txt", "ok.txt", "copied", "", ""),
    ]  # fmt: skip
    gcs = gcs_server.client().bucket(bucket)
    stored = {b.name for b in gcs_server.client().list_blobs(bucket)}
    assert stored == {f"in/{dest}" for _, dest, state, _, _ in rows if state == "copied"}
    for source_path, dest_path, state, _, _ in rows:
        if state == "copied":
            assert gcs.blob(f"in/{dest_path}").download_as_bytes() == files[source_path]


def test_paths_over_260_characters(cli, samba_dc, tmp_path):
    """A source share with paths past Windows' MAX_PATH copies them. To an SMB destination
    the default profile keeps MAX_PATH (what Explorer can open) and reports the refusal;
    a profile without that limit copies them, as the server holds up to 32,767."""
    name, disk = smb_source(samba_dc)
    (disk / LONG_FILE).parent.mkdir(parents=True)
    (disk / LONG_FILE).write_bytes(b"deep\n")
    out = tmp_path / "dst"
    to_file = run_smb(
        cli, samba_dc, "--source", samba_dc.smb_url("data", name), "--destination", out.as_uri()
    )
    assert to_file.code == 0, to_file.stdout + to_file.stderr[-3000:]
    assert tree_of(out) == {LONG_FILE: b"deep\n"}

    target = samba_dc.make_folder("target")
    args = ("--source", out.as_uri(), "--destination", samba_dc.smb_url("target", target))
    refused = run_smb(cli, samba_dc, *args)
    assert refused.code == 1, refused.stdout + refused.stderr[-3000:]
    assert refused.json["failed_by_reason"] == {"path_too_long": 1}
    rows = cli.query(
        "SELECT source_path, state, reason FROM jobs_fileitem WHERE job_id = ? AND kind = 'file'",
        refused.json["job_id"],
    )
    assert rows == [(LONG_FILE, "failed", "path_too_long")]
    assert tree_of(samba_dc.disk_path("target", target)) == {}

    allowed = run_smb(cli, samba_dc, *args, "--profile", "posix")
    assert allowed.code == 0, allowed.stdout + allowed.stderr[-3000:]
    assert allowed.json["copied"] == 1
    assert tree_of(samba_dc.disk_path("target", target)) == {LONG_FILE: b"deep\n"}


# --- endpoints that cannot be used -------------------------------------------------------------


def test_wrong_password_or_unreachable_host_is_one_line_before_any_work(cli, samba_dc, tmp_path):
    src = tmp_path / "src"
    make_smb_tree(src, files=3, long_path=False)
    port = free_port()  # nothing listens there
    cases = [
        # (source, destination, password, words the line must hold)
        (samba_dc.smb_url("data", user="alice"), (tmp_path / "d").as_uri(), "Not-Her-Passw0rd",
         "wrong user name or password for EXAMPLE\\alice"),
        (src.as_uri(), samba_dc.smb_url("target", user="bob"), "Not-His-Passw0rd",
         "wrong user name or password for EXAMPLE\\bob"),
        (f"smb://EXAMPLE;alice@127.0.0.1:{port}/data", (tmp_path / "d").as_uri(),
         samba_dc.password_for("alice"), f"cannot reach 127.0.0.1:{port}"),
        ("smb://EXAMPLE;alice@no-such-host.invalid/data", (tmp_path / "d").as_uri(),
         samba_dc.password_for("alice"), "cannot reach no-such-host.invalid"),
        (samba_dc.smb_url("data", user="carol"), (tmp_path / "d").as_uri(),
         samba_dc.password_for("carol"), "EXAMPLE\\carol"),
    ]  # fmt: skip
    for source, destination, password, words in cases:
        started = time.monotonic()
        result = cli.run(
            "--source", source, "--destination", destination, "--json",
            MIGRATOR_SMB_PASSWORD=password,
        )  # fmt: skip
        assert result.code == 2, (source, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("migrator_run: cannot start: ") and words in lines[0], lines
        assert password not in result.stderr + result.stdout
        assert time.monotonic() - started < 20
    assert cli.query("SELECT COUNT(*) FROM jobs_migrationjob") == [(0,)]
    assert cli.query("SELECT COUNT(*) FROM jobs_fileitem") == [(0,)]
    assert not (tmp_path / "d").exists()


# --- the server restarts mid-job ---------------------------------------------------------------


@pytest.mark.shared_outage  # the DC is down for every test process meanwhile
def test_dc_restarted_mid_job_the_job_finishes_with_nothing_lost(cli, samba_dc):
    """smb→smb, slowed by its bandwidth limit; the DC is stopped by its PID and started
    again while files are in flight. Every connection drops; reads, writes and connects
    fail as Transient, are retried with backoff on new connections, and every file
    arrives once, whole."""
    name, disk = smb_source(samba_dc)
    expected = {f"f{i // 10}/file-{i:02d}.bin": os.urandom(60_000) for i in range(40)}
    for rel, data in expected.items():
        (disk / rel).parent.mkdir(parents=True, exist_ok=True)
        (disk / rel).write_bytes(data)
    target = samba_dc.make_folder("target")
    dest = samba_dc.disk_path("target", target)
    env = {
        "MIGRATOR_RETRY_ATTEMPTS": "10",  # backoff 0.2 s doubling: 100 s before giving up
        "MIGRATOR_RETRY_BACKOFF": "0.2",
        "MIGRATOR_BATCH_FILES": "8",
        "MIGRATOR_COPY_THREADS": "4",
    }
    args = (
        "--source", samba_dc.smb_url("data", name),
        "--destination", samba_dc.smb_url("target", target),
        "--bwlimit", "240000", "--workers", "1",  # 2.4 MB at 240 kB/s: about 10 s
    )  # fmt: skip
    outcome: dict = {}
    job = threading.Thread(
        target=lambda: outcome.update(result=run_smb(cli, samba_dc, *args, timeout=300, **env))
    )
    job.start()
    try:
        deadline = time.monotonic() + 60
        while len([p for p in dest.rglob("*.bin")]) < 8:  # some batches done, more in flight
            assert job.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.1)
        arrived_before = len(list(dest.rglob("*.bin")))
        assert cli.query("SELECT scan_finished FROM jobs_pass") == [(1,)]
        down = restart_dc(samba_dc)
    finally:
        job.join(timeout=300)

    result = outcome["result"]
    failures = cli.query(
        "SELECT source_path, reason, message FROM jobs_fileitem WHERE reason != ''"
    )
    assert result.code == 0, (result.stdout, failures, result.stderr[-3000:])
    summary = result.json
    assert (summary["state"], summary["seen"], summary["copied"]) == ("completed", 40, 40)
    assert summary["failed"] == summary["pending"] == 0
    assert summary["bytes_copied"] == 40 * 60_000
    assert arrived_before < 40, "the job ended before the restart: nothing was tested"
    assert tree_of(dest) == expected  # every file, whole, and no temp file left
    retried = cli.query("SELECT COUNT(*) FROM jobs_fileitem WHERE attempts > 1")[0][0]
    assert retried >= 1, f"no file was in flight during the {down:.1f} s restart"
