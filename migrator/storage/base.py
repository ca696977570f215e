"""The connector interface: immutable Entries, declared capabilities (the typed errors
are in `errors`).

Every storage kind (local, gcs, smb, synthetic, ...) implements `Connector`. The engine
only talks to this interface, never to a concrete backend. No Django here.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from .errors import ConnectFailed, NotFound, StorageError, Unsupported

__all__ = [
    "Capabilities",
    "Change",
    "Connector",
    "Entry",
    "ScanError",
    "Watch",
    "WatchError",
    "Written",
    "join",
    "path_key",
]

Kind = Literal["file", "dir", "link"]  # links are reported, never followed


@dataclass(frozen=True, slots=True)
class Entry:
    """One file or folder, by its path relative to the connector's root ("a/b.txt")."""

    path: str
    kind: Kind = "file"
    size: int = 0
    mtime_ns: int = 0
    hashes: tuple[tuple[str, str], ...] = ()  # (("md5", hex), ("crc32c", hex)) known for free
    acl: object | None = None  # opaque handle, meaningful to the connector that made it
    attributes: int = 0  # Windows file attributes where the source has them (hidden, system)

    @property
    def is_dir(self) -> bool:
        return self.kind == "dir"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def hash(self, algo: str) -> str | None:
        for name, value in self.hashes:
            if name == algo:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Written:
    """What the destination reports after an atomic write."""

    size: int
    hashes: tuple[tuple[str, str], ...] = ()

    def hash(self, algo: str) -> str | None:
        return dict(self.hashes).get(algo)


@dataclass(frozen=True, slots=True)
class Capabilities:
    hashes: frozenset[str] = frozenset()  # hashes the backend reports itself ("md5", "crc32c")
    # hashes a copy computes of every byte it sends here, by default (a job's options.hashes
    # asks for more): what the destination checks on upload, else crc32c for the manifest
    # and catch-up passes (md5 costs 1.6 s a GB on this kind of machine, crc32c almost none)
    verify_hashes: frozenset[str] = frozenset({"crc32c"})
    # why nothing written can be read back, for a destination that verifies and discards
    # (null://, for benchmarks); "" for storage that keeps what it is given
    discards: str = ""
    mtime_precision_ns: int = 1  # 1 = ns, 100 = NTFS, 10**9 = seconds
    acl: bool = False
    watch: bool = False
    case_insensitive: bool = False
    directories: bool = True  # False for object stores: folders are implied by names
    # move() works: a rename on the storage itself (local, SMB), or a copy then a delete
    # of each object (GCS: not atomic, and it costs a copy per object)
    rename: bool = False
    # True for object stores: a listed name is an opaque string, where "", "." and ".."
    # parts ("a//b", "a/./b") are characters of one object's name, read as they are (a
    # write still refuses them; the planner renames them for the destination)
    literal_names: bool = False
    writable: bool = True
    # Names the storage itself refuses, whatever sanitization profile a job picks (read by
    # migrator.sanitize.hard_limits_for). Lengths count UTF-8 bytes, or UTF-16 code units
    # (what Windows counts); None is no limit. '/' and NUL are refused everywhere.
    max_name_bytes: int | None = None
    max_name_units: int | None = None
    max_path_bytes: int | None = None
    max_path_units: int | None = None
    forbidden_chars: frozenset[str] = frozenset()
    reserved_paths: tuple[str, ...] = ()  # no path may be one of these or start "<it>/"
    # Windows' naming rules: none of "*:<>?\| or control characters, no trailing dot or
    # space, no device names (CON, LPT1.txt); their definition is migrator.sanitize.WINDOWS
    windows_names: bool = False


class Connector(abc.ABC):
    """A place files live. Paths are relative, '/'-separated, never start with '/'."""

    scheme: str = ""
    capabilities: Capabilities = Capabilities()

    @abc.abstractmethod
    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        """Yield every entry under `prefix` (not `prefix` itself), streaming.

        Order is depth-first with names sorted (by code point) within each folder, a folder
        just before its contents, so `path_key(entry.path)` strictly increases: a scan can
        resume after the last recorded entry. A folder that cannot be listed is yielded as
        a `ScanError` (after its own Entry) and the walk goes on; it never stops the scan.
        Paths yielded are relative to `prefix`'s parent root, i.e. include `prefix`.
        """

    @abc.abstractmethod
    def stat(self, path: str) -> Entry:
        """The entry at `path`; raises NotFound."""

    @abc.abstractmethod
    def open(self, path: str) -> BinaryIO:
        """A readable binary stream of the file's bytes; raises NotFound, AccessDenied, Locked."""

    @abc.abstractmethod
    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        """Write `stream` to `path` atomically (no partial object ever visible), setting
        the mtime of `entry`. Expected hashes in `entry.hashes` are sent where the backend
        checks them, so a corrupted upload is refused."""

    @abc.abstractmethod
    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        """Create the folder (and parents); True when it was created, False when it existed."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove a file or an empty folder; raises NotFound."""

    def move(self, src_path: str, dst_path: str) -> None:
        """Move the file or folder (with its contents) at `src_path` to `dst_path`, making
        missing parents and replacing a file there, where `capabilities.rename`; raises
        NotFound when `src_path` is not there."""
        raise Unsupported(src_path, "this storage cannot move or rename")

    def listing(self, prefix: str = "") -> Iterator[Entry]:
        """Every file under `prefix`, flat, for comparing the destination with a manifest
        (no folders, no errors: a folder that cannot be listed raises). Default: the files
        of `scan()`; an object store overrides it with one listing without delimiter."""
        for item in self.scan(prefix):
            if isinstance(item, ScanError):
                if item.path == prefix.strip("/") and isinstance(item.error, NotFound):
                    return  # no such folder: nothing under it
                raise item.error
            if item.kind == "file":
                yield item

    def folder_names(self, path: str, limit: int) -> set[str] | None:
        """The names in the folder at `path` (an empty set when there is no such folder),
        or None when this storage cannot say cheaply or the folder holds more than
        `limit`: the copy then asks `stat` for each file. Lets a copy into a new folder
        skip asking for every file whether it is already there."""
        return None

    def changed_while_read(self, stream: BinaryIO) -> str:
        """Called when a stream from open() has given its last byte: what moved in the
        source file while it was read (size, mtime), in words, or "" when nothing did
        or this storage cannot tell cheaply."""
        return ""

    def read_acl(self, path: str) -> object:
        raise Unsupported(path, "this storage has no ACLs")

    def write_acl(self, path: str, acl: object) -> None:
        raise Unsupported(path, "this storage has no ACLs")

    def watch(self, prefix: str = "") -> Watch:
        """Changes under `prefix` as they happen, where `capabilities.watch`: an iterator
        of `Change` and `WatchError` (changes may have been lost: reconcile), ended by
        its `close()` from any thread."""
        raise Unsupported(prefix, "this storage cannot report changes")

    def check(self) -> None:
        """Prove the endpoint is usable (list the root); raise ConnectFailed in words."""
        try:
            for item in self.scan(""):
                if isinstance(item, ScanError):
                    raise item.error
                break
        except ConnectFailed:
            raise
        except StorageError as exc:
            raise ConnectFailed("", str(exc)) from exc

    def close(self) -> None:  # noqa: B027 - most connectors hold nothing to release
        """Release connections."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ChangeKind = Literal["created", "modified", "deleted", "moved"]


@dataclass(frozen=True, slots=True)
class Change:
    """Something that happened at a watched source: `path` relative to the connector's
    root; for "moved", `new_path` is where it went (empty when it left the watched tree)."""

    path: str
    kind: ChangeKind
    new_path: str = ""
    is_dir: bool = False


@dataclass(frozen=True, slots=True)
class WatchError:
    """The watch lost changes or its connection ("overflow", "disconnected", "error"):
    what it reported since is incomplete, and a reconciliation scan is due."""

    kind: str
    message: str


class Watch(abc.ABC):
    """A running watch: iterate for changes (blocking), close() from any thread."""

    @abc.abstractmethod
    def __iter__(self) -> Iterator[Change | WatchError]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


def path_key(path: str) -> tuple[str, ...]:
    """The order scans yield in: by path components, so 'a/b' sorts before 'a-c'."""
    return tuple(path.split("/")) if path else ()


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


@dataclass(slots=True)
class ScanError:
    """A folder or file the scan could not read, reported instead of silently skipped."""

    path: str
    error: StorageError = field(repr=False)
    kind: Kind = "dir"  # what could not be read: a folder's listing, or one file
