#!/usr/bin/env python
"""Continuous mode's change-to-destination latency (issue 15): a job in continuous mode
follows its source; single small files are created or modified at the source one at a
time, and each change's latency is the time from the end of its write at the source to
its new content being readable at the destination. p50/p95/p99 over --changes (200) per
source kind: a local folder (inotify) and a Samba share (SMB2 CHANGE_NOTIFY), both to a
local folder. Target p95 <= 2 s, goal <= 1 s. Run by hand, never in CI; the figures go
to bench/RESULTS.md.

    python bench/sync_bench.py [--changes 200] [--kinds local,smb]

The runner is the worker task's code (jobs.continuous.continuous_run) in a thread of this
process, on an SQLite database of its own, as the tests run it; what it enqueues runs
inline. The SMB source needs the Samba AD DC of tests/servers (started here, or shared
with a test session running it).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POLL = 0.002  # how often the destination is read while a change is awaited
GIVE_UP = 30.0  # seconds: a change not seen by then counts as this (and is reported)


def _setup(db: Path) -> None:
    import django

    sys.path.insert(0, str(REPO))
    os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ.setdefault("MIGRATOR_DEV", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "migrator.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _inline() -> list:
    """Tasks run in this process, in order (the runner itself is started by hand)."""
    from jobs.dispatch import set_inline

    queue: list = []

    def dispatch(func: str, args: tuple) -> None:
        if not func.endswith("continuous_run"):
            queue.append((func, args))

    set_inline(dispatch)
    return queue


def _drain(queue: list) -> None:
    import importlib

    while queue:
        func, args = queue.pop(0)
        module, _, name = func.rpartition(".")
        getattr(importlib.import_module(module), name)(*args)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def measure(kind: str, source_url: str, secret: str, write, dst: Path, changes: int) -> dict:
    """Make `changes` changes through `write(path, data)` and time each one's arrival."""
    from accounts.models import Customer
    from jobs import continuous, services
    from jobs.models import ContinuousState, MigrationJob

    queue = _inline()
    customer, _ = Customer.objects.get_or_create(name="sync bench")
    source = services.endpoint_create(name=f"{kind} src", url=source_url, customer=customer,
                                      secret=secret or None)  # fmt: skip
    destination = services.endpoint_create(name=f"{kind} dst", url=dst.as_uri(),
                                           customer=customer)  # fmt: skip
    job = services.job_create(customer=customer, name=f"sync bench {kind}", source=source,
                              destination=destination)  # fmt: skip
    for i in range(20):  # something for the first pass to copy
        write(f"seed/{i:03d}.txt", b"seed %d" % i)
    services.job_start(job=job)
    _drain(queue)
    job = MigrationJob.objects.get(pk=job.pk)
    assert job.state == "completed", job.state
    continuous.continuous_start(job=job)
    stop = threading.Event()
    runner = threading.Thread(
        target=continuous.continuous_run, kwargs={"job_id": job.pk, "stop": stop}, daemon=True
    )
    runner.start()
    deadline = time.monotonic() + 30
    while not ContinuousState.objects.get(job=job).watching_since:
        if time.monotonic() > deadline:
            raise SystemExit("the runner did not start watching")
        time.sleep(0.05)
    time.sleep(0.5)  # the watch is armed

    rng = random.Random(15)
    existing: list[str] = []
    latencies: list[float] = []
    late = 0
    try:
        for i in range(changes):
            if existing and rng.random() < 0.5:
                path, what = rng.choice(existing), "modified"
            else:
                path, what = f"d{i % 5}/new-{i:04d}.txt", "created"
                existing.append(path)
            data = f"{what} {i} {rng.random()}\n".encode() * rng.randint(1, 40)
            write(path, data)
            written = time.monotonic()
            target = dst / path
            while True:
                try:
                    if target.read_bytes() == data:
                        break
                except OSError:
                    pass
                if time.monotonic() - written > GIVE_UP:
                    late += 1
                    break
                time.sleep(POLL)
            latencies.append(time.monotonic() - written)
            time.sleep(rng.uniform(0.0, 0.05))  # a little time between people's saves
    finally:
        stop.set()
        runner.join(timeout=30)
    state = ContinuousState.objects.get(job=job)
    return {
        "kind": kind,
        "changes": changes,
        "p50_s": round(_percentile(latencies, 50), 3),
        "p95_s": round(_percentile(latencies, 95), 3),
        "p99_s": round(_percentile(latencies, 99), 3),
        "max_s": round(max(latencies), 3),
        "mean_s": round(statistics.fmean(latencies), 3),
        "not_seen": late,
        "changes_seen": state.changes_seen,
        "changes_applied": state.changes_applied,
        "load": round(os.getloadavg()[0], 1),
    }


def local_kind(work: Path, changes: int) -> dict:
    src = work / "local-src"
    src.mkdir()

    def write(path: str, data: bytes) -> None:
        target = src / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    return measure("local", src.as_uri(), "", write, work / "local-dst", changes)


def smb_kind(work: Path, changes: int) -> dict:
    from migrator.storage import Entry, connector_for
    from tests.servers import samba

    with samba.running_dc() as dc:
        folder = dc.make_folder("data")
        url = dc.smb_url("data", folder)
        with connector_for(url, dc.admin_password) as share:
            made: set[str] = set()

            def write(path: str, data: bytes) -> None:
                parent = path.rpartition("/")[0]
                if parent and parent not in made:
                    share.mkdir(parent)
                    made.add(parent)
                share.write(path, io.BytesIO(data), Entry(path, "file", len(data), time.time_ns()))

            return measure("smb", url, dc.admin_password, write, work / "smb-dst", changes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--kinds", default="local,smb")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    _setup(work / "db.sqlite3")
    rows = []
    try:
        for kind in [k for k in args.kinds.split(",") if k]:
            row = (local_kind if kind == "local" else smb_kind)(work, args.changes)
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{platform.node()} · {os.cpu_count()} cores · {time.strftime('%Y-%m-%d %H:%M')}")
    print("\n| source | changes | p50 s | p95 s | p99 s | max s | not seen | load |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['changes']} | {r['p50_s']} | {r['p95_s']} | {r['p99_s']} "
              f"| {r['max_s']} | {r['not_seen']} | {r['load']} |")  # fmt: skip


if __name__ == "__main__":
    main()
