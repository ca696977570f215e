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
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from smb_bench import run_tool  # noqa: E402 - the same measurement of one process

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
        db = work / f"{set_name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        env.update(MIGRATOR_DEV="1", DATABASE_URL=f"sqlite:///{db}",
                   MIGRATOR_SFTP_KEY_FILE=str(server.key_path))  # fmt: skip
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True
        )
        source = server.url(root / set_name, hostkey=server.fingerprint)
        cmd = [sys.executable, "manage.py", "migrator_run", "--source", source,
               "--destination", dst.as_uri(), "--json"]  # fmt: skip
    seconds, rss_kib, cpu, out = run_tool(cmd, env)
    files = sum(1 for p in dst.rglob("*") if p.is_file())
    nbytes = sum(p.stat().st_size for p in dst.rglob("*") if p.is_file())
    row = {
        "set": set_name,
        "tool": tool,
        "seconds": round(seconds, 2),
        "files": files,
        "files_s": round(files / seconds),
        "mb_s": round(nbytes / 1e6 / seconds, 1),
        "rss_mb": rss_kib // 1024,
        "cpu_s": round(cpu, 1),
        "load": round(os.getloadavg()[0], 1),  # the machine is shared: say how busy it was
    }
    if tool == "migrator":
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["state"] == "completed" and summary["copied"] == files, summary
    shutil.rmtree(dst, ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--folders", type=int, default=20)
    ap.add_argument("--large-mb", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sets", default="small,large")
    ap.add_argument("--work", default=None, help="where the copies land (default: a temp dir)")
    args = ap.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    env_base = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    work = Path(tempfile.mkdtemp(prefix="migrator-sftp-bench-", dir=args.work))
    served = Path(tempfile.mkdtemp(prefix="mg-sftp-bench-"))
    rows = []
    proc, server = sftp.start_sshd(served)
    try:
        started = time.monotonic()
        root = build(server, args.small, args.folders, args.large_mb, sets)
        print(f"data ready in {time.monotonic() - started:.1f}s", flush=True)
        for set_name in sets:
            for _ in range(args.repeat):
                for tool in ("rclone", "migrator"):
                    rows.append(run_once(tool, set_name, server, root, work, env_base))
    finally:
        sftp.stop_sshd(proc, server)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(served, ignore_errors=True)
    print(f"\n{platform.node()} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d %H:%M')}")
    print("\n| set | run | migrator s | files/s | MB/s | RSS MB | CPU s "
          "| rclone s | files/s | MB/s | RSS MB | CPU s | ratio | load |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for set_name in sets:
        by_tool = {t: [x for x in rows if x["set"] == set_name and x["tool"] == t]
                   for t in ("migrator", "rclone")}  # fmt: skip
        for i in range(args.repeat):
            m, r = by_tool["migrator"][i], by_tool["rclone"][i]
            cells = [set_name, i + 1]
            for x in (m, r):
                cells += [x["seconds"], x["files_s"], x["mb_s"], x["rss_mb"], x["cpu_s"]]
            cells.append(f"{r['seconds'] / m['seconds']:.2f}x")
            cells.append(f"{r['load']}/{m['load']}")
            print("| " + " | ".join(str(c) for c in cells) + " |")
    print("\nratio: rclone's seconds / migrator's (above 1: migrator faster)")


if __name__ == "__main__":
    main()
