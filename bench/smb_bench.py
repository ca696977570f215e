#!/usr/bin/env python
"""SMB benchmark: migrator_run (smb→file, manifest kept) against `rclone copy` with its smb
backend, reading the same share of the same Samba AD DC in the same run. Run by hand,
never in CI; results go to bench/RESULTS.md (SMB section) with the machine and date.

    python bench/smb_bench.py [--small 20000] [--folders 200] [--large 4] [--large-mb 256]
                              [--repeat 2] [--sets small,large]

It starts the test suite's DC (tests/servers/samba.py), or shares one a test session
runs, and writes the data straight into the [bench] share's folder on disk (a copy
benchmark needs no NT ACLs). [bench] serves reads synchronously: rclone 1.60 fails every
large file on a share that answers READs asynchronously (see samba.BENCH_SHARE).
Each tool runs --repeat times, alternating, so both see the same
page cache and the same neighbours on a shared machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    REPO,
    add_args,
    alternate,
    clean_env,
    measure,
    migrator_cmd,
    print_table,
    run_tool,  # noqa: F401 - where other scripts found it before bench/_common.py
)

sys.path.insert(0, str(REPO))

from copy_bench import build, byte_compile  # noqa: E402 - the same data set and set-up

from tests.servers import samba  # noqa: E402 - after the path is set

SHARE = samba.BENCH_SHARE  # reads served synchronously: see its comment
FOLDER = "bench-smb"


def run_once(tool: str, set_name: str, dc, work: Path, env_base: dict) -> dict:
    dst = work / f"{set_name}-{tool}"
    shutil.rmtree(dst, ignore_errors=True)
    password = dc.admin_password
    env = dict(env_base)
    if tool == "rclone":
        obscured = subprocess.run(
            ["rclone", "obscure", password], capture_output=True, text=True, check=True
        ).stdout.strip()
        cmd = [
            "rclone", "copy", f":smb:{SHARE}/{FOLDER}/{set_name}", str(dst),
            "--smb-host", dc.host, "--smb-port", str(dc.port), "--smb-user", dc.admin_user,
            "--smb-domain", dc.domain, "--smb-pass", obscured,
            "--transfers", "8", "--checkers", "8",
        ]  # fmt: skip
    else:
        env["MIGRATOR_SMB_PASSWORD"] = password
        cmd = migrator_cmd(work, set_name, env, dc.smb_url(SHARE, f"{FOLDER}/{set_name}"), dst)
    subprocess.run(["sync"], check=False)
    return measure(tool, set_name, cmd, env, dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    add_args(ap, small=20_000, folders=200)
    ap.add_argument("--large", type=int, default=4)
    args = ap.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    env_base = clean_env()
    byte_compile()
    with samba.running_dc() as dc:
        data = dc.disk_path(SHARE, FOLDER)
        started = time.monotonic()
        build(data, args.small, args.folders, args.large, args.large_mb)
        print(f"data ready in {time.monotonic() - started:.1f}s at {data}", flush=True)
        work = Path(tempfile.mkdtemp(prefix="migrator-smb-bench-", dir=args.work))
        try:
            rows = alternate(
                sets, args.repeat, lambda tool, name: run_once(tool, name, dc, work, env_base)
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print_table(rows, sets, args.repeat, best=True)


if __name__ == "__main__":
    main()
