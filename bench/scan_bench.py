#!/usr/bin/env python
"""Scan-and-plan benchmark: N synthetic entries into the manifest (rows, counters,
batches), on SQLite and on PostgreSQL; entries/s and peak RSS of the process.
Run by hand, never in CI; results go to bench/RESULTS.md.

    python bench/scan_bench.py --files 1000000 --db sqlite
    python bench/scan_bench.py --files 1000000 --db postgres   # needs a local PostgreSQL
    python bench/scan_bench.py --files 1000000 --db postgres --explain

--explain then runs the hot paths over that manifest (copy batches at its start, middle
and end, the lease reaper, the accounting check, admin and report pages) and prints
every distinct query they sent with its calls, time and plan (EXPLAIN ANALYZE on
PostgreSQL, EXPLAIN QUERY PLAN on SQLite).
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


def child(files: int, explain: bool = False) -> None:
    import django

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "migrator.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import Customer
    from jobs import services, sink
    from jobs.dispatch import set_inline
    from jobs.models import Pass

    set_inline(lambda func, args: None)  # scan only: copies are run by --explain alone
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
    sink.pass_scan(pass_id=job_pass.pk)
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
    if explain:
        explain_hot_queries(job, job_pass)


def explain_hot_queries(job, job_pass) -> None:
    """Every distinct query of the hot paths over this manifest, with its plan."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test import Client
    from django.urls import reverse

    from jobs import selectors, services, sink
    from jobs.models import Batch

    seen: dict[str, list] = {}  # sql -> [calls, example params, where]
    where = ""

    def record(execute, sql, params, many, context):
        if many:
            params = list(params)
        entry = seen.setdefault(sql, [0, params[0] if many else params, where])
        entry[0] += len(params) if many else 1
        return execute(sql, params, many, context)

    batches = list(
        Batch.objects.filter(job_pass=job_pass).order_by("pk").values_list("pk", flat=True)
    )
    user = get_user_model().objects.create_superuser("bench", "bench@example.test", "x" * 20)
    client = Client(SERVER_NAME="localhost")  # one of the default ALLOWED_HOSTS
    client.force_login(user)
    manifest = reverse("admin:jobs_migrationjob_manifest", args=[job.pk])
    report = lambda name: reverse("reports:job_report", args=[job.pk, name])  # noqa: E731
    middle = job_pass.seen // 2
    pages = [
        (reverse("admin:jobs_migrationjob_changelist"), {}),
        (reverse("admin:jobs_migrationjob_change", args=[job.pk]), {}),
        (reverse("admin:jobs_migrationjob_live", args=[job.pk]), {}),
        (manifest, {}), (manifest, {"state": "failed"}), (manifest, {"prefix": "d05/"}),
        (manifest, {"after": str(middle)}),
        (report("summary"), {}), (report("files"), {}), (report("files"), {"sort": "path"}),
        (report("files"), {"prefix": "d05/d05/"}), (report("errors"), {}),
        (reverse("reports:search"), {"q": "d05/d05/f"}),
    ]  # fmt: skip
    with connection.execute_wrapper(record):
        for pk in (batches[0], batches[len(batches) // 2], batches[-1]):
            where = "copy batch"
            sink.batch_copy(batch_id=pk)
        where = "lease reaper"
        services.leases_reap()
        where = "accounting check"
        selectors.manifest_truth(pass_id=job_pass.pk)
        for url, params in pages:
            where = f"page {url}"
            assert client.get(url, params).status_code == 200, url
    explain = "EXPLAIN ANALYZE " if connection.vendor == "postgresql" else "EXPLAIN QUERY PLAN "
    report = []
    for sql, (calls, params, place) in seen.items():
        if sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN")):
            continue
        with transaction.atomic():  # run once more, every row fetched, then undone
            with connection.cursor() as cursor:
                start = time.perf_counter()
                cursor.execute(sql, params)
                if cursor.description:
                    cursor.fetchall()
                once = time.perf_counter() - start
                cursor.execute(explain + sql, params)
                plan = [row[-1] for row in cursor.fetchall()]
            transaction.set_rollback(True)
        report.append((once, calls, place, sql, params, plan))
    print(f"\n## Hot queries over {job_pass.seen + job_pass.folders_seen:,} manifest rows "
          f"({connection.vendor}), slowest first\n")  # fmt: skip
    for once, calls, place, sql, params, plan in sorted(report, key=lambda r: -r[0]):
        tail = f" … `{sql[-200:]}`" if len(sql) > 300 else ""
        print(f"- {place}: {once * 1000:.2f} ms (all rows fetched), {calls} call(s) in the run")
        print(f"  `{sql[:300]}`{tail} {str(params)[:200]}")
        for line in plan:
            print(f"    {line}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--explain", action="store_true")
    ap.add_argument("--child", action="store_true")
    args = ap.parse_args()
    if args.child:
        child(args.files, args.explain)
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
        command = [sys.executable, __file__, "--child", "--files", str(args.files)]
        out = subprocess.run(command + ["--explain"] * args.explain, env=env, capture_output=True,
                             text=True)  # fmt: skip
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    lines = out.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("{"))
    result, plans = json.loads(lines[at]), "\n".join(lines[at + 1 :])
    result.update(db=args.db, load=round(load, 1))
    print(json.dumps(result))
    if plans:
        print(plans)


if __name__ == "__main__":
    main()
