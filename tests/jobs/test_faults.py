"""Faults against the real thing, each ending with every file accounted for, none lost,
none twice, none torn: the destination disk fills up, the GCS server goes away for 30 s,
eight workers share the embedded SQLite database. (Files that grow while they are
copied, locally and over SMB: test_changing_files.py.)"""

from __future__ import annotations

import subprocess

import pytest

from .conftest import make_tree, tree_of


def accounted(summary: dict) -> bool:
    return summary["seen"] == sum(
        summary[k] for k in ("copied", "unchanged", "excluded", "failed", "pending")
    )


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB file system (tmpfs), made bigger on demand."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)

    def grow(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True)

    yield mount, grow
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_pauses_the_job_and_the_same_command_finishes_it(cli, tmp_path, small_disk):
    """Out of space: the job stops cleanly (paused, the error in words, no file failed,
    no partial file left), and once there is room the same command carries on."""
    dst, grow = small_disk
    src = tmp_path / "src"
    expected = make_tree(src, files=30, folders=3, size=64 << 10)  # ~1.9 MiB
    args = ("--source", str(src), "--destination", str(dst / "copy"), "--json")
    first = cli.run(*args, MIGRATOR_BATCH_FILES="5")
    summary = first.json
    assert first.code == 4, first.stderr
    assert summary["state"] == "paused" and accounted(summary)
    assert summary["failed"] == 0 and 0 < summary["copied"] < 30 and summary["pending"] > 0
    assert "no space left" in first.stderr and "Make room" in first.stderr
    written = tree_of(dst / "copy")
    assert all(expected[rel] == data for rel, data in written.items())  # whole, or absent
    assert not [p for p in (dst / "copy").rglob(".mg-*")]  # no temp file left behind
    events = cli.query(
        "SELECT message FROM jobs_event WHERE job_id = ? AND staff_only = 0 AND level = 'error'",
        summary["job_id"],
    )
    assert [m for (m,) in events] == [
        "The destination is full: copying is paused and nothing is lost. Make room there "
        "(or raise its quota), then resume the migration."
    ]
    grow("8m")
    again = cli.run(*args)
    assert again.code == 0, again.stderr
    final = again.json
    assert (final["state"], final["seen"], final["failed"], final["pending"]) == (
        "completed", 30, 0, 0
    )  # fmt: skip
    assert final["copied"] + final["unchanged"] == 30
    assert tree_of(dst / "copy") == expected
    rows = cli.query("SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
                     "WHERE kind = 'file' AND job_id = ?", summary["job_id"])  # fmt: skip
    assert rows == [(30, 30)]


def test_eight_workers_on_the_embedded_sqlite_database(cli, tmp_path):
    """The one-shot CLI under load on one SQLite file: `migrator_run --workers 8` runs the
    tasks itself (its inline runner, jobs/inline.py: eight forked copy processes, the scan
    on its threads), not through django-q2's broker; no "database is locked", every file
    once. A real qcluster of eight workers on the ORM broker: test_sqlite_cluster.py."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=400, folders=8, size=500)
    result = cli.run("--source", str(src), "--destination", str(dst), "--json",
                     "--workers", "8", MIGRATOR_BATCH_FILES="10", timeout=240)  # fmt: skip
    assert result.code == 0, result.stderr
    summary = result.json
    assert (summary["copied"], summary["failed"], summary["pending"]) == (400, 0, 0)
    assert "locked" not in result.stderr
    assert tree_of(dst) == expected
    done = cli.query("SELECT COUNT(*) FROM jobs_batch WHERE state = 'done'")[0][0]
    assert done >= 40
