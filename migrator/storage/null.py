"""A destination that verifies and discards: for benchmarks of the whole pipeline at
millions of files, where a real destination would measure itself.

    null://                       crc32c of what it is given
    null://bench?hashes=md5,crc32c  (the host part is a label, ignored)

`write` reads the whole stream, hashes it with the hashes it verifies, checks the byte
count against the Entry it was given, counts files and bytes, and keeps nothing: the
copy's verify compares the hashes it reports with the source stream's, as for any
destination.

It remembers nothing either: `stat`, `open` and `delete` raise NotFound, `scan` is empty,
and `folder_names` says every folder is empty, so a copy never asks about a file. Keeping
(path -> size, hashes) would let a catch-up pass find files "unchanged", but at ten
million files that is about a GB per process, which is what the benchmark must not
measure; a second pass to null:// copies everything again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit

import google_crc32c

from .base import Capabilities, Connector, Entry, ScanError, Written
from .errors import ChangedDuringCopy, InvalidPath, NotFound, Unsupported
from .local import check_relative

CHUNK = 1 << 20
KNOWN_HASHES = ("md5", "crc32c")
DISCARDS = "null:// verifies what it is given and keeps nothing: nothing written can be read back"


class Totals:
    """Files and bytes every null connector of this process took (for benchmarks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.files = 0
        self.bytes = 0

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.files += 1
            self.bytes += nbytes

    def reset(self) -> None:
        with self._lock:
            self.files = self.bytes = 0


TOTALS = Totals()


class NullConnector(Connector):
    scheme = "null"
    capabilities = Capabilities(
        hashes=frozenset({"crc32c"}),  # reported by write only: nothing is there to stat
        verify_hashes=frozenset({"crc32c"}),
        mtime_precision_ns=1,
        directories=False,  # folders are not kept either; a copy does not create them
        discards=DISCARDS,
    )
    # it hashes in this process and waits on nothing: threads add only GIL hand-offs
    copy_threads = 1

    def __init__(self, hashes: tuple[str, ...] = ("crc32c",)) -> None:
        unknown = set(hashes) - set(KNOWN_HASHES)
        if unknown:
            known = ", ".join(KNOWN_HASHES)
            raise ValueError(f"null: unknown hash(es) {', '.join(sorted(unknown))}; known: {known}")
        self.hash_names = tuple(h for h in KNOWN_HASHES if h in hashes)
        if self.hash_names != ("crc32c",):
            declared = frozenset(self.hash_names)
            self.capabilities = dataclasses.replace(
                type(self).capabilities, hashes=declared, verify_hashes=declared
            )
        self.files = 0
        self.bytes = 0

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        check_relative(prefix.strip("/"))
        return iter(())

    def stat(self, path: str) -> Entry:
        check_relative(path)
        raise NotFound(path, "null:// keeps nothing")

    def open(self, path: str) -> BinaryIO:
        check_relative(path)
        raise NotFound(path, "null:// keeps nothing")

    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        if not check_relative(path):
            raise InvalidPath(path, "cannot write the root")
        md5 = hashlib.md5(usedforsecurity=False) if "md5" in self.hash_names else None
        crc = google_crc32c.Checksum() if "crc32c" in self.hash_names else None
        size = 0
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if md5 is not None:
                md5.update(chunk)
            if crc is not None:
                crc.update(chunk)
        if size != entry.size:
            raise ChangedDuringCopy(path, f"{size} bytes arrived, the source listed {entry.size}")
        self.files += 1
        self.bytes += size
        TOTALS.add(size)
        hashes = []
        if md5 is not None:
            hashes.append(("md5", md5.hexdigest()))
        if crc is not None:
            hashes.append(("crc32c", crc.digest().hex()))
        return Written(size=size, hashes=tuple(hashes))

    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        raise Unsupported(path, "null:// keeps no folders")

    def delete(self, path: str) -> None:
        check_relative(path)
        raise NotFound(path, "null:// keeps nothing")

    def folder_names(self, path: str, limit: int) -> set[str] | None:
        return set()

    def check(self) -> None:
        return None


def from_url(url: str, secret: str | None = None) -> NullConnector:
    query = parse_qs(urlsplit(url).query)
    unknown = set(query) - {"hashes"}
    if unknown:
        raise ValueError(f"null: unknown parameter(s) {', '.join(sorted(unknown))}")
    if "hashes" not in query:
        return NullConnector()
    names = tuple(h.strip() for h in query["hashes"][-1].split(",") if h.strip())
    return NullConnector(hashes=names)
