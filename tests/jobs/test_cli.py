"""migrator_run end to end, as a user runs it: real subprocess, real files."""

from __future__ import annotations

import os

from .conftest import CliResult, make_tree, tree_of


def test_file_to_file_copies_everything_with_mtimes_and_summary(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src)
    os.utime(src / "d0" / "plain.txt", ns=(1_600_000_000_123_456_789,) * 2)
    (src / "empty-folder").mkdir()

    result = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json")

    assert result.code == 0, result.stderr
    summary = result.json
    assert summary["state"] == "completed"
    assert summary["seen"] == summary["copied"] == len(expected)
    assert summary["unchanged"] == summary["failed"] == summary["pending"] == 0
    assert summary["bytes_copied"] == sum(len(b) for b in expected.values())
    assert summary["folders_seen"] == 5
    assert tree_of(dst) == expected
    assert (dst / "empty-folder").is_dir()
    assert os.stat(dst / "d0" / "plain.txt").st_mtime_ns == 1_600_000_000_123_456_789
    assert not list(dst.rglob(".mg-*")), "temp files left at the destination"


def test_rerun_copies_nothing_unchanged_and_only_what_changed(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=12)
    first = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json")
    assert first.code == 0, first.stderr

    again = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json").json
    assert (again["copied"], again["unchanged"]) == (0, len(expected))
    assert again["job_id"] == first.json["job_id"] and again["pass"] == 2

    (src / "d0" / "plain.txt").write_bytes(b"changed")
    third = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json").json
    assert (third["copied"], third["unchanged"]) == (1, len(expected) - 1)
    assert (dst / "d0" / "plain.txt").read_bytes() == b"changed"


def test_human_summary_without_json(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=3)
    result = cli.run("--source", src.as_uri(), "--destination", dst.as_uri())
    assert result.code == 0
    assert "completed" in result.stdout and "3 copied" in result.stdout


def test_plain_folder_paths_are_local_folders(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=3)
    result = cli.run("--source", str(src), "--destination", str(dst), "--json")
    assert result.code == 0, result.stderr
    assert result.json["copied"] == 3
    assert tree_of(dst) == expected


def test_a_database_never_migrated_gets_one_line_naming_the_command(cli, tmp_path):
    src = tmp_path / "src"
    make_tree(src, files=1)
    fresh = f"sqlite:///{tmp_path / 'new.sqlite3'}"
    result = cli.run("--source", str(src), "--destination", str(tmp_path / "d"),
                     DATABASE_URL=fresh)  # fmt: skip
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("migrator_run: the database is not ready")
    assert lines[0].endswith("run `python manage.py migrate`")
    assert not (tmp_path / "d").exists()


def test_unreadable_file_and_folder_fail_with_reason_and_the_job_goes_on(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=10)
    (src / "secret.txt").write_text("no")
    (src / "secret.txt").chmod(0)
    (src / "locked-folder").mkdir()
    (src / "locked-folder" / "inside.txt").write_text("hidden")
    (src / "locked-folder").chmod(0)
    try:
        result = cli.run(
            "--source", src.as_uri(), "--destination", dst.as_uri(), "--json", drop_root=True
        )
    finally:
        (src / "secret.txt").chmod(0o644)
        (src / "locked-folder").chmod(0o755)

    assert result.code == 1, result.stderr  # completed with errors
    summary = result.json
    assert summary["state"] == "completed_with_errors"
    assert summary["failed_by_reason"] == {"access_denied": 1}
    assert summary["folders_failed"] == 1
    assert summary["copied"] == len(expected)
    rows = cli.query(
        "SELECT source_path, kind, state, reason FROM jobs_fileitem WHERE state = 'failed' "
        "ORDER BY source_path"
    )
    assert rows == [
        ("locked-folder", "dir", "failed", "access_denied"),
        ("secret.txt", "file", "failed", "access_denied"),
    ]
    assert tree_of(dst) == expected


def test_bad_arguments_give_one_line_and_exit_2(cli, tmp_path):
    cases = [
        ("--source", "ftp://nowhere/x", "--destination", (tmp_path / "d").as_uri()),
        ("--source", "file:relative/path", "--destination", (tmp_path / "d").as_uri()),
        ("--source", (tmp_path / "missing").as_uri(), "--destination", (tmp_path / "d").as_uri()),
        (
            "--source",
            tmp_path.as_uri(),
            "--destination",
            (tmp_path / "d").as_uri(),
            "--bwlimit",
            "fast",
        ),  # fmt: skip
        ("--destination", (tmp_path / "d").as_uri()),
        (
            "--source",
            tmp_path.as_uri(),
            "--destination",
            (tmp_path / "d").as_uri(),
            "--on-exists",
            "sometimes",
        ),  # fmt: skip
    ]
    for args in cases:
        result = cli.run(*args)
        assert result.code == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("migrator_run: "), result.stderr
        assert "Traceback" not in result.stderr


def test_on_exists_policies(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a.txt").write_bytes(b"source version")
    os.utime(src / "a.txt", ns=(1_000_000_000_000_000_000,) * 2)
    (dst / "a.txt").write_bytes(b"destination, newer")
    os.utime(dst / "a.txt", ns=(1_700_000_000_000_000_000,) * 2)

    newer = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json",
                    "--on-exists", "newer").json  # fmt: skip
    assert (newer["excluded"], newer["copied"]) == (1, 0)
    assert (dst / "a.txt").read_bytes() == b"destination, newer"

    both = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json",
                   "--on-exists", "keep_both").json  # fmt: skip
    assert both["copied"] == 1
    names = sorted(p.name for p in dst.iterdir())
    assert names == ["a (source 2001-09-09 014640).txt", "a.txt"]

    over = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json",
                   "--on-exists", "overwrite").json  # fmt: skip
    assert over["copied"] == 1
    assert (dst / "a.txt").read_bytes() == b"source version"


def test_bwlimit_slows_the_copy(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(300_000))
    result = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json",
                     "--bwlimit", "100000", "--workers", "1")  # fmt: skip
    assert result.code == 0
    assert result.json["seconds"] >= 2.5  # 300 kB at 100 kB/s: a bound, not a benchmark


def _copy_processes(cli_pid: int) -> list[int]:
    """The CLI's copy processes: forked from it, so they carry its command line."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    forked = b"migrator_run" in f.read()
            except OSError:
                continue
            if ppid == cli_pid and forked:
                found.append(int(entry))
    return found


def test_a_killed_copy_process_loses_nothing(cli, tmp_path):
    """kill -9 of one of migrator_run's copy processes mid-batch: its batch is handed out
    again at once (not when its lease would lapse, minutes later), the job completes and
    every file arrives once, whole, with no temp file left."""
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO, base_env

    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=60, size=100_000)
    env = base_env(cli.db, **cli.env_extra, MIGRATOR_BATCH_FILES="5")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "migrator_run", "--source", str(src),
         "--destination", str(dst), "--json", "--bwlimit", "1500000"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (dst.exists() and any(dst.rglob("*.dat"))):  # copying has begun
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        victims = _copy_processes(proc.pid)
        assert victims, "no copy process found"
        os.kill(victims[0], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)  # far less than a lease (630 s)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = CliResult(proc.returncode, out, err).json
    assert (summary["state"], summary["failed"], summary["pending"]) == ("completed", 0, 0)
    # what the killed process wrote but could not record is found whole and counts unchanged
    assert summary["copied"] + summary["unchanged"] == 60
    assert cli.query("SELECT MAX(attempts) FROM jobs_batch")[0][0] >= 2  # leased again
    assert tree_of(dst) == expected
    assert not list(dst.rglob(".mg-*"))
    assert cli.query("SELECT COUNT(*) FROM jobs_fileitem WHERE kind = 'file'") == [(60,)]
