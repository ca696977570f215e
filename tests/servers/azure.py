"""Azure Blob test server: Azurite (from the npm registry, pinned in package.json), started
once per run on a free loopback port, with the well-known devstoreaccount1 key.

`make test` installs it (`npm ci` into node_modules/); run alone, the fixture does the same
the first time. Azurite checks Shared Key signatures, so a wrong key is refused
(AuthenticationFailed) as on Azure.
"""

from __future__ import annotations

import itertools
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .util import free_port, stop_group, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
# Azurite's documented development key (public, the same in every Azurite)
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class AzureServer:
    endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    account: str = ACCOUNT
    key: str = KEY
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def secret(self) -> str:
        """The endpoint secret the connector takes: the account key."""
        return self.key

    def env(self) -> dict[str, str]:
        """The environment a process (the CLI) finds the credentials in."""
        return {"AZURE_STORAGE_KEY": self.key}

    def service(self):
        """A BlobServiceClient for this server, with the valid key."""
        from azure.storage.blob import BlobServiceClient

        credential = {"account_name": self.account, "account_key": self.key}
        return BlobServiceClient(self.endpoint, credential=credential)

    def container(self, name: str):
        return self.service().get_container_client(name)

    def make_container(self, name: str | None = None) -> str:
        """Create a container, by default named as no other test's; return its name."""
        if name is None:
            name = f"test-{next(self._numbers)}-{uuid.uuid4().hex[:8]}"
        self.service().create_container(name)
        return name

    def azure_url(self, container: str, prefix: str = "", endpoint: str = "") -> str:
        """The connector's URL for `container/prefix` on this server (or via `endpoint`)."""
        return f"azure://{self.account}/{container}/{prefix}?endpoint={endpoint or self.endpoint}"


def install_azurite() -> Path:
    """node_modules/.bin/azurite-blob, installed from package-lock.json if missing."""
    if not AZURITE.exists():
        subprocess.run(  # noqa: S603 - fixed command
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],  # noqa: S607
            cwd=ROOT,
            check=True,
            stdin=subprocess.DEVNULL,
        )
    return AZURITE


def start_azurite(location: Path, *, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start Azurite's blob service on a loopback port; return it and the account's URL."""
    executable = install_azurite()
    port = port or free_port()
    location.mkdir(parents=True, exist_ok=True)
    log_path = location / "azurite.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - fixed command
            [
                str(executable),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(port),
                "--location",
                str(location),
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
            ],  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for_port(port, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        stop_group(proc)
        raise RuntimeError(f"{exc}; Azurite log:\n{log_path.read_text()}") from exc
    return proc, f"http://127.0.0.1:{port}/{ACCOUNT}"


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureServer]:
    """Azurite on a free loopback port, checking signatures, for the whole run."""
    proc, endpoint = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield AzureServer(endpoint)
    finally:
        stop_group(proc, term_wait=1.0)  # its data is a temp folder: nothing to lose


@pytest.fixture
def azure_container(azure_server: AzureServer) -> str:
    """A fresh, empty container's name."""
    return azure_server.make_container()


@pytest.fixture
def contract_azure(azure_server: AzureServer, azure_container: str) -> Iterator[object]:
    """An AzureConnector rooted at an empty prefix of a fresh container, with neighbours
    outside the root (a sibling prefix sharing its first letters, a blob beside it)."""
    from migrator.storage.azure import from_url

    container = azure_server.container(azure_container)
    for name in ("root-sibling/x.txt", "outside.txt", "root0"):
        container.upload_blob(name, b"not under the root")
    connector = from_url(azure_server.azure_url(azure_container, "root"), azure_server.secret)
    try:
        yield connector
    finally:
        connector.close()


@pytest.fixture
def contract_azure_missing(azure_server: AzureServer) -> Iterator[object]:
    """An AzureConnector for a container that does not exist."""
    from migrator.storage.azure import from_url

    url = azure_server.azure_url(f"missing-{uuid.uuid4().hex[:12]}", "root")
    connector = from_url(url, azure_server.secret)
    try:
        yield connector
    finally:
        connector.close()
