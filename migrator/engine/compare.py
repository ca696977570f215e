"""Deciding whether a destination object already holds the source file (rclone's order:
size first, then a hash both sides know, then mtime within the coarser precision)."""

from __future__ import annotations

from migrator.storage import Capabilities, Entry

HASH_PREFERENCE = ("md5", "crc32c")


def same_file(src: Entry, dst: Entry, src_caps: Capabilities, dst_caps: Capabilities) -> bool:
    if src.size != dst.size:
        return False
    for algo in HASH_PREFERENCE:
        a, b = src.hash(algo), dst.hash(algo)
        if a and b:
            return a == b
    return mtime_equal(src.mtime_ns, dst.mtime_ns, src_caps, dst_caps)


def mtime_equal(a: int, b: int, src_caps: Capabilities, dst_caps: Capabilities) -> bool:
    precision = max(src_caps.mtime_precision_ns, dst_caps.mtime_precision_ns, 1)
    return abs(a - b) < precision


def newer(src: Entry, dst: Entry, src_caps: Capabilities, dst_caps: Capabilities) -> bool:
    """True when the source is newer than the destination beyond the coarser precision."""
    precision = max(src_caps.mtime_precision_ns, dst_caps.mtime_precision_ns, 1)
    return src.mtime_ns - dst.mtime_ns >= precision
