#!/usr/bin/env python
"""Copy benchmark: migrator_run (file→file, manifest kept) against rclone copy and cp -a on
the same data, in one run. Run by hand (`make bench`), never in CI; results go to
bench/RESULTS.md with the machine and date.

    python bench/copy_bench.py [--small 20000] [--folders 200] [--large 4] [--large-mb 256]
                               [--md5] [--ab OLD_CHECKOUT]

A copy to a local folder hashes crc32c only (issue 16); `--md5` adds a `migrator-md5` run
(`migrator_run --hashes md5,crc32c`), as a job asking for md5 does. `--ab OLD_CHECKOUT` runs
only `migrator_run`, from this checkout and from OLD_CHECKOUT (another clone, the code to
compare with) in turn, into tmpfs (/dev/shm): no disk in the way, so only the code differs.
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


def byte_compile(repo: Path = REPO) -> None:
    """Byte-compile the project, as installing an application does: this machine sets
    PYTHONDONTWRITEBYTECODE=1, so otherwise every migrator_run compiles the project's
    modules again (measured: 0.15 s of each start)."""
    dirs = ["migrator", "jobs", "accounts", "reports"]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], cwd=repo, check=True)


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
MD5 = "migrator-md5"  # a job that asks for md5 as well (--hashes md5,crc32c)


def run_set(
    name: str,
    src: Path,
    work: Path,
    files: int,
    nbytes: int,
    round_: int = 0,
    tools: tuple[str, ...] = TOOLS,
    checkouts: dict[str, Path] | None = None,
) -> list[dict]:
    """Each tool once; the order turns with the round, so no tool always goes first (the
    first writer on fresh memory and a cold disk pays more here). `checkouts` names the
    repository each `migrator` tool runs from (the A/B of old and new code)."""
    rows = []
    turn = round_ % len(tools)
    order = tools[turn:] + tools[:turn]
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
            repo = (checkouts or {}).get(tool, REPO)
            db = work / f"{name}-{tool}-{round_}.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            env = {**os.environ, "MIGRATOR_DEV": "1", "DATABASE_URL": f"sqlite:///{db}"}
            if (REPO / ".env").exists():  # another checkout: this one's development settings
                env.setdefault("MIGRATOR_ENV_FILE", str(REPO / ".env"))
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=repo, env=env,
                           check=True)  # fmt: skip
            cmd = [sys.executable, str(repo / "manage.py"), "migrator_run", "--source",
                   src.as_uri(), "--destination", dst.as_uri(), "--json"]  # fmt: skip
            if tool == MD5:
                cmd += ["--hashes", "md5,crc32c"]
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
        if tool.startswith("migrator"):
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
    ap.add_argument("--md5", action="store_true", help="also migrator_run --hashes md5,crc32c")
    ap.add_argument("--ab", metavar="OLD_CHECKOUT", default=None,
                    help="only migrator_run: this checkout, then OLD_CHECKOUT; tmpfs")  # fmt: skip
    args = ap.parse_args()
    data = Path(args.data)
    if args.ab:
        return ab(args, data)
    byte_compile()
    build(data, args.small, args.folders, args.large, args.large_mb)
    work = Path(tempfile.mkdtemp(prefix="migrator-bench-", dir=data.parent))
    subprocess.run(["sync"], check=False)
    time.sleep(args.settle)  # past the window of files deleted just before (another run)
    small_bytes = sum(p.stat().st_size for p in (data / "small").rglob("*") if p.is_file())
    large_bytes = sum(p.stat().st_size for p in (data / "large").iterdir())
    rows = []
    tools = (*TOOLS, MD5) if args.md5 else TOOLS
    for round_ in range(args.rounds):
        rows += run_set("small", data / "small", work, args.small, small_bytes, round_, tools)
        if args.large:
            rows += run_set("large", data / "large", work, args.large, large_bytes, round_, tools)
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
        if args.md5:
            h = by[(name, MD5)]
            print(
                f"{name} with md5: migrator {h['files_s']} files/s {h['mb_s']} MB/s | "
                f"migrator/rclone {r['seconds'] / h['seconds']:.2f}x "
                f"migrator/cp {c['seconds'] / h['seconds']:.2f}x"
            )


def ab(args: argparse.Namespace, data: Path) -> None:
    """migrator_run from this checkout ("new") and from args.ab ("old"), alternating, the
    same data copied from and into tmpfs; prints every run and the medians."""
    old = Path(args.ab).resolve()
    checkouts = {"migrator": REPO, "migrator-old": old, MD5: REPO}
    for repo in {REPO, old}:
        byte_compile(repo)
    build(data, args.small, args.folders, args.large, args.large_mb)
    shm = Path(tempfile.mkdtemp(prefix="migrator-ab-", dir="/dev/shm"))
    try:
        shutil.copytree(data / "small", shm / "src" / "small")
        if args.large:
            shutil.copytree(data / "large", shm / "src" / "large")
        tools = ("migrator", "migrator-old", MD5) if args.md5 else ("migrator", "migrator-old")
        rows = []
        for round_ in range(args.rounds):
            for name, files in (("small", args.small), ("large", args.large)):
                if files:
                    src = shm / "src" / name
                    nbytes = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
                    rows += run_set(name, src, shm, files, nbytes, round_, tools, checkouts)
                    for tool in tools:  # tmpfs: nothing to settle, and memory to give back
                        shutil.rmtree(shm / f"{name}-{tool}-{round_}", ignore_errors=True)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    print(f"\n{platform.node()} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d %H:%M')} · "
          f"A/B on tmpfs, {args.rounds} round(s); old = {old}")  # fmt: skip
    for name in ("small", "large"):
        runs = {t: sorted(r["seconds"] for r in rows if (r["set"], r["tool"]) == (name, t))
                for t in tools}  # fmt: skip
        if not runs["migrator"]:
            continue
        med = {t: v[len(v) // 2] for t, v in runs.items()}
        print(f"{name}: old {runs['migrator-old']} new {runs['migrator']} "
              f"new/old (medians) {med['migrator'] / med['migrator-old']:.3f}")  # fmt: skip
        if args.md5:
            print(f"{name}: new with md5 {runs[MD5]} "
                  f"new-md5/old (medians) {med[MD5] / med['migrator-old']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
