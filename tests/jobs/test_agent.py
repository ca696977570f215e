"""The on-premises agent end to end: a live server (runserver) with a worker cluster, and
agents as separate processes that have no Django on their path, enrolled through the real
enrolment flow; local folders at the agent's side."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.servers.util import free_port, stop_group, wait_for_port

from .conftest import REPO, base_env, make_tree, tree_of
from .test_worker_kill import start_cluster, wait_until

SERVER_ENV = {
    "MIGRATOR_LEASE_SECONDS": "6",
    "MIGRATOR_TASK_TIMEOUT": "4",
    "MIGRATOR_TASK_RETRY": "8",
    "MIGRATOR_AGENT_POLL_SECONDS": "1",
    "MIGRATOR_BATCH_FILES": "10",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
}

SETUP = """
import json
from accounts.models import Customer
from jobs import services
c, _ = Customer.objects.get_or_create(name="Agent test")
pool = services.agent_pool_create(customer=c, name="site-a")
s = services.endpoint_create(name="src", url={src!r}, customer=c, secret={secret!r})
d = services.endpoint_create(name="dst", url={dst!r}, customer=c)
job = services.job_create(customer=c, name="behind a firewall", source=s, destination=d,
                          bwlimit={bw}, agent_pool=pool)
codes = [services.enrollment_code_create(pool=pool) for _ in range({agents})]
print(json.dumps({{"job": job.pk, "codes": codes}}))
"""


class Stack:
    """The server side (runserver + qcluster on one SQLite database) and its agents."""

    def __init__(self, cli, tmp_path: Path) -> None:
        self.cli, self.tmp = cli, tmp_path
        self.env = base_env(cli.db, **SERVER_ENV, **cli.env_extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []
        self.server: subprocess.Popen | None = None

    def shell(self, code: str) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1]

    def start_server(self) -> None:
        log = (self.tmp / "server.log").open("ab")
        self.server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, proc=self.server, timeout=60)

    def stop_server(self) -> None:
        if self.server is not None:
            stop_group(self.server)
            self.server = None

    def start_cluster(self) -> None:
        self.procs.append(start_cluster(self.env, self.tmp / "cluster.log"))

    def agent_env(self) -> dict[str, str]:
        # what an agent at a customer's site has: no Django, no database, no cloud keys
        return {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(self.tmp)}

    def enroll(self, name: str, code: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "migrator.agent",
                "--config",
                str(self.tmp / name / "a.json"),
                "enroll",
                "--server",
                self.url,
                "--code",
                code,
                "--name",
                name,
            ],
            env=self.agent_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start_agent(self, name: str, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "migrator.agent",
                "--config",
                str(self.tmp / name / "a.json"),
                "run",
                *args,
            ],
            env=self.agent_env(),
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / f"{name}.err").open("ab"),
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def job_state(self, job_id: int) -> str:
        rows = self.cli.query("SELECT state FROM jobs_migrationjob WHERE id = ?", job_id)
        return rows[0][0]

    def finished(self, job_id: int, timeout: float = 180) -> str:
        done = ("completed", "completed_with_errors", "failed", "cancelled")
        return wait_until(
            lambda: (s := self.job_state(job_id)) in done and s, timeout, "the job to finish"
        )

    def close(self) -> None:
        for proc in self.procs:
            stop_group(proc)
        self.stop_server()


@pytest.fixture
def stack(cli, tmp_path):
    s = Stack(cli, tmp_path)
    s.start_server()
    s.start_cluster()
    yield s
    s.close()


def setup(stack: Stack, src: Path | str, dst: Path | str, *, bw: int | None = None,
          agents: int = 1, secret: str | None = None):  # fmt: skip
    src = src.as_uri() if isinstance(src, Path) else src
    dst = dst.as_uri() if isinstance(dst, Path) else dst
    code = SETUP.format(src=src, dst=dst, bw=bw, agents=agents, secret=secret)
    out = json.loads(stack.shell(code))
    stack.shell(
        f"from jobs import services; from jobs.models import MigrationJob; "
        f"services.job_start(job=MigrationJob.objects.get(pk={out['job']}))"
    )
    return out["job"], out["codes"]


def accounting(stack: Stack, job_id: int) -> tuple:
    return stack.cli.query(
        "SELECT seen, copied, unchanged, failed, pending FROM jobs_pass WHERE job_id = ?", job_id
    )[0]


def test_an_enrolled_agent_scans_and_copies_a_job_the_server_cannot_reach(stack, tmp_path):
    src, dst = tmp_path / "site" / "share", tmp_path / "site" / "copy"
    expected = make_tree(src, files=60, folders=3)
    job_id, (code,) = setup(stack, src, dst)
    enrolled = stack.enroll("agent1", code)
    assert enrolled.returncode == 0, enrolled.stderr
    config = tmp_path / "agent1" / "a.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    token = json.loads(config.read_text())["token"]
    # the server keeps only a hash of it
    hashes = stack.cli.query("SELECT token_hash FROM jobs_agent")
    assert token not in {h for (h,) in hashes} and len(hashes[0][0]) == 64
    again = stack.enroll("agent2", code)
    assert again.returncode == 2 and "used already" in again.stderr
    agent = stack.start_agent("agent1")
    assert stack.finished(job_id) == "completed", (tmp_path / "agent1.err").read_text()[-2000:]
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied, failed, pending) == (60, 60, 0, 0)
    assert tree_of(dst) == expected
    rows = stack.cli.query(
        "SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
        "WHERE kind = 'file' AND job_id = ?",
        job_id,
    )
    assert rows == [(60, 60)]
    status = json.loads(stack.cli.query("SELECT status FROM jobs_agent")[0][0])
    assert status["version"] and "free_disk" in status
    # what the agent's process had: no Django settings, no database, no cloud credential
    environ = Path(f"/proc/{agent.pid}/environ").read_bytes().split(b"\0")
    names = {e.split(b"=", 1)[0] for e in environ if e}
    assert not names & {
        b"DATABASE_URL",
        b"DJANGO_SETTINGS_MODULE",
        b"GOOGLE_APPLICATION_CREDENTIALS",
        b"MIGRATOR_FERNET_KEYS",
    }


def test_kill_9_of_an_agent_mid_batch_another_agent_of_the_pool_finishes(stack, tmp_path):
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = make_tree(src, files=120, folders=4, size=4000)
    job_id, codes = setup(stack, src, dst, bw=120_000, agents=2)
    for name, code in zip(("a1", "a2"), codes, strict=True):
        assert stack.enroll(name, code).returncode == 0
    first = stack.start_agent("a1")

    def a1_holds_a_batch() -> bool:
        rows = stack.cli.query(
            "SELECT COUNT(*) FROM jobs_batch WHERE state = 'leased' AND lease_owner LIKE 'agent:%'"
        )
        copied = (
            accounting(stack, job_id)[1]
            if stack.cli.query("SELECT 1 FROM jobs_pass WHERE job_id = ?", job_id)
            else 0
        )
        return rows[0][0] > 0 and copied >= 20

    wait_until(a1_holds_a_batch, 90, "the first agent mid-job")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    copied_at_kill = accounting(stack, job_id)[1]
    assert copied_at_kill < 120
    stack.start_agent("a2")
    assert stack.finished(job_id, timeout=240) == "completed"
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert seen == 120 and copied + unchanged == 120 and (failed, pending) == (0, 0)
    assert tree_of(dst) == expected  # every file whole, once; no temp file left
    rows = stack.cli.query(
        "SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
        "WHERE kind = 'file' AND job_id = ?",
        job_id,
    )
    assert rows == [(120, 120)]


def test_the_server_restarted_while_the_agent_works_nothing_counted_twice(stack, tmp_path):
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = make_tree(src, files=80, folders=2, size=4000)
    job_id, (code,) = setup(stack, src, dst, bw=100_000)
    assert stack.enroll("a1", code).returncode == 0
    stack.start_agent("a1")
    wait_until(
        lambda: (
            stack.cli.query("SELECT copied FROM jobs_pass WHERE job_id = ?", job_id)
            and accounting(stack, job_id)[1] >= 20
        ),
        90,
        "the first copies",
    )
    stack.stop_server()
    time.sleep(3)  # the agent keeps copying and retries its posts meanwhile
    stack.start_server()
    assert stack.finished(job_id, timeout=240) == "completed"
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied + unchanged, failed, pending) == (80, 80, 0, 0)
    assert tree_of(dst) == expected
    rows = stack.cli.query(
        "SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
        "WHERE kind = 'file' AND job_id = ?",
        job_id,
    )
    assert rows == [(80, 80)]


def test_a_revoked_agent_is_refused_and_an_expired_code_says_so(stack, tmp_path):
    src = tmp_path / "share"
    make_tree(src, files=2)
    job_id, (code,) = setup(stack, src, tmp_path / "copy")
    stack.shell(
        "from jobs.models import MigrationJob; "
        f"MigrationJob.objects.filter(pk={job_id}).update(state='paused')"
    )
    assert stack.enroll("a1", code).returncode == 0
    stack.shell(
        "from jobs import services; from jobs.models import Agent; "
        "services.agent_revoke(agent=Agent.objects.get())"
    )
    proc = stack.start_agent("a1", "--idle-exit", "5")
    assert proc.wait(timeout=60) == 3
    assert "revoked" in (tmp_path / "a1.err").read_text()
    expired = stack.shell(
        "from datetime import timedelta; from jobs import services; "
        "from jobs.models import AgentPool; "
        "print(services.enrollment_code_create(pool=AgentPool.objects.get(), "
        "ttl=timedelta(seconds=-1)))"
    )
    late = stack.enroll("a2", expired)
    assert late.returncode == 2 and "expired" in late.stderr
    unknown = stack.enroll("a3", "mgr-enroll-made-up")
    assert unknown.returncode == 2 and "not known" in unknown.stderr


def test_smb_source_to_gcs_through_the_agent_which_never_holds_a_gcs_key(
    stack, samba_dc, gcs_server, tmp_path
):
    """The issue's end to end: the Samba DC's share as the source, the GCS server as the
    destination; the agent streams each object through an upload session the server made,
    its environment and config have no GCS credential or address, md5s equal the source."""
    from .test_smb_jobs import make_smb_tree, smb_source

    name, disk = smb_source(samba_dc)
    expected = make_smb_tree(disk, files=15, long_path=False)
    bucket = gcs_server.make_bucket()
    job_id, (code,) = setup(stack, samba_dc.smb_url("data", name), f"gs://{bucket}/in",
                            secret=samba_dc.password_for(samba_dc.admin_user))  # fmt: skip
    assert stack.enroll("agent1", code).returncode == 0
    agent = stack.start_agent("agent1")
    assert stack.finished(job_id) == "completed", (tmp_path / "agent1.err").read_text()[-2000:]
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied, failed, pending) == (len(expected), len(expected), 0, 0)
    client = gcs_server.client()
    blobs = {b.name: b for b in client.list_blobs(bucket)}
    assert set(blobs) == {f"in/{rel}" for rel in expected}
    for rel, data in expected.items():
        md5 = base64.b64decode(blobs[f"in/{rel}"].md5_hash).hex()
        assert md5 == hashlib.md5(data).hexdigest(), rel
        assert client.bucket(bucket).blob(f"in/{rel}").download_as_bytes() == data
    environ = Path(f"/proc/{agent.pid}/environ").read_bytes()
    assert b"STORAGE_EMULATOR_HOST" not in environ and b"GOOGLE_" not in environ
    config = (tmp_path / "agent1" / "a.json").read_text()
    assert "gs://" not in config and "STORAGE" not in config


def test_results_kept_on_disk_while_the_server_is_away_are_sent_after_a_restart(stack, tmp_path):
    """The server goes away; the agent finishes a batch and keeps its outcomes on disk;
    the agent is killed too. Both start again: the kept outcomes are sent first, so no
    batch is copied twice (every batch leased once) and nothing is lost."""
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = make_tree(src, files=40, folders=1, size=4000)
    job_id, (code,) = setup(stack, src, dst, bw=12_000)  # a batch of 10 takes ~3.5 s
    assert stack.enroll("a1", code).returncode == 0
    agent = stack.start_agent("a1", "--workers", "1")
    wait_until(
        lambda: (
            accounting(stack, job_id)[1] >= 10
            if stack.cli.query("SELECT 1 FROM jobs_pass WHERE job_id = ?", job_id)
            else False
        ),
        90,
        "a first batch",
    )
    stack.stop_server()
    spool = tmp_path / "a1" / "spool"
    wait_until(lambda: spool.is_dir() and any(spool.glob("*.json")), 60, "a result kept on disk")
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(timeout=10)
    stack.start_server()
    stack.start_agent("a1", "--workers", "1")
    assert stack.finished(job_id, timeout=240) == "completed"
    assert not list(spool.glob("*.json"))
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied, failed, pending) == (40, 40, 0, 0)
    assert tree_of(dst) == expected
    attempts = stack.cli.query("SELECT attempts FROM jobs_batch")
    assert attempts and all(a == 1 for (a,) in attempts), attempts
