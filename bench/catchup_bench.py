#!/usr/bin/env python
"""Catch-up (delta) pass benchmark (issue 15). Run by hand, never in CI; results go to
bench/RESULTS.md.

    python bench/catchup_bench.py --files 1000000          # SQLite, the scale run
    python bench/catchup_bench.py --gcs 1500               # requests at a GCS emulator

Scale run: a synthetic source of N files. Pass 1 is scanned for real into the manifest
and then marked copied in one UPDATE (copying a million files is not what is measured).
Pass 2, the catch-up, runs for real through jobs.sink.pass_scan: each chunk classified
against pass 1's manifest, then the destination listed flat and compared with what pass
1 wrote. The destination's listing is the same synthetic tree (same names, sizes and
mtimes: what a finished copy leaves), so listing costs no disk. Prints entries/s of the
whole catch-up and how long its destination check took.

GCS run: a synthetic source of N files copied for real into gcp-storage-emulator, then a
catch-up pass, counting every HTTP request the catch-up sends to the emulator.
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


def _setup():
    import django

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "migrator.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _job(source_url: str, destination_url: str, options: dict | None = None):
    from accounts.models import Customer
    from jobs import services

    customer, _ = Customer.objects.get_or_create(name="bench")
    source = services.endpoint_create(name="src", url=source_url, customer=customer)
    destination = services.endpoint_create(name="dst", url=destination_url, customer=customer)
    return services.job_create(customer=customer, name="catch-up bench", source=source,
                               destination=destination, options=options or {})  # fmt: skip


def _new_pass(job):
    from jobs import services
    from jobs.models import MigrationJob, Pass

    job = MigrationJob.objects.get(pk=job.pk)
    services.job_start(job=job)
    services.customer_dispatch(customer_id=job.customer_id)
    return Pass.objects.filter(job=job).order_by("-number").first()


def scale_child(files: int) -> None:
    _setup()
    from django.db import connection
    from django.db.models import F

    from jobs import delta, sink
    from jobs.choices import JobState, PassState
    from jobs.dispatch import set_inline
    from jobs.models import FileItem, MigrationJob, Pass
    from migrator.storage.synthetic import SyntheticConnector

    set_inline(lambda func, args: None)  # nothing is copied: the scans are measured
    params = dict(files=files, folders=max(1, files // 1000), depth=2)
    url = "synthetic://?" + "&".join(f"{k}={v}" for k, v in params.items())
    job = _job(url, Path(tempfile.mkdtemp()).as_uri())

    first = _new_pass(job)
    start = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    sink.pass_scan(pass_id=first.pk)
    first_seconds = time.monotonic() - t0
    end = resource.getrusage(resource.RUSAGE_SELF)
    first_cpu = end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime
    # what a finished copy leaves: every pending row copied, the pass done
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {FileItem._meta.db_table} SET state = 'copied' "  # noqa: S608
            "WHERE job_pass_id = %s AND state = 'pending'",
            [first.pk],
        )
    Pass.objects.filter(pk=first.pk).update(
        copied=F("pending"), pending=0, bytes_done=F("bytes_seen"), state=PassState.DONE,
        delta_checked=True,
    )  # fmt: skip
    MigrationJob.objects.filter(pk=job.pk).update(state=JobState.COMPLETED)

    # the destination lists as the same tree (see the module's docstring)
    listing = {"seconds": 0.0}
    real_check = delta.destination_check

    def timed_check(**kwargs):
        t = time.monotonic()
        try:
            return real_check(**kwargs)
        finally:
            listing["seconds"] += time.monotonic() - t

    delta.open_endpoint = lambda endpoint: SyntheticConnector(**params)
    sink.delta.destination_check = timed_check

    second = _new_pass(job)
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    sink.pass_scan(pass_id=second.pk)
    seconds = time.monotonic() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    second.refresh_from_db()
    entries = second.seen + second.folders_seen
    print(json.dumps({
        "files": second.seen, "entries": entries,
        "first_scan_s": round(first_seconds, 2),
        "first_scan_entries_s": round(entries / first_seconds),
        "first_scan_cpu_s": round(first_cpu, 2),
        "catchup_s": round(seconds, 2), "catchup_entries_s": round(entries / seconds),
        "destination_check_s": round(listing["seconds"], 2),
        "unchanged": second.unchanged, "pending": second.pending,
        "conflicts": second.conflicts, "new": second.delta_new,
        "changed": second.delta_changed, "batches": second.batches_total,
        "delta_checked": second.delta_checked,
        "cpu_s": round(usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime, 2),
        "rss_mb": usage.ru_maxrss // 1024,
    }))  # fmt: skip


def gcs_child(files: int, emulator: str) -> None:
    os.environ["STORAGE_EMULATOR_HOST"] = emulator
    _setup()
    import importlib

    import requests
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from jobs.dispatch import set_inline
    from jobs.models import Pass

    queue: list = []
    set_inline(lambda func, args: queue.append((func, args)))

    def run_all() -> None:
        while queue:
            func, args = queue.pop(0)
            module, _, name = func.rpartition(".")
            getattr(importlib.import_module(module), name)(*args)

    bucket = "catchup-bench"
    storage.Client(project="bench", credentials=AnonymousCredentials()).create_bucket(bucket)
    url = f"synthetic://?files={files}&folders={max(1, files // 100)}&depth=2"
    job = _job(url, f"gs://{bucket}/m", {"profile": "posix"})
    t0 = time.monotonic()
    _new_pass(job)
    run_all()
    first_seconds = time.monotonic() - t0
    first = Pass.objects.filter(job=job).order_by("-number").first()

    sent: list[str] = []
    original = requests.Session.request

    def counted(self, method, url, *args, **kwargs):
        sent.append(f"{method} {url.split('?')[0]}")
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = counted
    t0 = time.monotonic()
    _new_pass(job)
    run_all()
    seconds = time.monotonic() - t0
    requests.Session.request = original
    second = Pass.objects.filter(job=job).order_by("-number").first()
    listing = [r for r in sent if r.endswith(f"/b/{bucket}/o")]
    per_object = [r for r in sent if f"/b/{bucket}/o/" in r or "/upload/" in r]
    print(json.dumps({
        "files": second.seen, "first_copied": first.copied, "first_s": round(first_seconds, 2),
        "catchup_s": round(seconds, 2), "unchanged": second.unchanged,
        "copied": second.copied, "requests": len(sent), "listing_requests": len(listing),
        "per_object_requests": len(per_object),
        "requests_per_1000_files": round(len(sent) * 1000 / max(second.seen, 1), 2),
        "request_kinds": sorted(set(sent)),
    }))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--gcs", type=int, default=0, help="files, against the GCS emulator")
    ap.add_argument("--child", choices=["scale", "gcs"])
    ap.add_argument("--emulator", default="")
    args = ap.parse_args()
    if args.child == "scale":
        scale_child(args.files)
        return
    if args.child == "gcs":
        gcs_child(args.gcs, args.emulator)
        return
    env = {**os.environ, "MIGRATOR_DEV": "1"}
    folder = tempfile.mkdtemp(prefix="catchup-bench-")
    env["DATABASE_URL"] = f"sqlite:///{Path(folder) / 'db.sqlite3'}"
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    emulator = None
    try:
        command = [sys.executable, __file__]
        if args.gcs:
            sys.path.insert(0, str(REPO))
            from tests.servers.gcs import _stop, start_emulator

            emulator, url = start_emulator(Path(folder) / "emulator.log")
            command += ["--child", "gcs", "--gcs", str(args.gcs), "--emulator", url]
        else:
            command += ["--child", "scale", "--files", str(args.files)]
        out = subprocess.run(command, env=env, capture_output=True, text=True)
    finally:
        if emulator is not None:
            _stop(emulator)
        shutil.rmtree(folder, ignore_errors=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    line = next(line for line in out.stdout.splitlines() if line.startswith("{"))
    result = json.loads(line)
    result.update(db="sqlite", load=round(load, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
