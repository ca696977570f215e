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


# what a kind declares it cannot do: its tests are not collected for it (a declared
# capability, never a missing server); the contract holds it to what it declares instead
# (test_contract's discarding and no-rename tests)
DISCARDING_KINDS = {"null"}  # nothing written can be read back: Capabilities.discards
NO_RENAME_KINDS = {"null"}  # Capabilities.rename is False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        kind = params.get("kind") or params.get("any_connector")
        names = getattr(item, "fixturenames", ())
        reads_back = "populated" in names or "missing_connector" in names
        moves = item.name.startswith("test_move_")
        if (kind in DISCARDING_KINDS and reads_back) or (kind in NO_RENAME_KINDS and moves):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
