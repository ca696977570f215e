"""What the rclone-against-migrator benchmarks share (smb_bench, s3_bench, sftp_bench, …):
the measurement of one process, a migrator_run on a fresh SQLite database, one timed run
turned into a row, the alternating rounds and the summary table. Run by hand, never in CI.

A benchmark script in bench/ imports it as `from _common import …` (Python puts the
script's folder first on sys.path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("rclone", "migrator")  # the order of each round: rclone first, as it always was


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


def clean_env(*prefixes: str) -> dict:
    """This process's environment without the variables that start with `prefixes`
    (MIGRATOR_ always), so no setting of the caller's leaks into a measured run."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATOR_", *prefixes))}


def migrator_cmd(work: Path, set_name: str, env: dict, source: str, dst: Path) -> list[str]:
    """A fresh SQLite database for `set_name` in `work`, migrated (sets DATABASE_URL and
    MIGRATOR_DEV in `env`), and the migrator_run command from `source` into `dst`."""
    db = work / f"{set_name}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env.update(MIGRATOR_DEV="1", DATABASE_URL=f"sqlite:///{db}")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    return [sys.executable, "manage.py", "migrator_run", "--source", source,
            "--destination", dst.as_uri(), "--json"]  # fmt: skip


def measure(
    tool: str,
    set_name: str,
    cmd: list[str],
    env: dict,
    dst: Path,
    after: Callable[[], dict] | None = None,
) -> dict:
    """Run `cmd` once and return its row (also printed as a JSON line): seconds, files and
    bytes found in `dst`, rates, peak RSS, CPU and the load average. `after()` adds fields
    measured once the run ended (before the load). A migrator run must say it completed
    and copied every file. `dst` is removed afterwards."""
    seconds, rss_kib, cpu, out = run_tool(cmd, env)
    extra = after() if after else {}
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
        **extra,
        "load": round(os.getloadavg()[0], 1),  # the machine is shared: say how busy it was
    }
    if tool == "migrator":
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["state"] == "completed" and summary["copied"] == files, summary
    shutil.rmtree(dst, ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def alternate(sets: Iterable[str], repeat: int, run_once: Callable[[str, str], dict]) -> list[dict]:
    """`run_once(tool, set_name)` for each set, `repeat` times, the tools alternating, so
    both see the same page cache and the same neighbours on a shared machine."""
    rows = []
    for set_name in sets:
        for _ in range(repeat):
            for tool in TOOLS:
                rows.append(run_once(tool, set_name))
    return rows


def add_args(ap: argparse.ArgumentParser, *, small: int, folders: int) -> None:
    """The options every such benchmark takes: the data set's size, the rounds, the sets,
    where the copies land."""
    ap.add_argument("--small", type=int, default=small)
    ap.add_argument("--folders", type=int, default=folders)
    ap.add_argument("--large-mb", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sets", default="small,large")
    ap.add_argument("--work", default=None, help="where the copies land (default: a temp dir)")


def machine_line() -> str:
    return f"{platform.node()} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d %H:%M')}"


def print_table(
    rows: list[dict],
    sets: Iterable[str],
    repeat: int,
    *,
    columns: tuple[tuple[str, Callable[[dict], object]], ...] = (),
    best: bool = False,
) -> None:
    """The summary: a line per set and run, migrator's figures then rclone's, the ratio of
    their seconds and the load each saw. `columns` adds (header, cell of a row) to each
    tool's figures; `best` adds a line of each tool's fastest run."""
    print(f"\n{machine_line()}")
    per_tool = ["s", "files/s", "MB/s", "RSS MB", "CPU s", *(h for h, _ in columns)]
    heads = [f"migrator {per_tool[0]}", *per_tool[1:], f"rclone {per_tool[0]}", *per_tool[1:]]
    heads = ["set", "run", *heads, "ratio", "load"]
    print("\n| " + " | ".join(heads) + " |")
    print("|" + "---|" * len(heads))
    for set_name in sets:
        by_tool = {t: [x for x in rows if x["set"] == set_name and x["tool"] == t] for t in TOOLS}
        runs: list[int | str] = [*range(repeat), *(["best"] if best else [])]
        for i in runs:
            m, r = (
                min(by_tool[t], key=lambda x: x["seconds"]) if i == "best" else by_tool[t][i]
                for t in ("migrator", "rclone")
            )
            cells = [set_name, i if i == "best" else i + 1]
            for x in (m, r):
                cells += [x["seconds"], x["files_s"], x["mb_s"], x["rss_mb"], x["cpu_s"]]
                cells += [cell(x) for _, cell in columns]
            cells.append(f"{r['seconds'] / m['seconds']:.2f}x")
            cells.append(f"{r['load']}/{m['load']}")
            print("| " + " | ".join(str(c) for c in cells) + " |")
    note = "; best: the fastest run of each tool" if best else ""
    print(f"\nratio: rclone's seconds / migrator's (above 1: migrator faster){note}")
