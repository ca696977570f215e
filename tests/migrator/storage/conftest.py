"""The contract suite's fixtures: one `connector` per writable storage kind, and
`any_connector` per kind (the read-only synthetic source too).

Each kind provides, in the plugin that starts its server (tests/servers/<kind>.py):
  contract_<kind>          a fresh Connector rooted at an empty, unique location, with
                           something outside that root it must never see;
  contract_<kind>_missing  a Connector whose root does not exist (no folder, bucket, share).
The synthetic source is computed, not stored: `contract_synthetic` is a small tree of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.storage import Connector, connector_for
from migrator.storage.local import LocalConnector, from_url

WRITABLE_KINDS = ["local", "gcs", "smb", "null", "s3", "sftp", "azure"]
KINDS = [*WRITABLE_KINDS, "synthetic"]
# d0/f0.dat .. d0/f2.dat, d1/f3.dat, d1/f4.dat
SYNTHETIC_URL = "synthetic://?files=5&folders=2&min_size=0&max_size=3000"


@pytest.fixture(params=WRITABLE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def connector(kind: str, request: pytest.FixtureRequest) -> Connector:
    """A fresh, empty, writable root of each kind that can be written."""
    return request.getfixturevalue(f"contract_{kind}")


@pytest.fixture(params=KINDS)
def any_connector(request: pytest.FixtureRequest) -> Connector:
    """Each kind, read-only ones too, for what every connector must do."""
    return request.getfixturevalue(f"contract_{request.param}")


@pytest.fixture
def missing_connector(kind: str, request: pytest.FixtureRequest) -> Connector:
    return request.getfixturevalue(f"contract_{kind}_missing")


@pytest.fixture
def contract_local(tmp_path: Path) -> Iterator[Connector]:
    (tmp_path / "root-sibling").mkdir()
    (tmp_path / "root-sibling" / "x.txt").write_bytes(b"not under the root")
    (tmp_path / "outside.txt").write_bytes(b"not under the root")
    (tmp_path / "root").mkdir()
    connector = from_url((tmp_path / "root").as_uri())
    try:
        yield connector
    finally:
        connector.close()


@pytest.fixture
def contract_local_missing(tmp_path: Path) -> LocalConnector:
    return LocalConnector(str(tmp_path / "no-such-folder"))


@pytest.fixture
def contract_null() -> Connector:
    """null:// verifies and discards: each one is empty, whatever was written before."""
    return connector_for("null://contract")


@pytest.fixture
def contract_null_missing() -> Connector:
    return connector_for("null://")  # has no root that could be missing (discards says why)


@pytest.fixture
def contract_synthetic() -> Connector:
    return connector_for(SYNTHETIC_URL)
