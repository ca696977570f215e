"""The contract suite's fixtures: one `connector` per storage kind.

Each kind provides, in the plugin that starts its server (tests/servers/<kind>.py):
  contract_<kind>          a fresh Connector rooted at an empty, unique location, with
                           something outside that root it must never see;
  contract_<kind>_missing  a Connector whose root does not exist (no folder, bucket, share).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.storage import Connector
from migrator.storage.local import LocalConnector, from_url

KINDS = ["local", "gcs", "smb"]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def connector(kind: str, request: pytest.FixtureRequest) -> Connector:
    return request.getfixturevalue(f"contract_{kind}")


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
