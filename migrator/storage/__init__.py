"""Connectors, one module per kind, chosen by URL scheme.

connector_for("file:///srv/data")            -> LocalConnector
connector_for("gs://bucket/prefix")          -> GCSConnector
connector_for("s3://bucket/prefix?endpoint=https://minio:9000", secret="KEY:SECRET")
connector_for("azure://account/container/prefix", secret="account key or SAS token")
connector_for("sftp://alice@host:22/srv/data?hostkey=SHA256:…", secret="pw or key")
connector_for("smb://EXAMPLE;alice@host:445/share/path", secret="pw")
"""

from __future__ import annotations

import importlib
from types import ModuleType
from urllib.parse import urlsplit

from . import base, errors
from .base import *  # noqa: F403 - the interface, re-exported
from .base import Capabilities, Connector
from .errors import *  # noqa: F403 - the typed errors, re-exported

__all__ = [
    *base.__all__,
    *errors.__all__,
    "capabilities_of",
    "connector_for",
    "connector_module",
    "kind_of",
]

# scheme -> "module:factory"; a factory takes (url, secret) and returns a Connector
SCHEMES = {
    "azure": "migrator.storage.azure:from_url",
    "file": "migrator.storage.local:from_url",
    "gs": "migrator.storage.gcs:from_url",
    "null": "migrator.storage.null:from_url",
    "s3": "migrator.storage.s3:from_url",
    "sftp": "migrator.storage.sftp:from_url",
    "smb": "migrator.storage.smb:from_url",
    "synthetic": "migrator.storage.synthetic:from_url",
}


def kind_of(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ValueError(f"unknown storage URL {url!r}: expected one of {known}")
    return scheme


def _registered(url: str) -> tuple[str, ModuleType, str]:
    """The URL's scheme, its connector's module (imported) and the factory's name."""
    kind = kind_of(url)
    module_name, factory = SCHEMES[kind].split(":")
    return kind, importlib.import_module(module_name), factory


def connector_module(url: str) -> ModuleType:
    """The module of the URL's connector, imported (no connection, no credentials).
    Raises ValueError for an unknown scheme."""
    return _registered(url)[1]


def connector_for(url: str, secret: str | None = None) -> Connector:
    """Open the connector a URL names. Raises ValueError for a malformed URL."""
    _, module, factory = _registered(url)
    return getattr(module, factory)(url, secret)


def capabilities_of(url: str) -> Capabilities:
    """What the connector for the URL's scheme declares, without opening one (no
    connection, no credentials). Raises ValueError for an unknown scheme."""
    kind, module, _ = _registered(url)
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Connector) and value.scheme == kind:
            return value.capabilities
    return Capabilities()
