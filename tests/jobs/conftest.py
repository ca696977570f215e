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
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrator.storage import Entry, connector_for
from tests.jobs.factories import CASES, FILES, OWNERS, descriptor, new_folder

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
