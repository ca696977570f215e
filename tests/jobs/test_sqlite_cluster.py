"""The embedded default for real: `manage.py qcluster` with eight workers and django-q2's
ORM broker on one SQLite file copies a job of thousands of small files in many folders,
started by the real service (job_start), so every task goes through the broker's table.
Nothing is locked out, lost, doubled or torn, and the eight workers held batches at once."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from migrator.storage.walk import is_temp
from tests.servers.util import stop_group

from .conftest import REPO, base_env, tree_of, wait_until

WORKERS = 8
FILES, TOP_FOLDERS, SUB_FOLDERS = 3000, 15, 5  # 3,000 files in 75 folders under 15
BATCH_FILES = 25  # about 120 batches: each of the eight workers takes many

CREATE_AND_START = """
from accounts.models import Customer
from jobs import services
c = Customer.objects.create(name="SQLite cluster")
s = services.endpoint_create(name="src", url={src!r}, customer=c)
d = services.endpoint_create(name="dst", url={dst!r}, customer=c)
job = services.job_create(customer=c, name="eight workers", source=s, destination=d)
services.job_start(job=job)
print(job.pk)
"""
ENDED = ("completed", "completed_with_errors", "failed", "cancelled", "paused")


def small_files(root: Path) -> dict[str, bytes]:
    """FILES files of 100-400 bytes spread over TOP_FOLDERS × SUB_FOLDERS folders."""
    made: dict[str, bytes] = {}
    for i in range(FILES):
        top, sub = i % TOP_FOLDERS, (i // TOP_FOLDERS) % SUB_FOLDERS
        rel = f"share-{top:02d}/folder-{sub}/file-{i:04d}.txt"
        data = os.urandom(100 + i % 300)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made[rel] = data
    return made


@pytest.fixture
def sqlite_file(migrated_db: str, tmp_path: Path) -> Path:
    """A migrated SQLite file of this test's own, whatever database the other tests use."""
    db = tmp_path / "db.sqlite3"
    if migrated_db.startswith("sqlite:///"):
        shutil.copy(migrated_db.removeprefix("sqlite:///"), db)
    else:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO,
                       env=cluster_env(db, "migrate"), check=True)  # fmt: skip
    return db


def cluster_env(db: Path, queue: str) -> dict[str, str]:
    env = base_env(db, MIGRATOR_Q_NAME=queue, MIGRATOR_WORKERS=str(WORKERS),
                   MIGRATOR_BATCH_FILES=str(BATCH_FILES), MIGRATOR_ENV_FILE="")  # fmt: skip
    env.pop("REDIS_URL", None)  # django-q2's ORM broker, on this same SQLite file
    return env


class Watch:
    """Reads the database beside the cluster (WAL: a reader never blocks its writer) and
    keeps what it saw of the leases and the broker's queue while the job ran."""

    def __init__(self, db: Path, queue: str, job_id: int) -> None:
        self.conn = sqlite3.connect(db, timeout=20, isolation_level=None)
        self.queue, self.job_id = queue, job_id
        self.peak_leased = 0  # batches leased at the same moment
        self.lease_pids: set[int] = set()  # the processes that held them
        self.peak_queued = 0  # tasks in the ORM broker's table

    def one(self, sql: str, *params):
        return self.conn.execute(sql, params).fetchone()

    def job_state(self) -> str:
        owners = self.conn.execute(
            "SELECT lease_owner FROM jobs_batch WHERE job_id = ? AND state = 'leased'",
            (self.job_id,),
        ).fetchall()
        self.peak_leased = max(self.peak_leased, len(owners))
        # an owner is host:pid:thread:nonce
        self.lease_pids |= {int(owner.rsplit(":", 3)[1]) for (owner,) in owners}
        self.peak_queued = max(self.peak_queued, self.queued())
        return self.one("SELECT state FROM jobs_migrationjob WHERE id = ?", self.job_id)[0]

    def queued(self) -> int:
        return self.one("SELECT COUNT(*) FROM django_q_ormq WHERE key = ?", self.queue)[0]


def test_eight_qcluster_workers_with_the_orm_broker_on_one_sqlite_file(sqlite_file, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = small_files(src)
    folders = {rel.rsplit("/", 1)[0] for rel in expected}
    folders |= {folder.split("/")[0] for folder in folders}
    queue = f"sqlite{uuid.uuid4().hex[:10]}"
    env = cluster_env(sqlite_file, queue)
    log = tmp_path / "cluster.log"
    with log.open("ab") as out:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=REPO, env=env,
            stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop_group takes every worker
        )  # fmt: skip
    try:
        started = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c",
             CREATE_AND_START.format(src=src.as_uri(), dst=dst.as_uri())],
            cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        job_id = int(started.stdout.strip().splitlines()[-1])
        watch = Watch(sqlite_file, queue, job_id)
        state = wait_until(
            lambda: (s := watch.job_state()) in ENDED and s, 150, "the job to end", every=0.05
        )
        # the monitor saves a task's result before it takes it off the queue: an empty
        # queue means every task has run and its result is in django_q_task
        wait_until(lambda: watch.queued() == 0, 30, "every task to be acknowledged")
        worker_pids = {pid for pid in watch.lease_pids if _group_of(pid) == cluster.pid}
        os.kill(cluster.pid, signal.SIGTERM)  # the leader stops its cluster in order
        cluster.wait(timeout=30)
    finally:
        stop_group(cluster)
        output = log.read_text(errors="replace")
        print(output[-3000:])  # shown when the test fails

    assert state == "completed", output[-3000:]
    assert "database is locked" not in output and "Traceback" not in output, output[-3000:]
    seen, copied, unchanged, excluded, failed, pending = watch.one(
        "SELECT seen, copied, unchanged, excluded, failed, pending FROM jobs_pass WHERE job_id = ?",
        job_id,
    )
    assert seen == copied + unchanged + excluded + failed + pending  # the accounting identity
    assert (seen, copied, unchanged, excluded, failed, pending) == (FILES, FILES, 0, 0, 0, 0)
    # one row per path, files and folders: no batch recorded twice
    rows = watch.conn.execute(
        "SELECT kind, state, COUNT(*), COUNT(DISTINCT source_path), COUNT(DISTINCT dest_path) "
        "FROM jobs_fileitem WHERE job_id = ? GROUP BY kind, state",
        (job_id,),
    ).fetchall()
    by_kind: dict[str, list[int]] = {}
    for kind, item_state, count, paths, dest_paths in rows:
        assert count == paths == dest_paths, (kind, item_state)
        assert item_state in ("copied", "unchanged"), (kind, item_state)
        by_kind.setdefault(kind, []).append(count)
    assert ("file", "copied", FILES, FILES, FILES) in rows
    # a folder a file's write made first is "unchanged" when its own row comes
    assert {kind: sum(counts) for kind, counts in by_kind.items()} == {
        "file": FILES,
        "dir": len(folders),
    }
    distinct = watch.one(
        "SELECT COUNT(DISTINCT source_path) FROM jobs_fileitem WHERE job_id = ?", job_id
    )[0]
    assert distinct == FILES + len(folders)
    # every file, whole, once, and nothing else: no temp file left behind
    assert not [p for p in dst.rglob("*") if is_temp(p.name)]
    assert tree_of(dst) == expected
    # every batch went through the broker to the cluster, and none failed or was cut short
    batches = watch.one("SELECT COUNT(*), SUM(state = 'done') FROM jobs_batch WHERE job_id = ?",
                        job_id)  # fmt: skip
    assert batches[0] == batches[1] >= FILES // BATCH_FILES
    tasks = watch.conn.execute(
        "SELECT func, COUNT(*), SUM(success = 0), MAX(attempt_count) FROM django_q_task "
        "WHERE cluster = ? GROUP BY func",
        (queue,),
    ).fetchall()
    by_func = {func: (count, failures, attempts) for func, count, failures, attempts in tasks}
    assert by_func["jobs.tasks.copy_batch"][0] >= batches[0]
    assert {"jobs.tasks.scan_pass", "jobs.tasks.finish_pass"} <= set(by_func)
    # django-q's failed list (Failure: success false) is empty, and no task needed a retry
    assert [(f, n, a) for f, (_, n, a) in by_func.items() if n or a != 1] == []
    assert watch.one("SELECT COUNT(*) FROM django_q_task WHERE success = 0")[0] == 0
    assert watch.peak_queued > 0  # tasks sat in the ORM broker's table
    # the eight workers, each its own process of the cluster, held batches, several at the
    # same moment (how many at once the sampling catches depends on the machine's load: 5-8)
    assert len(worker_pids) == WORKERS, watch.lease_pids
    assert cluster.pid not in watch.lease_pids
    assert watch.peak_leased >= 2
    errors = watch.one(
        "SELECT COUNT(*) FROM jobs_event WHERE job_id = ? AND level = 'error'", job_id
    )[0]
    assert errors == 0


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None
