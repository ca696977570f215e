"""Fixtures to run the real CLI and the real worker cluster in subprocesses, each on a
file-backed SQLite database of its own (migrated once per session, copied per test), and
`acl_share`, the ACL cases written to the Samba DC."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrator.storage import Entry, connector_for
from tests.jobs.factories import CASES, FILES, OWNERS, descriptor, new_folder
from tests.servers.util import free_port, kill_group, stop_group, wait_for_port

REPO = Path(__file__).resolve().parents[2]
# "postgres" when run under `python -m tests.servers.stack` (PostgreSQL + Redis)
STACK = os.environ.get("MIGRATOR_TEST_STACK", "sqlite")


def _server_url() -> str:
    url = os.environ["DATABASE_URL"]
    return url.rsplit("/", 1)[0]


def base_env(db_url: str | Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess that works on the database at `db_url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    db_url = str(db_url)
    if "://" not in db_url:
        db_url = f"sqlite:///{db_url}"
    env.update(
        MIGRATOR_DEV="1",
        DATABASE_URL=db_url,
        DJANGO_SETTINGS_MODULE="migrator.settings",
        PYTHONPATH=str(REPO),
    )
    if STACK != "postgres":
        env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def current_db_url() -> str:
    """The URL of the database the in-process tests use right now (the test database)."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    if connection.vendor == "postgresql":
        return f"{_server_url()}/{name}"
    return f"sqlite:///{name}"


def _pg(sql: str, db: str = "postgres") -> None:
    import psycopg

    with psycopg.connect(f"{_server_url()}/{db}", autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> str:
    """A migrated database to copy for each CLI test (a file, or a PostgreSQL template)."""
    if STACK == "postgres":
        name = f"migrator_tpl_{os.getpid()}"
        _pg(f"DROP DATABASE IF EXISTS {name}")
        _pg(f"CREATE DATABASE {name}")
        url = f"{_server_url()}/{name}"
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('clidb') / 'template.sqlite3'}"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO, env=base_env(url), check=True
    )
    yield url
    if STACK == "postgres":
        _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])


@dataclass
class Cli:
    db: str  # a database URL
    env_extra: dict[str, str]

    def run(self, *args: str, drop_root: bool = False, timeout: float = 120, **env) -> CliResult:
        cmd = [sys.executable, "manage.py", "migrator_run", *args]
        if drop_root and os.geteuid() == 0:
            # root reads everything; drop the capabilities that let it, so file modes count
            cmd = ["setpriv", "--inh-caps=-all",
                   "--bounding-set=-dac_override,-dac_read_search", *cmd]  # fmt: skip
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env=base_env(self.db, **self.env_extra, **env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    def query(self, sql: str, *params) -> list[tuple]:
        """Read the CLI's database directly ('?' placeholders)."""
        if self.db.startswith("postgres"):
            import psycopg

            with psycopg.connect(self.db) as conn:
                return conn.execute(sql.replace("?", "%s"), params).fetchall()
        with sqlite3.connect(self.db.removeprefix("sqlite:///"), timeout=20) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture
def cli(migrated_db: str, tmp_path: Path):
    """A fresh migrated database of its own, and a unique queue name for its clusters."""
    queue = {"MIGRATOR_Q_NAME": f"t{uuid.uuid4().hex[:10]}"}
    if STACK == "postgres":
        name = f"migrator_t_{uuid.uuid4().hex[:12]}"
        _pg(f"CREATE DATABASE {name} TEMPLATE {migrated_db.rsplit('/', 1)[1]}")
        yield Cli(db=f"{_server_url()}/{name}", env_extra=queue)
        _pg(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    else:
        db = tmp_path / "db.sqlite3"
        shutil.copy(migrated_db.removeprefix("sqlite:///"), db)
        yield Cli(db=f"sqlite:///{db}", env_extra=queue)


@pytest.fixture(scope="module")
def acl_share(samba_dc) -> str:
    """A fresh folder in [data] holding the ACL cases; returns its share-relative path."""
    base = new_folder(samba_dc, "data")
    with connector_for(samba_dc.smb_url("data", base), samba_dc.admin_password) as share:
        for folder, (entries, protected) in CASES.items():
            share.mkdir(folder)
            owner = OWNERS.get(folder, "Administrator")
            share.write_acl(folder, descriptor(samba_dc.sids, entries, protected, owner))
        for path, data in FILES.items():  # after the folders' ACLs: they inherit them
            share.write(path, io.BytesIO(data), Entry(path, "file", len(data), 0))
    return base


def make_tree(root: Path, files: int = 40, folders: int = 4, size: int = 3000) -> dict[str, bytes]:
    """Files in nested folders, with a few hostile names; returns {relative path: bytes}."""
    made: dict[str, bytes] = {}
    names = ["plain.txt", 'comma, "quote".txt', "=formula.csv", "naïve 日本.txt", "#hash?.bin"]
    for i in range(files):
        folder = "/".join(f"d{j}" for j in range(i % folders + 1))
        name = names[i] if i < len(names) else f"file-{i:03d}.dat"
        rel = f"{folder}/{name}"
        data = os.urandom(size + i)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        made[rel] = data
    return made


def tree_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- worker clusters -----------------------------------------------------------------------


def start_cluster(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: kill -9 takes every worker
    )


def wait_until(predicate, timeout: float, what: str, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


# --- SMB trees -------------------------------------------------------------------------------

# a path well over Windows' classic MAX_PATH of 260 characters
LONG = "/".join(f"{i:02d} a folder name that is rather long" for i in range(7))
LONG_FILE = f"{LONG}/and a file name that is long as well.txt"
NAMES = [
    "plain.txt",
    "naïve 日本.txt",
    "ampersand & percent% (1).bin",
    "=formula.csv",
    "comma, 'single' quote.txt",
    "UPPER.TXT",
    "no extension",
]
MTIME_NS = 1_600_000_000_123_456_789  # below 100 ns too: SMB keeps 100 ns ticks


def make_smb_tree(
    root: Path, files: int = 24, folders: int = 3, size: int = 3000, long_path: bool = True
) -> dict[str, bytes]:
    """Files with names every side can hold (SMB refuses '"', '?', ':' …), an empty file,
    an empty folder and, unless told not to, a path over 260 characters; returns
    {relative path: bytes}. The mtimes have nanoseconds, so 100 ns truncation shows."""
    made: dict[str, bytes] = {}
    for i in range(files):
        folder = "/".join(f"d{j}" for j in range(i % folders + 1))
        name = NAMES[i] if i < len(NAMES) else f"file-{i:03d}.dat"
        made[f"{folder}/{name}"] = os.urandom(size + i)
    if long_path:
        made[LONG_FILE] = b"deep\n"
    made["empty.txt"] = b""
    for i, (rel, data) in enumerate(made.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, ns=(MTIME_NS + i * 1_000_000_007,) * 2)
    (root / "empty folder").mkdir(parents=True)
    assert len(LONG_FILE) > 260
    return made


def run_smb(cli, dc, *args: str, user: str | None = None, **env):
    """The CLI with the SMB password in the environment, never on the command line."""
    password = dc.password_for(user or dc.admin_user)
    assert password not in " ".join(args)
    return cli.run(*args, "--json", MIGRATOR_SMB_PASSWORD=password, **env)


def smb_source(dc, share: str = "data") -> tuple[str, Path]:
    """A fresh folder in `share`: (its share-relative path, its folder on the DC's disk)."""
    name = dc.make_folder(share)
    return name, dc.disk_path(share, name)


# --- the on-premises agent end to end: a live server, its cluster and agent processes ----


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
        for proc in self.procs:  # the test is over: nothing of theirs is needed
            kill_group(proc)
        if self.server is not None:
            kill_group(self.server)
            self.server = None


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
