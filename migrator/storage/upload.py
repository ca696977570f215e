"""Writing through upload sessions made elsewhere: the on-premises agent's destination
when the data goes to a cloud whose keys it never holds (GCS resumable upload sessions,
created by the server for each object). Only write is possible; what is already there
was checked by the server that made the sessions."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from typing import BinaryIO

import requests

from .base import Capabilities, Connector, Entry, ScanError, Written
from .errors import NotFound, StorageError, Transient, Unsupported

TIMEOUT = 120


class _Body:
    """A source stream as a request body of known length: requests streams it."""

    def __init__(self, stream: BinaryIO, size: int) -> None:
        self.stream, self.size = stream, size

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        return self.stream.read(n)


class SessionUploads(Connector):
    """Paths -> upload session URIs. `capabilities` are the destination's own (what it
    verifies: md5 and crc32c for GCS)."""

    scheme = "upload"

    def __init__(self, sessions: Mapping[str, str], capabilities: Capabilities) -> None:
        self.sessions = dict(sessions)
        self.capabilities = capabilities
        self.http = requests.Session()

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        raise Unsupported(prefix, "an upload session only takes bytes")

    def stat(self, path: str) -> Entry:
        raise NotFound(path, "checked by the server that made the upload session")

    def folder_names(self, path: str, limit: int) -> set[str] | None:
        return set()  # the server sent sessions only for what is not there yet

    def open(self, path: str) -> BinaryIO:
        raise Unsupported(path, "an upload session only takes bytes")

    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        uri = self.sessions.get(path)
        if uri is None:
            raise Unsupported(path, "no upload session was made for this object")
        try:
            response = self.http.put(
                uri,
                data=_Body(stream, entry.size),
                timeout=TIMEOUT,
                headers={"Content-Length": str(entry.size)},
            )
        except requests.RequestException as exc:
            cause = exc.__context__ if isinstance(exc.__context__, StorageError) else None
            if cause is not None:
                raise cause from exc
            raise Transient(path, f"upload interrupted: {exc.__class__.__name__}") from exc
        if response.status_code >= 500:
            raise Transient(path, f"the upload was answered {response.status_code}")
        if response.status_code >= 400:
            raise StorageError(path, f"the upload was refused ({response.status_code})")
        stored = response.json()
        hashes = tuple(
            (algo, base64.b64decode(stored[key]).hex())
            for algo, key in (("md5", "md5Hash"), ("crc32c", "crc32c"))
            if stored.get(key)
        )
        return Written(size=int(stored.get("size", entry.size)), hashes=hashes)

    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        raise Unsupported(path, "a bucket has no folders")

    def delete(self, path: str) -> None:
        pass  # the server, holding the keys, removes what verify refused (on record)
