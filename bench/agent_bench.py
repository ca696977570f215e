#!/usr/bin/env python
"""Agent benchmark: 20,000 small files local → local through the on-premises agent and
the server's agent API, against migrator_run on the same data in the same run (rounds
alternate which goes first). Reports files/s of each, the ratio, and the agent's HTTP
requests per 1,000 files. Run by hand, never in CI; results go to bench/RESULTS.md.

    python bench/agent_bench.py [--small 20000] [--folders 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.copy_bench import REPO, build, byte_compile, timed  # noqa: E402
from tests.servers.util import free_port, stop_group, wait_for_port  # noqa: E402

SETUP = """
import json
from accounts.models import Customer
from jobs import services
c, _ = Customer.objects.get_or_create(name="Agent bench")
pool = services.agent_pool_create(customer=c, name="bench")
s = services.endpoint_create(name="src", url={src!r}, customer=c)
d = services.endpoint_create(name="dst", url={dst!r}, customer=c)
job = services.job_create(customer=c, name="bench", source=s, destination=d, agent_pool=pool)
print(json.dumps({{"job": job.pk, "code": services.enrollment_code_create(pool=pool)}}))
"""


def migrated(db: Path) -> dict[str, str]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    env = {
        **os.environ,
        "MIGRATOR_DEV": "1",
        "DATABASE_URL": f"sqlite:///{db}",
        "MIGRATOR_AGENT_POLL_SECONDS": "1",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    return env


def run_cli(src: Path, dst: Path, work: Path, files: int) -> dict:
    env = migrated(work / "cli.sqlite3")
    seconds, rss, cpu, out = timed(
        [
            sys.executable,
            "manage.py",
            "migrator_run",
            "--source",
            src.as_uri(),
            "--destination",
            dst.as_uri(),
            "--json",
        ],
        env,
    )
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["copied"] == files and summary["state"] == "completed", summary
    return {"tool": "migrator_run", "seconds": round(seconds, 2), "files_s": round(files / seconds)}


def run_agent(src: Path, dst: Path, work: Path, files: int) -> dict:
    db = work / "agent.sqlite3"
    env = migrated(db)
    port = free_port()
    log = (work / "server.log").open("ab")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, proc=server, timeout=60)
        made = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                SETUP.format(src=src.as_uri(), dst=dst.as_uri()),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        setup = json.loads(made.stdout.strip().splitlines()[-1])
        agent_env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(work)}
        config = work / "agent" / "agent.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "migrator.agent",
                "--config",
                str(config),
                "enroll",
                "--server",
                f"http://127.0.0.1:{port}",
                "--code",
                setup["code"],
            ],
            env=agent_env,
            check=True,
            capture_output=True,
        )
        start_job = (
            "from jobs import services; from jobs.models import MigrationJob; "
            f"services.job_start(job=MigrationJob.objects.get(pk={setup['job']}))"
        )
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", start_job], cwd=REPO, env=env, check=True
        )
        started = time.monotonic()
        agent = subprocess.run(
            [
                sys.executable,
                "-m",
                "migrator.agent",
                "--config",
                str(config),
                "run",
                "--idle-exit",
                "1",
            ],
            env=agent_env,
            capture_output=True,
            text=True,
        )
        with sqlite3.connect(db) as conn:
            for _ in range(120):  # the job ends once the cluster has finished the pass
                state = conn.execute("SELECT state, finished_at FROM jobs_migrationjob").fetchone()
                if state[0] in ("completed", "completed_with_errors", "failed"):
                    break
                time.sleep(0.25)
        seconds = time.monotonic() - started - 1  # less the --idle-exit wait at the end
        copied = conn.execute("SELECT copied FROM jobs_pass").fetchone()[0]
        assert state[0] == "completed" and copied == files, (state, copied, agent.stderr[-2000:])
        requests = json.loads(agent.stdout.strip().splitlines()[-1])["requests"]
    finally:
        stop_group(cluster)
        stop_group(server)
    return {
        "tool": "agent",
        "seconds": round(seconds, 2),
        "files_s": round(files / seconds),
        "requests": requests,
        "requests_per_1000_files": round(requests * 1000 / files, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO / "bench" / "data")
    args = parser.parse_args()
    byte_compile()
    build(args.data, args.small, args.folders, 0, 0)
    src = args.data / "small"
    print(
        json.dumps(
            {
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "files": args.small,
            }
        )
    )
    rows = []
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="agent-bench-", dir=REPO / "bench") as tmp:
            work = Path(tmp)
            order = [run_cli, run_agent] if round_ % 2 == 0 else [run_agent, run_cli]
            for run in order:
                dst = work / f"dst-{run.__name__}"
                row = {"round": round_, **run(src, dst, work, args.small)}
                rows.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(dst, ignore_errors=True)
    cli = statistics.median(r["files_s"] for r in rows if r["tool"] == "migrator_run")
    agent = statistics.median(r["files_s"] for r in rows if r["tool"] == "agent")
    per = statistics.median(r["requests_per_1000_files"] for r in rows if r["tool"] == "agent")
    print(
        json.dumps(
            {
                "median_files_s": {"migrator_run": cli, "agent": agent},
                "agent_vs_migrator_run": round(agent / cli, 2),
                "requests_per_1000_files": per,
            }
        )
    )


if __name__ == "__main__":
    main()
