"""The scan walk shared by the connectors that list folders (local, SMB, GCS): each one
supplies only "list one folder"; the order, the streaming and what is hidden are here.

Plain Python, no Django.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from .base import Entry, ScanError
from .errors import InvalidPath

T = TypeVar("T")

TEMP_PREFIX = ".mg-"
TEMP_SUFFIX = ".tmp"


def temp_name(name: str) -> str:
    """A fixed-length temp name derived from the final name: a retried write reuses (and
    so replaces) the temp file of an interrupted one, and none is ever left behind."""
    raw = name.encode("utf-8", "surrogateescape")
    digest = hashlib.sha1(raw, usedforsecurity=False).hexdigest()[:16]
    return f"{TEMP_PREFIX}{digest}{TEMP_SUFFIX}"


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX) and len(name) == 24


def walk(
    list_folder: Callable[[str], Iterable[Entry | ScanError]], start: str
) -> Iterator[Entry | ScanError]:
    """Every entry under `start`, depth first, a folder just before its contents.

    `list_folder(rel)` gives one folder's children in scan order (names sorted by code
    point), a folder that cannot be read as a ScanError. Only the folders on the way
    down are open at any time: never a whole tree in memory.
    """
    stack = [iter(list_folder(start))]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        yield item
        if isinstance(item, Entry) and item.kind == "dir":
            stack.append(iter(list_folder(item.path)))


def children(
    rel: str,
    listing: Iterable[tuple[str, T]],
    entry: Callable[[str, T], Entry | ScanError],
) -> list[Entry | ScanError]:
    """One folder's listing, (name, what the storage listed) sorted by name, as entries
    made by `entry(path, listed)`: "." and ".." and our temp files left out, a name that
    is not valid Unicode reported as a ScanError of that one entry."""
    out: list[Entry | ScanError] = []
    for name, listed in listing:
        if name in (".", "..") or is_temp(name):
            continue
        path = f"{rel}/{name}" if rel else name
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            shown = _escaped(path)
            out.append(ScanError(shown, InvalidPath(shown, "name is not valid Unicode"), "file"))
            continue
        out.append(entry(path, listed))
    return out


def _escaped(path: str) -> str:
    """A path with lone surrogates, printable: os.fsdecode's escapes of undecodable
    bytes (local names) shown as the bytes, other lone surrogates (SMB's UTF-16) as
    code points."""
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return path.encode("utf-8", "backslashreplace").decode("utf-8")
