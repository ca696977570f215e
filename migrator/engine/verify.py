"""A verify pass: every planned item re-compared with what the destination holds, and
nothing written.

The source side is the entry the pass's scan just read (size, mtime, the hashes the
source knows, and those the last pass wrote when the file has not changed since); the
destination side is its stat. They are compared in rclone's order (size, then a hash
both sides know, then mtime within the coarser precision: `compare.same_file`). A match
is `unchanged` (verified); a difference fails with `verify_mismatch`, an object that is
not there with `missing_at_destination`.
"""

from __future__ import annotations

from migrator.storage import Capabilities, Connector, Entry, NotFound

from .compare import HASH_PREFERENCE, mtime_equal
from .copy import CopyTask, Outcome, State

VERIFY_MISMATCH = "verify_mismatch"
MISSING_AT_DESTINATION = "missing_at_destination"


def difference(src: Entry, dst: Entry, src_caps: Capabilities, dst_caps: Capabilities) -> str:
    """Why the destination does not hold the source file, in words ("" when it does);
    the same decision as `compare.same_file`, saying which test failed."""
    if src.size != dst.size:
        return f"size at destination {dst.size} != source {src.size}"
    for algo in HASH_PREFERENCE:
        a, b = src.hash(algo), dst.hash(algo)
        if a and b:
            return "" if a == b else f"{algo} at destination {b} != source {a}"
    if not mtime_equal(src.mtime_ns, dst.mtime_ns, src_caps, dst_caps):
        return f"modification time at destination {dst.mtime_ns} != source {src.mtime_ns} (ns)"
    return ""


def verify_one(task: CopyTask, src: Connector, dst: Connector) -> Outcome:
    """Compare one planned item with the destination; reads no data, writes nothing.
    Storage errors other than NotFound propagate (copy_one retries transient ones)."""
    if task.kind == "dir":
        if not dst.capabilities.directories:  # object stores: folders are implied by names
            return Outcome(task.item_id, State.UNCHANGED)
        try:
            existing = dst.stat(task.dest_path)
        except NotFound:
            return Outcome(task.item_id, State.FAILED, MISSING_AT_DESTINATION,
                           f"no folder at {task.dest_path}")  # fmt: skip
        if existing.kind != "dir":
            return Outcome(task.item_id, State.FAILED, VERIFY_MISMATCH,
                           "a file has the folder's name at the destination")  # fmt: skip
        return Outcome(task.item_id, State.UNCHANGED)
    try:
        existing = dst.stat(task.dest_path)
    except NotFound:
        return Outcome(task.item_id, State.FAILED, MISSING_AT_DESTINATION,
                       f"no object at {task.dest_path}")  # fmt: skip
    if existing.kind != "file":
        return Outcome(task.item_id, State.FAILED, VERIFY_MISMATCH,
                       "a folder has the file's name at the destination")  # fmt: skip
    why = difference(task.entry(), existing, src.capabilities, dst.capabilities)
    if why:
        return Outcome(task.item_id, State.FAILED, VERIFY_MISMATCH, why)
    return Outcome(task.item_id, State.UNCHANGED)
