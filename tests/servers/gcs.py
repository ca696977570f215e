"""GCS emulator fixture (gcp-storage-emulator), started once per run on loopback."""

from __future__ import annotations

import itertools
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from .util import free_port, stop_group, wait_for_port


class GCSServer:
    def __init__(self, url: str) -> None:
        self.url = url
        self._client: storage.Client | None = None
        self._numbers = itertools.count(1)

    def client(self) -> storage.Client:
        """A client for the emulator (STORAGE_EMULATOR_HOST is set for the session)."""
        return storage.Client(project="test", credentials=AnonymousCredentials())

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket, by default with a name no other test uses; return its name."""
        if name is None:
            name = f"test-{next(self._numbers)}-{uuid.uuid4().hex[:8]}"
        if self._client is None:
            self._client = self.client()
        self._client.create_bucket(name)
        return name


_stop = stop_group


def start_emulator(
    log_path: Path, *, port: int | None = None, data_dir: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """Start gcp-storage-emulator on a loopback port (a free one unless given); return it
    and its URL. With `data_dir` it keeps its buckets there, so a restart on the same port
    finds them again (a server that went away and came back); else in memory."""
    executable = Path(sys.executable).parent / "gcp-storage-emulator"
    port = port or free_port()
    storage = [] if data_dir else ["--in-memory"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(executable), "start", "--host=127.0.0.1", f"--port={port}", *storage],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=data_dir,
        )
    try:
        wait_for_port(port, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        _stop(proc)
        raise RuntimeError(f"{exc}; emulator log:\n{log_path.read_text()}") from exc
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSServer]:
    """gcp-storage-emulator on a free loopback port, in memory, for the whole run."""
    proc, url = start_emulator(tmp_path_factory.mktemp("gcs") / "emulator.log")
    patch = pytest.MonkeyPatch()
    try:
        patch.setenv("STORAGE_EMULATOR_HOST", url)
        yield GCSServer(url)
    finally:
        patch.undo()
        _stop(proc)


@pytest.fixture
def gcs_bucket(gcs_server: GCSServer) -> str:
    """A fresh, empty bucket's name."""
    return gcs_server.make_bucket()


@pytest.fixture
def contract_gcs(gcs_server: GCSServer, gcs_bucket: str) -> Iterator[object]:
    """A GCSConnector rooted at an empty prefix of a fresh bucket, with neighbours outside
    the root (a sibling prefix sharing its first letters, an object beside it) that it
    must never see."""
    from migrator.storage.gcs import from_url

    bucket = gcs_server.client().bucket(gcs_bucket)
    for name in ("root-sibling/x.txt", "outside.txt", "root0"):
        bucket.blob(name).upload_from_string(b"not under the root")
    connector = from_url(f"gs://{gcs_bucket}/root")
    try:
        yield connector
    finally:
        connector.close()


@pytest.fixture
def contract_gcs_missing(gcs_server: GCSServer) -> Iterator[object]:
    """A GCSConnector for a bucket that does not exist."""
    from migrator.storage.gcs import from_url

    connector = from_url(f"gs://missing-{uuid.uuid4().hex[:12]}/root")
    try:
        yield connector
    finally:
        connector.close()
