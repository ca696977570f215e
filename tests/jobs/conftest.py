"""Fixtures to run the real CLI and the real worker cluster in subprocesses, each on a
file-backed SQLite database of its own (migrated once per session, copied per test)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def base_env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(
        MIGRATOR_DEV="1",
        DATABASE_URL=f"sqlite:///{db}",
        DJANGO_SETTINGS_MODULE="migrator.settings",
        PYTHONPATH=str(REPO),
    )
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("clidb") / "template.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=REPO,
        env=base_env(db),
        check=True,
    )
    return db


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
    db: Path
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
        with sqlite3.connect(self.db, timeout=20) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture
def cli(migrated_db: Path, tmp_path: Path) -> Cli:
    db = tmp_path / "db.sqlite3"
    shutil.copy(migrated_db, db)
    return Cli(db=db, env_extra={})


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
