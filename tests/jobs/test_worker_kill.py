"""A real django-q2 cluster killed with kill -9 mid-batch: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from .conftest import (
    REPO,
    STACK,
    base_env,
    kill_group,
    make_tree,
    start_cluster,
    tree_of,
    wait_until,
)

# on PostgreSQL + Redis two clusters share the job (leases by SELECT … FOR UPDATE SKIP
# LOCKED); the embedded SQLite default runs one
CLUSTERS = 2 if STACK == "postgres" else 1

CLUSTER_ENV = {
    "MIGRATOR_TASK_TIMEOUT": "8",
    "MIGRATOR_LEASE_SECONDS": "10",
    "MIGRATOR_TASK_RETRY": "12",
    "MIGRATOR_BATCH_FILES": "20",
    "MIGRATOR_WORKERS": "2",
    "MIGRATOR_COPY_THREADS": "4",
}

CREATE_AND_START = """
from accounts.models import Customer
from jobs import services
c, _ = Customer.objects.get_or_create(name="Kill test")
s = services.endpoint_create(name="src", url={src!r}, customer=c)
d = services.endpoint_create(name="dst", url={dst!r}, customer=c)
job = services.job_create(customer=c, name="kill", source=s, destination=d, bwlimit={bw})
services.job_start(job=job)
print(job.pk)
"""


def test_kill_9_mid_batch_loses_nothing_and_duplicates_nothing(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=300, folders=6, size=4000)
    env = base_env(cli.db, **CLUSTER_ENV, **cli.env_extra)
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         CREATE_AND_START.format(src=src.as_uri(), dst=dst.as_uri(), bw=150_000)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    job_id = int(out.stdout.strip().splitlines()[-1])
    log = tmp_path / "cluster.log"

    def counters():
        return cli.query(
            "SELECT seen, copied, unchanged, excluded, failed, pending FROM jobs_pass "
            "WHERE job_id = ?",
            job_id,
        )

    def holding_a_lease() -> int | None:
        """The index of a cluster whose worker holds a lease right now."""
        for index, proc in enumerate(clusters):
            if victim_holds_a_lease(proc):
                return index + 1  # truthy even for the first cluster
        return None

    def victim_holds_a_lease(victim: subprocess.Popen) -> bool:
        owners = cli.query("SELECT lease_owner FROM jobs_batch WHERE state = 'leased'")
        for (owner,) in owners:
            pid = int(owner.split(":")[1])
            try:
                if os.getpgid(pid) == victim.pid:
                    return True
            except ProcessLookupError:
                continue
        return False

    clusters = [start_cluster(env, log) for _ in range(CLUSTERS)]
    try:
        wait_until(lambda: (c := counters()) and c[0][1] >= 40, 60, "the first copies")
        # the victim: a cluster caught holding a lease, so the kill lands mid-batch
        index = wait_until(holding_a_lease, 60, "a lease held by a cluster") - 1
        victim = clusters[index]
        kill_group(victim)
        seen, copied, *_rest, pending = counters()[0]
        assert 0 < copied < seen and pending > 0
        clusters[index] = start_cluster(env, log)  # a new one takes the victim's place
        state = wait_until(
            lambda: (
                (s := cli.query("SELECT state FROM jobs_migrationjob WHERE id=?", job_id))
                and s[0][0] in ("completed", "completed_with_errors", "failed")
                and s[0][0]
            ),
            180,
            "the job to finish after the kill",
        )
    finally:
        for proc in clusters:
            kill_group(proc)

    assert state == "completed", log.read_text()[-3000:]
    seen, copied, unchanged, excluded, failed, pending = counters()[0]
    assert seen == len(expected) == copied + unchanged
    assert (excluded, failed, pending) == (0, 0, 0)
    rows = cli.query(
        "SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem WHERE kind = 'file'"
    )
    assert rows == [(len(expected), len(expected))]
    assert tree_of(dst) == expected  # every file, whole, once; no temp file left behind
    retried = cli.query("SELECT MAX(attempts) FROM jobs_batch")[0][0]
    assert retried >= 2, "a batch interrupted by the kill was handed out again"


def test_postgresql_restarted_mid_job_the_workers_reconnect_and_nothing_is_lost(tmp_path):
    """A cluster on a PostgreSQL server of the test's own (and Redis) copies a job; the
    database is stopped and started again mid-job: the workers reconnect, the batches
    that failed with it are handed out again, every file arrives once and whole."""
    import psycopg

    from tests.servers.stack import private_postgres, redis

    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=200, folders=4, size=4000)
    with private_postgres() as pg, redis() as redis_url:
        with psycopg.connect(f"{pg.url}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE faults")
        db = f"{pg.url}/faults"
        env = base_env(db, **CLUSTER_ENV, REDIS_URL=redis_url,
                       MIGRATOR_Q_NAME=f"pgrestart{os.getpid()}")  # fmt: skip
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=env,
                       check=True)  # fmt: skip
        out = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c",
             CREATE_AND_START.format(src=src.as_uri(), dst=dst.as_uri(), bw=120_000)],
            cwd=REPO, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        job_id = int(out.stdout.strip().splitlines()[-1])

        def query(sql: str):
            try:
                with psycopg.connect(db, connect_timeout=3) as conn:
                    return conn.execute(sql, (job_id,)).fetchall()
            except psycopg.OperationalError:
                return None  # the server is down or starting

        log = tmp_path / "cluster.log"
        cluster = start_cluster(env, log)
        try:
            copied = "SELECT copied, seen FROM jobs_pass WHERE job_id = %s"
            wait_until(lambda: (r := query(copied)) and r[0][0] >= 30, 90, "the first copies")
            pg.stop()
            time.sleep(3)  # down for a while: tasks running now fail on the database
            pg.start()
            before = wait_until(lambda: query(copied), 30, "the database back")[0]
            assert before[0] < before[1], "the restart came after the job had finished"
            state = wait_until(
                lambda: (
                    (s := query("SELECT state FROM jobs_migrationjob WHERE id = %s"))
                    and s[0][0] in ("completed", "completed_with_errors", "failed")
                    and s[0][0]
                ),
                240,
                "the job to finish after the restart",
            )
        finally:
            kill_group(cluster)
        assert state == "completed", log.read_text()[-3000:]
        counts = query("SELECT seen, copied, unchanged, failed, pending FROM jobs_pass "
                       "WHERE job_id = %s")[0]  # fmt: skip
        assert counts == (200, counts[1], 200 - counts[1], 0, 0)
        rows = query("SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
                     "WHERE kind = 'file' AND job_id = %s")  # fmt: skip
        assert rows == [(200, 200)]
    assert tree_of(dst) == expected
