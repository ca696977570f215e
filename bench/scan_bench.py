#!/usr/bin/env python
"""Scan-and-plan benchmark: N synthetic entries into the manifest (rows, counters,
batches), on SQLite and on PostgreSQL; entries/s and peak RSS of the process.
Run by hand, never in CI; results go to bench/RESULTS.md.

    python bench/scan_bench.py --files 1000000 --db sqlite
    python bench/scan_bench.py --files 1000000 --db postgres   # needs a local PostgreSQL
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/migrator_bench")


def child(files: int) -> None:
    import django

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "migrator.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import Customer
    from jobs import execution, services
    from jobs.dispatch import set_inline
    from jobs.models import Pass

    queued: list = []
    set_inline(lambda func, args: queued.append(func))  # scan only: copies are not run
    customer, _ = Customer.objects.get_or_create(name="bench")
    source = services.endpoint_create(
        name="synthetic", url=f"synthetic://?files={files}&folders={max(1, files // 1000)}&depth=2"
    )
    destination = services.endpoint_create(name="dst", url=Path(tempfile.mkdtemp()).as_uri())
    job = services.job_create(customer=customer, name="scan bench", source=source,
                              destination=destination)  # fmt: skip
    services.job_start(job=job)
    services.customer_dispatch(customer_id=customer.pk)
    job_pass = Pass.objects.get(job=job)
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    start = time.monotonic()
    execution.pass_scan(pass_id=job_pass.pk)
    seconds = time.monotonic() - start
    job_pass.refresh_from_db()
    entries = job_pass.seen + job_pass.folders_seen
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        "files": job_pass.seen, "entries": entries, "seconds": round(seconds, 2),
        "entries_s": round(entries / seconds), "batches": job_pass.batches_total,
        "rss_mb": usage.ru_maxrss // 1024,
        "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu_before, 2),  # this process only
    }))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.files)
        return
    env = {**os.environ, "MIGRATOR_DEV": "1"}
    folder = None
    if args.db == "sqlite":
        folder = tempfile.mkdtemp(prefix="scan-bench-")
        env["DATABASE_URL"] = f"sqlite:///{Path(folder) / 'db.sqlite3'}"
    else:
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists",
                        "migrator_bench"], check=True)  # fmt: skip
        subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", "migrator_bench"],
                       check=True)  # fmt: skip
        env["DATABASE_URL"] = PG_URL
    load = os.getloadavg()[0]  # the machine may be shared: say how busy it was
    try:
        out = subprocess.run([sys.executable, __file__, "--child", "--files", str(args.files)],
                             env=env, capture_output=True, text=True)  # fmt: skip
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.update(db=args.db, load=round(load, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
