#!/usr/bin/env python
"""Scale benchmark, end to end (issue 16): a job of N files from `synthetic://` to
`null://` run through the real services, tasks and workers (`manage.py qcluster`
processes), with a web process (gunicorn) serving the report pages while it runs.
Run by hand, never in CI; results go to bench/RESULTS.md.

    python bench/scale_bench.py --files 1000000 --db postgres   # PostgreSQL + Redis, 2 clusters
    python bench/scale_bench.py --files 1000000 --db sqlite     # embedded: SQLite + ORM broker
    python bench/scale_bench.py --files 10000000 --db postgres

Measures: peak RSS of every process (web, each cluster's processes, the CLI processes),
from /proc; files/s and time per file through the whole pipeline (job_start to the job's
end: scan, plan, lease, copy to null://, record, finish); the report pages' times through
the web process (during and after the run) and their query counts over the finished job;
the files CSV streamed through the web process (rows/s, the web's RSS while it streams);
the accounting check's time; EXPLAIN of the files report sorted by path (PostgreSQL).

PostgreSQL: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432), database --name
(default migrator_scale, dropped and made again); Redis: BENCH_REDIS_URL (default
redis://127.0.0.1:6379), database --redis-db (default 5, flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_SERVER = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
PG_DB = "migrator_scale"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
PASS_FIELDS = ("seen", "copied", "unchanged", "excluded", "failed", "pending", "folders_seen",
               "batches")  # fmt: skip
ENDED = ("completed", "completed_with_errors", "failed", "cancelled")


# --- the pages measured: (label, url name, args after the job id, query) ----------------------

PAGES = [
    ("summary", "reports:job", (), ""),
    ("files", "reports:job_report", ("files",), ""),
    ("files by path", "reports:job_report", ("files",), "sort=path"),
    ("files by path, page 2", "reports:job_report", ("files",), "sort=path&cursor={path_cursor}"),
    ("files, later page", "reports:job_report", ("files",), "cursor={id_cursor}"),
    ("files, prefix", "reports:job_report", ("files",), "prefix=d1/"),
    ("errors", "reports:job_report", ("errors",), ""),
    ("renames", "reports:job_report", ("renames",), ""),
    ("events", "reports:job_report", ("events",), ""),
    ("permissions", "reports:job_report", ("permissions",), ""),
    ("passes", "reports:job_report", ("passes",), ""),
    ("live", "reports:job_live", (), ""),
    ("portal job", "portal:job", (), ""),
    ("portal jobs", "portal:jobs", None, ""),
    ("admin job", "admin:jobs_migrationjob_change", (), ""),
    ("admin manifest", "admin:jobs_migrationjob_manifest", (), ""),
]


# --- child processes: Django set up on the benchmark's database ------------------------------


def django_setup() -> None:
    import django

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "migrator.settings")
    django.setup()


def child_setup(files: int) -> None:
    """The job (not started), a staff user and a session for the web process."""
    django_setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    from accounts.models import Customer
    from jobs import services

    customer, _ = Customer.objects.get_or_create(name="scale bench")
    folders = max(1, files // 1000)
    source = services.endpoint_create(
        name="synthetic", customer=customer,
        url=f"synthetic://?files={files}&folders={folders}&depth=2&min_size=256&max_size=1024",
    )  # fmt: skip
    destination = services.endpoint_create(name="null", url="null://bench", customer=customer)
    job = services.job_create(customer=customer, name=f"scale {files}", source=source,
                              destination=destination)  # fmt: skip
    user = get_user_model().objects.create_superuser("bench", "bench@example.test", "pw-Bench-1x")
    client = Client()
    client.force_login(user)
    print(json.dumps({"job": job.pk, "cookie": client.cookies["sessionid"].value}))


def child_login() -> None:
    """A session of the benchmark's staff user, for a job benchmarked before."""
    django_setup()
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench"))
    print(json.dumps({"cookie": client.cookies["sessionid"].value}))


def child_start(job_id: int) -> None:
    django_setup()
    from jobs import services
    from jobs.models import MigrationJob

    services.job_start(job=MigrationJob.objects.get(pk=job_id))
    print(json.dumps({"started": time.time()}))


def page_urls(job, cursors: dict) -> list[tuple[str, str]]:
    from django.urls import reverse

    urls = []
    for label, name, args, query in PAGES:
        url = reverse(name) if args is None else reverse(name, args=[job.pk, *args])
        if query:
            url += "?" + query.format(**cursors)
        urls.append((label, url))
    return urls


def cursors_of(job) -> dict:
    """Cursors of a page in the middle of the pass, by id and by path."""
    from urllib.parse import quote

    from jobs.models import FileItem

    middle = FileItem.objects.filter(job_pass_id=job.current_pass_id).order_by("id")
    first = middle.values_list("id", flat=True).first() or 0
    pass_ = job.current_pass
    pk = first + (pass_.seen + pass_.folders_seen) // 2
    row = FileItem.objects.filter(job_pass_id=job.current_pass_id, id__gte=pk).order_by("id")
    row = row.values_list("id", "source_path").first()
    return {"id_cursor": row[0], "path_cursor": quote(f"{row[1]}\x1f{row[0]}"),
            "path_cursor_raw": f"{row[1]}\x1f{row[0]}"}  # fmt: skip


def child_measure(job_id: int) -> None:
    """Over the finished job, in this process: each page's queries and time (Django's
    test client, CaptureQueriesContext), the accounting check's time, EXPLAIN of the
    files report by path."""
    django_setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from jobs import selectors
    from jobs.models import MigrationJob

    job = MigrationJob.objects.select_related("current_pass").get(pk=job_id)
    client = Client(HTTP_HOST="localhost")
    client.force_login(get_user_model().objects.get(username="bench"))
    cursors = cursors_of(job)
    pages = {}
    for label, url in page_urls(job, cursors):
        client.get(url)  # warm
        times = []
        for _ in range(3):
            with CaptureQueriesContext(connection) as ctx:
                start = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - start)
            assert response.status_code == 200, (url, response.status_code)
        pages[label] = {"url": url, "queries": len(ctx.captured_queries),
                        "ms": round(statistics.median(times) * 1000, 1)}  # fmt: skip
    timings, checks = [], []
    for _ in range(3):
        start = time.perf_counter()
        truth = selectors.manifest_truth(pass_id=job.current_pass_id)
        timings.append(time.perf_counter() - start)
        # the check pass_finish runs: the units of work's sums, not the rows
        start = time.perf_counter()
        mismatch = selectors.accounting_mismatch(job_pass=job.current_pass)
        checks.append(time.perf_counter() - start)
    explain = ""
    if connection.vendor == "postgresql":
        from reports import tables

        qs = tables.manifest(job.current_pass, "files", tables.Filters(sort="path"))
        page_qs = tables.by_path(qs, cursors["path_cursor_raw"])
        explain = page_qs[:101].explain(analyze=True)
    print(json.dumps({"pages": pages, "accounting_s": round(min(timings), 3),
                      "accounting_check_s": round(min(checks), 4), "mismatch": mismatch,
                      "truth": truth, "explain_path": explain, "cursors": cursors}))  # fmt: skip


# --- the orchestrator -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB, or (0, 0) once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


class Sampler(threading.Thread):
    """Every `every` seconds: each process of each watched group, its RSS and peak."""

    def __init__(self, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.groups: dict[str, int] = {}  # label -> process group
        self.peak_kb: dict[str, int] = {}  # "label pid" -> peak RSS
        self.series: dict[str, list[int]] = {}  # label -> RSS of the group's largest, over time
        self.cpu: dict[str, float] = {}  # "label pid" -> CPU seconds, last seen
        self.every = every
        self.stopped = threading.Event()

    def watch(self, label: str, pgid: int) -> None:
        self.groups[label] = pgid

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.sample()

    def sample(self) -> None:
        for label, pgid in list(self.groups.items()):
            largest = 0
            for pid in group_pids(pgid):
                rss, hwm = rss_kb(pid)
                key = f"{label} {pid}"
                self.peak_kb[key] = max(self.peak_kb.get(key, 0), rss, hwm)
                self.cpu[key] = max(self.cpu.get(key, 0.0), cpu_seconds(pid))
                largest = max(largest, rss)
            self.series.setdefault(label, []).append(largest)


def cli_peak(args: list[str], env: dict) -> tuple[str, int]:
    """Run a CLI process; its output and its peak RSS in kB (from wait4)."""
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{args} failed ({proc.returncode})")
    return out, usage.ru_maxrss


def http_get(url: str, cookie: str, timeout: float = 600) -> tuple[int, float, bytes]:
    request = urllib.request.Request(url, headers={"Cookie": f"sessionid={cookie}"})  # noqa: S310
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body = response.read()
        return response.status, time.perf_counter() - start, body


def stream_csv(url: str, cookie: str, sampler: Sampler) -> dict:
    request = urllib.request.Request(url, headers={"Cookie": f"sessionid={cookie}"})  # noqa: S310
    start = time.perf_counter()
    rows = size = 0
    with urllib.request.urlopen(request, timeout=3600) as response:  # noqa: S310
        while chunk := response.read(1 << 20):
            size += len(chunk)
            rows += chunk.count(b"\n")
    seconds = time.perf_counter() - start
    return {"rows": rows - 1, "bytes": size, "seconds": round(seconds, 2),
            "rows_s": round((rows - 1) / seconds)}  # fmt: skip


def db_reader(db: str, url: str):
    """A function that runs one read-only query on the benchmark's database."""
    if db == "postgres":
        import psycopg

        conn = psycopg.connect(url, autocommit=True)
        return lambda sql, *p: conn.execute(sql.replace("?", "%s"), p).fetchall()
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
    return lambda sql, *p: conn.execute(sql, p).fetchall()


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    ap.add_argument("--clusters", type=int, default=0, help="default: 2 on PostgreSQL, 1 SQLite")
    ap.add_argument("--workers", type=int, default=2, help="workers per cluster")
    ap.add_argument("--batch-files", type=int, default=2000)
    ap.add_argument("--out", default="", help="write the JSON result here too")
    ap.add_argument("--name", default=PG_DB, help="PostgreSQL database (dropped, made again)")
    ap.add_argument("--redis-db", type=int, default=5, help="Redis database (flushed)")
    ap.add_argument("--child", default="")
    ap.add_argument("--job", type=int, default=0)
    ap.add_argument("--reports-only", action="store_true",
                    help="PostgreSQL: measure the pages and CSV of job --job of database --name "
                         "left by an earlier run (migrated first), run nothing")  # fmt: skip
    args = ap.parse_args()
    if args.child == "setup":
        return child_setup(args.files)
    if args.child == "login":
        return child_login()
    if args.child == "start":
        return child_start(args.job)
    if args.child == "measure":
        return child_measure(args.job)

    clusters = args.clusters or (2 if args.db == "postgres" else 1)
    load_start = Path("/proc/loadavg").read_text().split()[:3]  # the machine is shared
    if args.reports_only:
        clusters = 0
    folder = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    if args.db == "postgres":
        import psycopg

        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            if not args.reports_only:
                conn.execute(f"DROP DATABASE IF EXISTS {args.name} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {args.name}")
        db_url = f"{PG_SERVER}/{args.name}"
    else:
        db_url = f"sqlite:///{folder / 'db.sqlite3'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(MIGRATOR_DEV="1", DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="migrator.settings",
               PYTHONPATH=str(REPO), MIGRATOR_Q_NAME=f"scale{os.getpid()}",
               MIGRATOR_WORKERS=str(args.workers), MIGRATOR_BATCH_FILES=str(args.batch_files),
               DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost")  # fmt: skip
    if args.db == "postgres":
        env["REDIS_URL"] = f"{REDIS_URL}/{args.redis_db}"
        subprocess.run(["redis-cli", "-u", env["REDIS_URL"], "FLUSHDB"], check=False,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    else:
        env.pop("REDIS_URL", None)
    py = sys.executable
    me = str(Path(__file__).resolve())
    cli_kb: dict[str, int] = {}
    _out, cli_kb["migrate"] = cli_peak([py, "manage.py", "migrate", "-v0"], env)
    if args.reports_only:
        out, cli_kb["login"] = cli_peak([py, me, "--child", "login"], env)
        setup = {"job": args.job, **json.loads(out.strip().splitlines()[-1])}
    else:
        out, cli_kb["setup"] = cli_peak([py, me, "--child", "setup", "--files", str(args.files)],
                                        env)  # fmt: skip
        setup = json.loads(out.strip().splitlines()[-1])
    job_id, cookie = setup["job"], setup["cookie"]

    sampler = Sampler()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (folder / "processes.log").open("ab")
    procs: list[subprocess.Popen] = []
    web = subprocess.Popen(
        [str(Path(py).parent / "gunicorn"), "migrator.wsgi", "-b", f"127.0.0.1:{port}",
         "-w", "1", "--timeout", "3600"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    procs.append(web)
    sampler.watch("web", web.pid)
    for i in range(clusters):
        proc = subprocess.Popen([py, "manage.py", "qcluster"], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        procs.append(proc)
        sampler.watch(f"cluster{i + 1}", proc.pid)
    sampler.start()
    query = db_reader(args.db, db_url)
    try:
        deadline = time.monotonic() + 60
        while True:  # the web process answers, and the clusters are up
            try:
                http_get(f"{base}/reports/jobs/{job_id}/", cookie, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        time.sleep(3)
        t0 = time.time()
        if not args.reports_only:
            _out, cli_kb["job_start"] = cli_peak(
                [py, me, "--child", "start", "--job", str(job_id)], env
            )
        live_pages: list[tuple[float, str, float]] = []
        progress: list[tuple[float, int, int]] = []
        next_page = time.monotonic() + 5
        state = ""
        while True:
            rows = query("SELECT state FROM jobs_migrationjob WHERE id = ?", job_id)
            state = rows[0][0]
            counts = query("SELECT seen, copied + unchanged + excluded + failed FROM jobs_pass "
                           "WHERE job_id = ?", job_id)  # fmt: skip
            if counts:
                progress.append((round(time.time() - t0, 1), *counts[0]))
                print(f"\r{progress[-1]} {state}   ", end="", file=sys.stderr, flush=True)
            if state in ENDED:
                break
            if time.monotonic() >= next_page:  # a person looking at the job while it runs
                for label, path in (("summary", f"/reports/jobs/{job_id}/"),
                                    ("files", f"/reports/jobs/{job_id}/files/"),
                                    ("live", f"/reports/jobs/{job_id}/live/")):  # fmt: skip
                    _s, seconds, _b = http_get(base + path, cookie)
                    live_pages.append((round(time.time() - t0, 1), label,
                                       round(seconds * 1000, 1)))  # fmt: skip
                next_page = time.monotonic() + 10
            time.sleep(1)
        t1 = time.time()
        print(file=sys.stderr)
        p = query("SELECT seen, copied, unchanged, excluded, failed, pending, folders_seen, "
                  "batches_total FROM jobs_pass WHERE job_id = ?", job_id)[0]  # fmt: skip
        stamps = query("SELECT started_at, finished_at FROM jobs_pass WHERE job_id = ?", job_id)
        print("job ended:", state, p, file=sys.stderr, flush=True)
        # the pages through the web process, over the finished job
        out, cli_kb["measure"] = cli_peak([py, me, "--child", "measure", "--job", str(job_id)],
                                          env)  # fmt: skip
        measured = json.loads(out.strip().splitlines()[-1])
        web_pages = {}
        for label, page in measured["pages"].items():
            times = [http_get(base + page["url"], cookie)[1] for _ in range(3)]
            web_pages[label] = round(statistics.median(times) * 1000, 1)
        web_before_csv = max(sampler.series.get("web", [0]))
        sampler.sample()
        web_cpu = sum(v for k, v in sampler.cpu.items() if k.startswith("web "))
        csv = stream_csv(f"{base}/reports/jobs/{job_id}/files/?format=csv", cookie, sampler)
        sampler.sample()
        web_cpu = sum(v for k, v in sampler.cpu.items() if k.startswith("web ")) - web_cpu
        # rows per second of the web process's CPU: what the machine's load does not change
        csv["web_cpu_s"] = round(web_cpu, 2)
        csv["rows_per_cpu_s"] = round(csv["rows"] / web_cpu) if web_cpu else None
        web_series = sampler.series.get("web", [])
    finally:
        sampler.stopped.set()
        for proc in procs:
            stop(proc)
        log.close()

    seconds = t1 - t0
    result = {
        "files": args.files,
        "db": args.db,
        "clusters": clusters,
        "workers_per_cluster": args.workers,
        "batch_files": args.batch_files,
        "state": state,
        "pass": dict(zip(PASS_FIELDS, p, strict=True)),
        "pass_started_finished": [str(s) for s in stamps[0]],
        # the pipeline's figures: none for --reports-only, which ran nothing
        "seconds": None if args.reports_only else round(seconds, 1),
        "files_s": None if args.reports_only else round(args.files / seconds),
        "us_per_file": None if args.reports_only else round(seconds / args.files * 1e6, 1),
        "peak_rss_mb": {k: round(v / 1024) for k, v in sorted(sampler.peak_kb.items())},
        "cli_peak_rss_mb": {k: round(v / 1024) for k, v in cli_kb.items()},
        # CPU seconds by group (a worker reincarnated after a timeout counts as it was seen)
        "cpu_s": {
            label: round(sum(v for k, v in sampler.cpu.items() if k.split()[0] == label), 1)
            for label in sampler.groups
        },  # fmt: skip
        "pages_in_process": measured["pages"],
        "pages_web_ms": web_pages,
        "pages_while_running_ms": live_pages,
        "csv": {
            **csv,
            "web_rss_mb_before": round(web_before_csv / 1024),
            "web_rss_mb_max": round(max(web_series or [0]) / 1024),
        },  # fmt: skip
        "accounting_s": measured["accounting_s"],  # the GROUP BY (accounting_verify)
        "accounting_check_s": measured.get("accounting_check_s"),  # what pass_finish runs
        "mismatch": measured.get("mismatch"),
        "truth": measured["truth"],
        "explain_path": measured["explain_path"],
        "progress_tail": progress[-5:],
        "load_average": {"start": load_start, "end": Path("/proc/loadavg").read_text().split()[:3]},
        "log": str(folder / "processes.log"),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    for path in folder.glob("db.sqlite3*"):  # keep the log, not a GB of database
        path.unlink()


if __name__ == "__main__":
    main()
