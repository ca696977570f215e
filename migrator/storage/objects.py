"""What the object-store connectors (gcs.py, s3.py) share: a bucket has no folders, only
names with '/' in them, so each lists a folder's names by prefix and delimiter and turns
them into the scan's Entries the same way.

- `check_object_path`: a relative object path, or InvalidPath; `check_name_bytes`: a
  whole object name within the store's length, in UTF-8.
- `folder_level`: one folder's children in scan order from listing pages, the folders
  implied by common prefixes, names beginning with '/' each a failed entry.
- `in_path_order`: a listing sorted by raw name reordered into the scan's path order.
- `read_source` / `SourceError`: the caller's bytes read for an upload, and the caller's
  own error carried past the upload machinery.
- `content_type`: the type an object is stored with, from its name.
- `ChecksumMismatch`: the bytes stored are not the bytes meant.
"""

from __future__ import annotations

import heapq
import mimetypes
import posixpath
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, TypeVar

from .base import Entry, ScanError
from .errors import InvalidPath, StorageError

T = TypeVar("T")
READ_PIECE = 8 << 20  # the most read from the caller's stream at once


class ChecksumMismatch(StorageError):
    """The bytes stored are not the bytes meant: the upload was refused or removed."""

    reason = "checksum_mismatch"


# -- names -----------------------------------------------------------------------------


def check_object_path(path: str, *, literal: bool, refused: str, refused_why: str) -> str:
    """A relative object path, or InvalidPath: no '..', '.', empty parts, leading '/' or
    a character of `refused` (the store's; InvalidPath says `refused_why`). `literal`: the
    name of an object as listed at a source, where such parts are just characters of the
    name (nothing is written under it; the planner gives it a safe name)."""
    if path in ("", "."):
        return ""
    if literal:
        return path
    if any(ch in path for ch in refused):
        raise InvalidPath(path, refused_why)
    if path.startswith("/"):
        raise InvalidPath(path, "absolute path")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise InvalidPath(path, "path would escape the destination root")
    return path


def check_name_bytes(name: str, path: str, max_bytes: int, noun: str) -> str:
    """`name` (the whole object name of `path`), or InvalidPath when its UTF-8 is longer
    than `max_bytes` or it is not valid Unicode (a lone surrogate from a source)."""
    if len(name.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidPath(path, f"{noun} longer than {max_bytes} bytes")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPath(path, "name is not valid Unicode") from exc
    return name


def content_type(name: str) -> str:
    return mimetypes.types_map.get(posixpath.splitext(name)[1].lower()) or (
        "application/octet-stream"
    )


# -- listing ---------------------------------------------------------------------------


def _bound(raw: str) -> str:
    """The smallest name-in-folder that can follow `raw` in a listing (sorted by raw name,
    where folder 'x/' sorts after 'x-y' but must be yielded before it)."""
    for index, char in enumerate(raw):
        if char < "/":
            return raw[:index]
    return raw[:-1] if raw.endswith("/") else raw


def in_path_order(listing: Iterable[tuple[str, T]]) -> Iterator[tuple[str, bool, T]]:
    """Reorder one folder's listing, sorted by raw name ('b.txt', 'sub/'), into the scan
    order: by name without the trailing '/', a file before a folder of the same name.
    Yields (name, is_folder, item) holding only the few items whose place is not yet
    known, never the whole folder."""
    pending: list[tuple[str, bool, int, T]] = []
    for seq, (raw, item) in enumerate(listing):
        is_folder = raw.endswith("/")
        heapq.heappush(pending, (raw[:-1] if is_folder else raw, is_folder, seq, item))
        bound = _bound(raw)
        while pending and pending[0][0] < bound:
            name, folder, _, value = heapq.heappop(pending)
            yield name, folder, value
    while pending:
        name, folder, _, value = heapq.heappop(pending)
        yield name, folder, value


def folder_level(
    rel: str,
    pages: Iterable[list[tuple[str, T | None]]],
    file_entry: Callable[[str, T], Entry | ScanError],
    rooted: Callable[[], Iterator[Entry | ScanError]],
) -> Iterator[Entry | ScanError]:
    """One folder's children in scan order. `pages` yields listing pages of (name under
    the folder, item), a folder as ('sub/', None), and raises StorageError when the
    listing fails (the scan goes on: the folder gets a ScanError after what was listed).
    `file_entry(path, item)` makes a file's Entry; `rooted()` the failed entries of the
    names beginning with '/' under the root, which no path can hold. The folder's own
    placeholder object ('rel/') is skipped."""
    failure: StorageError | None = None

    def listing() -> Iterator[tuple[str, T | None]]:
        nonlocal failure
        try:
            for page in pages:
                yield from sorted(page, key=lambda pair: pair[0])
        except StorageError as exc:
            failure = exc

    for name, is_folder, item in in_path_order(listing()):
        if name == "" and not is_folder:
            continue  # the folder's own placeholder object "rel/"
        if name == "" and not rel:  # names "/…": no folder path can hold them
            yield from rooted()
            continue
        # "" (from "a//b"), "." and ".." are names like any other here: the planner
        # renames them for the destination (never a path that climbs out of it)
        path = f"{rel}/{name}" if rel else name
        if is_folder:
            yield Entry(path, "dir")
        else:
            yield file_entry(path, item)  # type: ignore[arg-type]
    if failure is not None:
        yield ScanError(rel, failure)


# -- uploads ---------------------------------------------------------------------------


class SourceError(Exception):
    """Carries an exception raised by the caller's stream past the upload machinery."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def read_source(stream: BinaryIO, size: int) -> bytes:
    """Up to `size` bytes from the caller's stream, fewer only at its end; its errors
    raised as SourceError."""
    parts: list[bytes] = []
    wanted = size
    while wanted > 0:
        try:
            data = stream.read(min(wanted, READ_PIECE))
        except Exception as exc:
            raise SourceError(exc) from exc
        if not data:
            break
        parts.append(data)
        wanted -= len(data)
    return b"".join(parts)
