#!/usr/bin/env python
"""Copy benchmark: migrator_run (file→file, manifest kept) against rclone copy and cp -a on
the same data, in one run. Run by hand (`make bench`), never in CI; results go to
bench/RESULTS.md with the machine and date.

    python bench/copy_bench.py [--small 20000] [--folders 200] [--large 4] [--large-mb 256]
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
# ext4 without a journal (this machine's disk) will not reuse an inode freed in the last
# 60 s (360 s while its inode block is dirty): creating a file walks past them all. Right
# after 10,000 files were deleted a create cost 400 µs instead of 53 µs (perf: ext4_create
# -> recently_deleted, 60% of samples). So no tool's output is deleted before the next
# tool runs, and a run starts after a sync and a pause.
SETTLE_SECONDS = 65


def build(root: Path, small: int, folders: int, large: int, large_mb: int) -> None:
    marker = root / f".built-{small}-{folders}-{large}-{large_mb}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(1)
    for i in range(small):
        folder = root / "small" / f"dir{i % folders:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{i:06d}.txt").write_bytes(rng.randbytes(rng.randint(1024, 4096)))
    (root / "large").mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    for i in range(large):
        with open(root / "large" / f"big{i}.bin", "wb") as f:
            for j in range(large_mb):
                f.write(block[j % 7 :] + block[: j % 7])
    marker.touch()


def byte_compile() -> None:
    """Byte-compile the project, as installing an application does: this machine sets
    PYTHONDONTWRITEBYTECODE=1, so otherwise every migrator_run compiles the project's
    modules again (measured: 0.15 s of each start)."""
    dirs = ["migrator", "jobs", "accounts", "reports"]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], cwd=REPO, check=True)


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, float, str]:
    """Wall seconds, peak RSS (KiB), CPU seconds (user + system), stdout."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) not in (0,):
        raise SystemExit(f"{cmd[0]} failed: {out[-2000:]}")
    return elapsed, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, out


TOOLS = ("cp", "rclone", "migrator")


def run_set(
    name: str, src: Path, work: Path, files: int, nbytes: int, round_: int = 0
) -> list[dict]:
    """Each tool once; the order turns with the round, so no tool always goes first (the
    first writer on fresh memory and a cold disk pays more here)."""
    rows = []
    order = TOOLS[round_ % 3 :] + TOOLS[: round_ % 3]
    for tool in order:
        dst = work / f"{name}-{tool}-{round_}"
        shutil.rmtree(dst, ignore_errors=True)
        subprocess.run(["sync"], check=False)
        if tool == "cp":
            cmd = ["cp", "-a", str(src), str(dst)]
            env = None
        elif tool == "rclone":
            cmd = ["rclone", "copy", str(src), str(dst), "--transfers", "8", "--checkers", "8"]
            env = None
        else:
            db = work / f"{name}-{round_}.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            env = {**os.environ, "MIGRATOR_DEV": "1", "DATABASE_URL": f"sqlite:///{db}"}
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env,
                           check=True)  # fmt: skip
            cmd = [sys.executable, "manage.py", "migrator_run", "--source", src.as_uri(),
                   "--destination", dst.as_uri(), "--json"]  # fmt: skip
        load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
        seconds, rss, cpu, out = timed(cmd, env)
        row = {
            "set": name,
            "round": round_,
            "tool": tool,
            "seconds": round(seconds, 2),
            "cpu_s": round(cpu, 2),
            "load": round(load, 1),
            "rss_mb": rss // 1024,
            "files_s": round(files / seconds),
            "mb_s": round(nbytes / 1e6 / seconds, 1),
        }
        if tool == "migrator":
            summary = json.loads(out.strip().splitlines()[-1])
            assert summary["copied"] == files and summary["state"] == "completed", summary
        rows.append(row)
        print(json.dumps(row), flush=True)
        # destinations are kept until the end: see SETTLE_SECONDS
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=20_000)
    ap.add_argument("--folders", type=int, default=200)
    ap.add_argument("--large", type=int, default=4)
    ap.add_argument("--large-mb", type=int, default=256)
    ap.add_argument("--data", default=str(REPO / "bench" / "data"))
    ap.add_argument("--rounds", type=int, default=3, help="runs of each tool, order turning")
    ap.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                    help="seconds to wait before the first tool (see SETTLE_SECONDS)")  # fmt: skip
    args = ap.parse_args()
    data = Path(args.data)
    byte_compile()
    build(data, args.small, args.folders, args.large, args.large_mb)
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-", dir=data.parent))
    subprocess.run(["sync"], check=False)
    time.sleep(args.settle)  # past the window of files deleted just before (another run)
    small_bytes = sum(p.stat().st_size for p in (data / "small").rglob("*") if p.is_file())
    large_bytes = sum(p.stat().st_size for p in (data / "large").iterdir())
    rows = []
    for round_ in range(args.rounds):
        rows += run_set("small", data / "small", work, args.small, small_bytes, round_)
        if args.large:
            rows += run_set("large", data / "large", work, args.large, large_bytes, round_)
    shutil.rmtree(work, ignore_errors=True)
    by = {}  # the median run of each tool and set
    for key in {(r["set"], r["tool"]) for r in rows}:
        runs = sorted((r for r in rows if (r["set"], r["tool"]) == key), key=lambda r: r["seconds"])
        by[key] = runs[len(runs) // 2]
    print(f"\n{platform.node()} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d')} · "
          f"median of {args.rounds} round(s)")  # fmt: skip
    for name in ("small", "large") if args.large else ("small",):
        m, r, c = by[(name, "migrator")], by[(name, "rclone")], by[(name, "cp")]
        vs_rclone = r["seconds"] / m["seconds"] if m["seconds"] else 0.0
        vs_cp = c["seconds"] / m["seconds"] if m["seconds"] else 0.0
        print(
            f"{name}: migrator {m['files_s']} files/s {m['mb_s']} MB/s rss {m['rss_mb']} MB | "
            f"rclone {r['files_s']} files/s {r['mb_s']} MB/s | cp {c['files_s']} files/s "
            f"{c['mb_s']} MB/s | migrator/rclone {vs_rclone:.2f}x migrator/cp {vs_cp:.2f}x"
        )


if __name__ == "__main__":
    main()
