#!/usr/bin/env python
"""SFTP benchmark: migrator_run (sftp→file, manifest kept) against `rclone copy` with its
sftp backend, reading the same folder from the same OpenSSH sshd (tests/servers/sftp.py:
a temporary user with a key, run as root) in the same run. Run by hand, never in CI;
results go to bench/RESULTS.md (SFTP section) with the machine and date.

    python bench/sftp_bench.py [--small 2000] [--folders 20] [--large-mb 256] [--repeat 2]
                               [--sets small,large]

Sets: `small` is --small files of 1-4 KB in --folders folders, `large` one file of
--large-mb MB. Both tools log in with the same key; rclone is given no hash check (the
server runs internal-sftp only, so no md5sum over ssh, and migrator has no SFTP hash
either). Each tool runs --repeat times, alternating.

sshd, both clients and the local disk share the machine's 2 cores (and other people's
work): the figures compare the two clients, not what a real server would give.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, add_args, alternate, clean_env, measure, migrator_cmd, print_table

sys.path.insert(0, str(REPO))

from tests.servers import sftp  # noqa: E402 - after the path is set


def build(server: sftp.SftpServer, small: int, folders: int, large_mb: int, sets: list[str]):
    """The files, written on the server's disk directly, then handed to its user."""
    root = server.new_folder("bench")
    rng = random.Random(17)
    if "small" in sets:
        for i in range(small):
            path = root / "small" / f"d{i % folders:02d}" / f"f{i:05d}.dat"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(rng.randint(1024, 4096)))
    if "large" in sets:
        (root / "large").mkdir()
        with open(root / "large" / "big.bin", "wb") as out:
            for _ in range(large_mb):
                out.write(rng.randbytes(1 << 20))
    server.give(root)
    return root


def run_once(tool: str, set_name: str, server, root: Path, work: Path, env_base: dict) -> dict:
    dst = work / f"{set_name}-{tool}"
    shutil.rmtree(dst, ignore_errors=True)
    env = dict(env_base)
    if tool == "rclone":
        remote = (f":sftp,host={server.host},port={server.port},user={server.user},"
                  f"key_file={server.key_path},disable_hashcheck=true:"
                  f"{root / set_name}")  # fmt: skip
        cmd = ["rclone", "copy", remote, str(dst), "--transfers", "8", "--checkers", "8"]
    else:
        env["MIGRATOR_SFTP_KEY_FILE"] = str(server.key_path)
        source = server.url(root / set_name, hostkey=server.fingerprint)
        cmd = migrator_cmd(work, set_name, env, source, dst)
    return measure(tool, set_name, cmd, env, dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    add_args(ap, small=2000, folders=20)
    args = ap.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    env_base = clean_env()
    work = Path(tempfile.mkdtemp(prefix="migrator-sftp-bench-", dir=args.work))
    served = Path(tempfile.mkdtemp(prefix="mg-sftp-bench-"))
    proc, server = sftp.start_sshd(served)
    try:
        started = time.monotonic()
        root = build(server, args.small, args.folders, args.large_mb, sets)
        print(f"data ready in {time.monotonic() - started:.1f}s", flush=True)
        rows = alternate(
            sets, args.repeat, lambda tool, name: run_once(tool, name, server, root, work, env_base)
        )
    finally:
        sftp.stop_sshd(proc, server)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(served, ignore_errors=True)
    print_table(rows, sets, args.repeat)


if __name__ == "__main__":
    main()
