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
from tests.servers.samba import FOLDER_SDDL, _tool, restart_dc
from tests.servers.util import free_port

from .conftest import tree_of

# a path well over Windows' classic MAX_PATH of 260 characters
LONG = "/".join(f"{i:02d} a folder name that is rather long" for i in range(7))
LONG_FILE = f"{LONG}/and a file name that is long as well.txt"
NAMES = [
    "plain.txt",
    "naïve 日本.txt",
    "ampersand & percent% (1).bin",
    "=formula.csv",
    "comma, 'single' quote.txt",
    "UPPER.TXT",
    "no extension",
]
MTIME_NS = 1_600_000_000_123_456_789  # below 100 ns too: SMB keeps 100 ns ticks


def make_smb_tree(
    root: Path, files: int = 24, folders: int = 3, size: int = 3000, long_path: bool = True
) -> dict[str, bytes]:
    """Files with names every side can hold (SMB refuses '"', '?', ':' …), an empty file,
    an empty folder and, unless told not to, a path over 260 characters; returns
    {relative path: bytes}. The mtimes have nanoseconds, so 100 ns truncation shows."""
    made: dict[str, bytes] = {}
    for i in range(files):
        folder = "/".join(f"d{j}" for j in range(i % folders + 1))
        name = NAMES[i] if i < len(NAMES) else f"file-{i:03d}.dat"
        made[f"{folder}/{name}"] = os.urandom(size + i)
    if long_path:
        made[LONG_FILE] = b"deep\n"
    made["empty.txt"] = b""
    for i, (rel, data) in enumerate(made.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(MTIME_NS + i * 1_000_000_007,) * 2)
    (root / "empty folder").mkdir(parents=True)
    assert len(LONG_FILE) > 260
    return made


def mtimes_of(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
    }


def assert_mtimes_close(source: dict[str, int], copied: dict[str, int]) -> None:
    assert set(source) == set(copied)
    off = {p: (source[p], copied[p]) for p in source if abs(source[p] - copied[p]) >= 100}
    assert not off, f"mtimes differ by 100 ns or more: {off}"


def run_smb(cli, dc, *args: str, user: str | None = None, **env):
    """The CLI with the SMB password in the environment, never on the command line."""
    password = dc.password_for(user or dc.admin_user)
    assert password not in " ".join(args)
    return cli.run(*args, "--json", MIGRATOR_SMB_PASSWORD=password, **env)


def smb_source(dc, share: str = "data") -> tuple[str, Path]:
    """A fresh folder in `share`: (its share-relative path, its folder on the DC's disk)."""
    name = dc.make_folder(share)
    return name, dc.disk_path(share, name)


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
