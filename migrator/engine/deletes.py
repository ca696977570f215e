"""Objects deleted at the source: what a pass does with their copies at the destination.

Pure Python, no Django. The catch-up pass hands every destination object that has no row
in the new pass to jobs.deletions.gone_record as a Gone; at pass end `apply` keeps them,
deletes them (mirror: files first, then folders deepest first) or moves them into the
trash folder at the destination (`.migrator-trash/<pass number>/<dest_path>`). Nothing
outside the destination's root and nothing in the trash folder is ever deleted or moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from migrator.storage.base import Connector
from migrator.storage.errors import NotFound, StorageError

KEEP, MIRROR, TRASH = "keep", "mirror", "trash"
POLICIES = (KEEP, MIRROR, TRASH)
TRASH_FOLDER = ".migrator-trash"

# outcome actions (jobs.choices.DeletionAction has the same values)
KEPT, DELETED, TRASHED, FAILED = "kept", "deleted", "trashed", "failed"
# reasons
ALREADY_GONE = "already_gone"
IN_TRASH = "in_trash"
UNSAFE_PATH = "unsafe_path"


@dataclass(frozen=True, slots=True)
class Gone:
    """A destination object (file or folder) with no source entry in the new pass."""

    dest_path: str
    kind: str  # "file" | "dir"
    size: int = 0
    source_path: str = ""  # from the last pass's manifest, "" when we never wrote it
    ours: bool = False


@dataclass(frozen=True, slots=True)
class DeleteOutcome:
    """What became of one Gone: its action (kept, deleted, trashed, failed), the reason
    code and message in words when it was not simply done, where the trash holds it."""

    dest_path: str
    action: str
    reason: str = ""
    message: str = ""
    trash_path: str = ""


def trash_path_for(dest_path: str, pass_number: int) -> str:
    return f"{TRASH_FOLDER}/{pass_number}/{dest_path}"


def in_trash(path: str) -> bool:
    return path == TRASH_FOLDER or path.startswith(f"{TRASH_FOLDER}/")


def safe_path(path: str) -> bool:
    """A relative path that stays under the root: no empty, "." or ".." part, not absolute."""
    if not path or path.startswith(("/", "\\")) or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.replace("\\", "/").split("/"))


def ordered(items: Iterable[Gone]) -> list[Gone]:
    """Files first, then folders deepest first (a path sorts after its parent's, so by
    path, descending, every folder comes before the folder holding it)."""
    items = list(items)
    files = [g for g in items if g.kind != "dir"]
    folders = sorted((g for g in items if g.kind == "dir"), key=lambda g: g.dest_path)
    return files + folders[::-1]


def apply(
    dst: Connector, items: Iterable[Gone], policy: str, pass_number: int
) -> list[DeleteOutcome]:
    """Apply `policy` to `items` at `dst`, in order (files, then folders deepest first).
    Never raises for one item: each gets an outcome. A missing object is already gone,
    which is done."""
    if policy not in POLICIES:
        raise ValueError(f"unknown deletion policy {policy!r}: one of {', '.join(POLICIES)}")
    return [_one(dst, gone, policy, pass_number) for gone in ordered(items)]


def _one(dst: Connector, gone: Gone, policy: str, pass_number: int) -> DeleteOutcome:
    path = gone.dest_path
    if in_trash(path):
        return DeleteOutcome(path, KEPT, IN_TRASH, "in the trash folder: never deleted")
    if not safe_path(path):
        return DeleteOutcome(path, FAILED, UNSAFE_PATH, "not a path under the destination")
    if policy == KEEP:
        return DeleteOutcome(path, KEPT)
    done = DELETED if policy == MIRROR else TRASHED
    try:
        if policy == MIRROR:
            dst.delete(path)
            return DeleteOutcome(path, DELETED)
        target = trash_path_for(path, pass_number)
        if gone.kind == "dir":
            # its files went to the trash before it (under the same path there): make the
            # folder there, in case it was empty, and remove what is left of it here
            if dst.capabilities.directories:
                dst.mkdir(target)
            dst.delete(path)
        else:
            dst.move(path, target)
        return DeleteOutcome(path, TRASHED, trash_path=target)
    except NotFound:
        if gone.kind == "dir" and not dst.capabilities.directories:
            # an object store's folder is implied by the names under it: it went with them
            return DeleteOutcome(path, done)
        return DeleteOutcome(path, done, ALREADY_GONE, "already gone from the destination")
    except StorageError as exc:
        return DeleteOutcome(path, FAILED, exc.reason, exc.message)
    except Exception as exc:  # one object never stops the others
        return DeleteOutcome(path, FAILED, "io_error", f"{type(exc).__name__}: {exc}")
