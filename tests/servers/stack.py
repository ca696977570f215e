"""PostgreSQL + Redis for the production-stack run of the tests.

    python -m tests.servers.stack -- python -m pytest tests/jobs

Uses the servers already listening on 127.0.0.1:5432 / :6379 when there are (this machine
starts them), else starts private ones in a temporary folder on free ports (PostgreSQL as
the `postgres` user: it refuses to run as root), sets DATABASE_URL and REDIS_URL for the
command, and stops what it started by its PID.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from .util import free_port, stop_group, wait_for_port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"PostgreSQL's {name} not found: apt-get install postgresql")
    return path


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PrivatePostgres:
    """A PostgreSQL server of our own in a temporary folder, on a free port, that a test
    may restart (stop it, start it again on the same port and data)."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="migrator-pg-")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = os.path.join(self.folder, "data")
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", self.data, "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8"]),
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        self.port = free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            _as_postgres([_pg_bin("postgres"), "-D", self.data, "-p", str(self.port), "-h",
                          "127.0.0.1", "-k", self.folder, "-c", "fsync=off"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_for_port(self.port, proc=self.proc, timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, term_wait=10)
            self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextmanager
def postgres() -> Iterator[str]:
    """A server URL (no database name): reuse 5432 when it answers, else start one."""
    if _listening(5432):
        yield "postgres://postgres@127.0.0.1:5432"
        return
    with private_postgres() as server:
        yield server.url


@contextmanager
def redis() -> Iterator[str]:
    if _listening(6379):
        yield "redis://127.0.0.1:6379/7"
        return
    folder = tempfile.mkdtemp(prefix="migrator-redis-")
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port",
         str(port), "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port(port, proc=proc)
        yield f"redis://127.0.0.1:{port}/7"
    finally:
        stop_group(proc)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    with ExitStack() as stack:
        pg = stack.enter_context(postgres())
        redis_url = stack.enter_context(redis())
        env = {**os.environ, "DATABASE_URL": f"{pg}/migrator", "REDIS_URL": redis_url,
               "MIGRATOR_TEST_STACK": "postgres"}  # fmt: skip
        subprocess.run(["redis-cli", "-u", redis_url, "FLUSHDB"], check=False,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        return subprocess.run(argv, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
