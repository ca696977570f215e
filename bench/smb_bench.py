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
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from copy_bench import build, byte_compile  # noqa: E402 - the same data set and set-up

from tests.servers import samba  # noqa: E402 - after the path is set

SHARE = samba.BENCH_SHARE  # reads served synchronously: see its comment
FOLDER = "bench-smb"


def run_tool(cmd: list[str], env: dict) -> tuple[float, int, float, str]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system) of `cmd` alone: a
    small python parent waits for it with wait4 and reports its rusage; stdout."""
    probe = (
        "import os,subprocess,sys,json,time;"
        "t=time.monotonic();p=subprocess.Popen(sys.argv[1:]);_,s,u=os.wait4(p.pid,0);"
        "e=time.monotonic()-t;"
        "sys.stderr.write(json.dumps([os.waitstatus_to_exitcode(s),e,u.ru_maxrss,"
        "u.ru_utime+u.ru_stime])+'\\n')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *cmd], cwd=REPO, env=env, capture_output=True, text=True
    )
    code, seconds, rss, cpu = json.loads(proc.stderr.strip().splitlines()[-1])
    if code:
        raise SystemExit(f"{cmd[0]} failed ({code}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return seconds, rss, cpu, proc.stdout


def run_once(tool: str, set_name: str, dc, work: Path, env_base: dict) -> dict:
    dst = work / f"{set_name}-{tool}"
    shutil.rmtree(dst, ignore_errors=True)
    password = dc.admin_password
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
        env = dict(env_base)
    else:
        db = work / f"{set_name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        env = {
            **env_base,
            "MIGRATOR_DEV": "1",
            "DATABASE_URL": f"sqlite:///{db}",
            "MIGRATOR_SMB_PASSWORD": password,
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True
        )
        source = dc.smb_url(SHARE, f"{FOLDER}/{set_name}")
        cmd = [sys.executable, "manage.py", "migrator_run", "--source", source,
               "--destination", dst.as_uri(), "--json"]  # fmt: skip
    subprocess.run(["sync"], check=False)
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
    ap.add_argument("--small", type=int, default=20_000)
    ap.add_argument("--folders", type=int, default=200)
    ap.add_argument("--large", type=int, default=4)
    ap.add_argument("--large-mb", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sets", default="small,large")
    ap.add_argument("--work", default=None, help="where the copies land (default: a temp dir)")
    args = ap.parse_args()
    sets = [s for s in args.sets.split(",") if s]
    env_base = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    byte_compile()
    with samba.running_dc() as dc:
        data = dc.disk_path(SHARE, FOLDER)
        started = time.monotonic()
        build(data, args.small, args.folders, args.large, args.large_mb)
        print(f"data ready in {time.monotonic() - started:.1f}s at {data}", flush=True)
        work = Path(tempfile.mkdtemp(prefix="migrator-smb-bench-", dir=args.work))
        rows = []
        try:
            for set_name in sets:
                for _ in range(args.repeat):
                    for tool in ("rclone", "migrator"):
                        rows.append(run_once(tool, set_name, dc, work, env_base))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{platform.node()} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d %H:%M')}")
    print("\n| set | run | migrator s | files/s | MB/s | RSS MB | CPU s "
          "| rclone s | files/s | MB/s | RSS MB | CPU s | ratio | load |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for set_name in sets:
        by_tool = {t: [x for x in rows if x["set"] == set_name and x["tool"] == t]
                   for t in ("migrator", "rclone")}  # fmt: skip
        runs = [*range(args.repeat), "best"]
        for i in runs:
            m, r = (
                min(by_tool[t], key=lambda x: x["seconds"]) if i == "best" else by_tool[t][i]
                for t in ("migrator", "rclone")
            )
            cells = [set_name, i if i == "best" else i + 1]
            for x in (m, r):
                cells += [x["seconds"], x["files_s"], x["mb_s"], x["rss_mb"], x["cpu_s"]]
            cells.append(f"{r['seconds'] / m['seconds']:.2f}x")
            cells.append(f"{r['load']}/{m['load']}")
            print("| " + " | ".join(str(c) for c in cells) + " |")
    print("\nratio: rclone's seconds / migrator's (above 1: migrator faster); "
          "best: the fastest run of each tool")  # fmt: skip


if __name__ == "__main__":
    main()
