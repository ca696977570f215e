#!/usr/bin/env python
"""The accounting check at a pass's end: the sums kept per unit of work (what
services.pass_finish compares now) against the GROUP BY over every row of the pass (the
slow verification, `manage.py accounting_verify`), over N manifest rows as a finished pass
leaves them, on SQLite and on PostgreSQL. Run by hand, never in CI; results go to
bench/RESULTS.md.

    python bench/accounting_bench.py --files 1000000 --db sqlite
    python bench/accounting_bench.py --files 1000000 --db postgres   # a local PostgreSQL

The rows go in as the scan writes them (jobs.manifest.insert_rows: COPY on PostgreSQL,
multi-row INSERT on SQLite) in chunks of 20,000 with a Tally row each, one Batch per 500
files with the files it recorded by state; a folder every 100 rows, a failure every 50,
an exclusion every 90. Each check is timed 3 times; the median is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/accounting_bench")
CHUNK = 20_000
BATCH = 500


def child(files: int) -> None:
    import django

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "migrator.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", verbosity=0)
    from accounts.models import Customer
    from jobs import selectors
    from jobs.manifest import insert_rows
    from jobs.models import Batch, Endpoint, MigrationJob, Pass, Tally
    from migrator.engine.scan import Row

    customer, _ = Customer.objects.get_or_create(name="bench")
    source = Endpoint.objects.create(customer=customer, name="s", url="synthetic://")
    destination = Endpoint.objects.create(customer=customer, name="d", url="null://")
    job = MigrationJob.objects.create(
        customer=customer, name="accounting bench", source=source, destination=destination
    )
    p = Pass.objects.create(job=job, number=1, scan_finished=True)
    totals = {"seen": 0, "copied": 0, "failed": 0, "excluded": 0}
    start = time.monotonic()
    for first in range(0, files, CHUNK):
        rows, chunk = [], {"copied": 0, "failed": 0, "excluded": 0}
        for i in range(first, min(first + CHUNK, files)):
            folder = f"share/d{i % 97:02d}"
            path, kind, state = f"{folder}/file-{i:07d}.dat", "file", "copied"
            if i % 100 == 99:
                path, kind = f"{folder}/sub-{i:07d}", "dir"
            elif i % 50 == 7:
                state = "failed"
            elif i % 90 == 11:
                state = "excluded"
            if kind == "file":
                chunk[state] += 1
            name = path.rpartition("/")[2]
            rows.append(Row(job.pk, p.pk, kind, path, path, 1000 + i, 0, state,
                            dest_key=path.casefold(), name_key=name))  # fmt: skip
        with transaction.atomic():
            insert_rows(rows)
            seen = sum(chunk.values())
            copied = chunk["copied"]
            # as the scan leaves them: copied files start pending, then their batches record
            Tally.objects.create(job_pass=p, unit="scan", seen=seen, pending=copied,
                                 failed=chunk["failed"], excluded=chunk["excluded"])  # fmt: skip
            Batch.objects.bulk_create(
                Batch(job=job, job_pass=p, first_id=rows[0].pk, last_id=rows[-1].pk,
                      files=n, files_copied=n, state="done")
                for n in [BATCH] * (copied // BATCH) + ([copied % BATCH] if copied % BATCH else [])
            )  # fmt: skip
        totals["seen"] += seen
        for k in chunk:
            totals[k] += chunk[k]
    Pass.objects.filter(pk=p.pk).update(**totals, folders_seen=files // 100)
    filled = time.monotonic() - start
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    p.refresh_from_db()
    results = {"db": connection.vendor, "rows": files, "fill_s": round(filled, 1),
               "tallies": Tally.objects.filter(job_pass=p).count(),
               "batches": Batch.objects.filter(job_pass=p).count()}  # fmt: skip
    for name, full in (("sums", False), ("group_by", True)):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            mismatch = selectors.accounting_mismatch(job_pass=p, full=full)
            times.append(time.perf_counter() - t)
            assert mismatch == {}, mismatch
        results[f"{name}_s"] = round(statistics.median(times), 4)
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.files)
        return
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "sqlite":
            env["DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
        else:
            name = PG_URL.rsplit("/", 1)[1]
            admin = PG_URL.rsplit("/", 1)[0] + "/postgres"
            for sql in (f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}"):
                subprocess.run(["psql", admin, "-qc", sql], check=True)
            env["DATABASE_URL"] = PG_URL
        cmd = [sys.executable, __file__, "--child", "--files", str(args.files)]
        subprocess.run(cmd, cwd=REPO, env=env, check=True)


if __name__ == "__main__":
    main()
