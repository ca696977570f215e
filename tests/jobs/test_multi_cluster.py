"""Three worker clusters (`manage.py qcluster`) share one job of thousands of files; one is
killed with SIGKILL mid-batch and another takes its place: the counts reconcile, every file
has one manifest row and arrives once, whole, and nothing is lost. On PostgreSQL + Redis
(the Makefile's second run) leases go by SELECT … FOR UPDATE SKIP LOCKED; on the embedded
default the three clusters share one SQLite file through the ORM broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from migrator.storage.synthetic import from_url
from migrator.storage.walk import is_temp

from .conftest import REPO, base_env, kill_group, start_cluster, tree_of, wait_until

CLUSTERS = 3
FILES = 3000
SOURCE = f"synthetic://?files={FILES}&folders=30&depth=2&min_size=200&max_size=1200&seed=7"

CLUSTER_ENV = {
    "MIGRATOR_TASK_TIMEOUT": "8",
    "MIGRATOR_LEASE_SECONDS": "10",
    "MIGRATOR_TASK_RETRY": "12",
    "MIGRATOR_BATCH_FILES": "50",
    "MIGRATOR_WORKERS": "2",
    "MIGRATOR_COPY_THREADS": "4",
    "MIGRATOR_ENV_FILE": "",
}

CREATE_AND_START = """
from accounts.models import Customer
from jobs import services
c, _ = Customer.objects.get_or_create(name="Many clusters")
s = services.endpoint_create(name="src", url={src!r}, customer=c)
d = services.endpoint_create(name="dst", url={dst!r}, customer=c)
job = services.job_create(customer=c, name="three clusters", source=s, destination=d,
                          bwlimit={bw})
services.job_start(job=job)
print(job.pk)
"""
ENDED = ("completed", "completed_with_errors", "failed", "cancelled")


def synthetic_tree() -> dict[str, bytes]:
    """What the source holds: {path: bytes} of every file."""
    source = from_url(SOURCE)
    return {
        e.path: source.open(e.path).read()
        for e in source.scan()
        if getattr(e, "kind", "") == "file"
    }


def test_three_clusters_share_a_job_one_killed_mid_batch(cli, tmp_path: Path):
    dst = tmp_path / "dst"
    expected = synthetic_tree()
    assert len(expected) == FILES
    env = base_env(cli.db, **CLUSTER_ENV, **cli.env_extra)
    # a bandwidth limit stretches the job over several seconds, so the kill lands mid-job
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         CREATE_AND_START.format(src=SOURCE, dst=dst.as_uri(), bw=70_000)],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    job_id = int(out.stdout.strip().splitlines()[-1])
    log = tmp_path / "clusters.log"

    def counters() -> tuple:
        rows = cli.query(
            "SELECT seen, copied, unchanged, excluded, failed, pending FROM jobs_pass "
            "WHERE job_id = ?",
            job_id,
        )
        return rows[0] if rows else ()

    def scanned() -> bool:
        rows = cli.query("SELECT scan_finished FROM jobs_pass WHERE job_id = ?", job_id)
        return bool(rows and rows[0][0])

    def cluster_holding_a_lease() -> int | None:
        """1 + the index of a cluster one of whose workers holds a batch's lease now."""
        owners = cli.query(
            "SELECT lease_owner FROM jobs_batch WHERE job_id = ? AND state = 'leased'", job_id
        )
        groups = set()
        for (owner,) in owners:  # host:pid:thread:nonce
            try:
                groups.add(os.getpgid(int(owner.rsplit(":", 3)[1])))
            except (ProcessLookupError, ValueError):
                continue
        for index, proc in enumerate(clusters):
            if proc.pid in groups:
                return index + 1
        return None

    clusters = [start_cluster(env, log) for _ in range(CLUSTERS)]
    try:
        # the kill lands in the copy: a scan killed too waits for the reaper's schedule
        # (a minute) before another cluster resumes it, which this test does not time
        wait_until(lambda: (c := counters()) and c[1] >= 300 and scanned(), 45, "the first copies")
        index = wait_until(cluster_holding_a_lease, 30, "a cluster holding a lease") - 1
        kill_group(clusters[index])  # SIGKILL to its whole process group, mid-batch
        seen, copied, unchanged, _excluded, _failed, pending = counters()
        assert copied + unchanged < FILES and pending > 0, "the kill came after the job"
        clusters[index] = start_cluster(env, log)  # another takes its place
        state = wait_until(
            lambda: (
                (s := cli.query("SELECT state FROM jobs_migrationjob WHERE id = ?", job_id))
                and s[0][0] in ENDED
                and s[0][0]
            ),
            120,
            "the job to finish after the kill",
        )
    finally:
        for proc in clusters:
            kill_group(proc)
    output = log.read_text(errors="replace")

    assert state == "completed", output[-3000:]
    # counts reconcile: the accounting identity, and every file counted once
    seen, copied, unchanged, excluded, failed, pending = counters()
    assert seen == copied + unchanged + excluded + failed + pending
    assert (seen, copied + unchanged, excluded, failed, pending) == (FILES, FILES, 0, 0, 0)
    # 0 duplicated: one manifest row per file, each recorded in one state
    rows = cli.query(
        "SELECT state, COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
        "WHERE job_id = ? AND kind = 'file' GROUP BY state",
        job_id,
    )
    assert sum(n for _s, n, _d in rows) == FILES
    assert all(n == distinct and s in ("copied", "unchanged") for s, n, distinct in rows), rows
    # every batch done once, and their files add up to the job's (no range handed out twice
    # as two batches); the batch the kill interrupted was leased again
    batches = cli.query(
        "SELECT COUNT(*), SUM(files), MAX(attempts), "
        "SUM(CASE WHEN state = 'done' THEN 1 ELSE 0 END) FROM jobs_batch WHERE job_id = ?",
        job_id,
    )[0]
    items = cli.query("SELECT COUNT(*) FROM jobs_fileitem WHERE job_id = ?", job_id)[0][0]
    assert batches[1] == items and batches[3] == batches[0] >= FILES // 50
    assert batches[2] >= 2, "no batch was interrupted by the kill and handed out again"
    # 0 lost, 0 doubled at the destination: each file once, whole; no temp file left over
    written = [p for p in dst.rglob("*") if p.is_file()]
    assert not [p for p in written if is_temp(p.name)]
    assert len(written) == FILES
    assert tree_of(dst) == expected
