"""Streams that hash as they read, and a token bucket for bandwidth limits."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import threading
import time
from collections.abc import Collection
from typing import BinaryIO, Protocol

import google_crc32c

# the content hashes a copy can compute, in the order manifests and wire rows hold them
KNOWN_HASHES = ("md5", "crc32c")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_malloc_tuned = False


def keep_freed_buffers() -> None:
    """Copying allocates and frees a buffer of about a MiB per chunk, again and again.
    glibc's defaults hand such memory back to the kernel and take it again, a page fault
    and a page zeroed for every 4 KiB: 280,000 faults per GiB read over SMB (measured),
    against 34,000 once freed buffers are kept, up to 64 MiB a process. Once per
    process, where glibc is the allocator; elsewhere nothing changes."""
    global _malloc_tuned
    if _malloc_tuned:
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 16 << 20)  # buffers up to 16 MiB from the heap
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)  # keep up to 64 MiB freed at its top
    except (OSError, AttributeError):
        pass


class SharedRate(Protocol):
    """A limit shared with other processes (every worker of a job): `take(nbytes)`
    returns once at least `nbytes` may be sent, and how many it granted (more, in
    chunks of its choosing, so that a MB costs a few operations on the shared store)."""

    def take(self, nbytes: int) -> int: ...


class RateLimiter:
    """A token bucket shared by the threads of one batch: at most `rate` bytes/s; and,
    with `shared`, bytes paid for to a bucket shared by all the job's workers."""

    def __init__(self, rate: int | None, shared: SharedRate | None = None) -> None:
        self.rate = rate if rate and rate > 0 else None
        self._lock = threading.Lock()
        self._next = time.monotonic()
        self.shared = shared
        self._credit = 0  # bytes already paid for to the shared bucket
        self._shared_lock = threading.Lock()

    def consume(self, nbytes: int) -> None:
        if self.shared is not None and nbytes > 0:
            with self._shared_lock:  # pay for what was just read, in whole chunks
                self._credit -= nbytes
                if self._credit < 0:
                    self._credit += self.shared.take(-self._credit)
        if self.rate is None or nbytes <= 0:
            return
        with self._lock:
            now = time.monotonic()
            # pay for what was just read before reading more
            self._next = max(now, self._next) + nbytes / self.rate
            wait = self._next - now
        if wait > 0:
            time.sleep(wait)


def parse_hashes(value: object) -> frozenset[str]:
    """The hashes a job asks for (its options' "hashes": a list, or "md5,crc32c"), on top
    of those its destination verifies anyway. ValueError, in words, for anything else."""
    if value in (None, "", [], ()):
        return frozenset()
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError('hashes must be a list of hash names, e.g. ["md5", "crc32c"]')
    chosen = {n.strip().lower() for n in names if n.strip()}
    unknown = chosen - set(KNOWN_HASHES)
    if unknown:
        known = ", ".join(KNOWN_HASHES)
        raise ValueError(f"unknown hash {', '.join(sorted(unknown))}: the known ones are {known}")
    return frozenset(chosen)


class HashingReader:
    """Wraps a source stream: every byte read is hashed (with the hashes asked for, of
    KNOWN_HASHES) and counted, and the bandwidth limit is applied, so verify needs no
    second read of the source. md5 costs 1.6 s a GB here, crc32c almost nothing: hash
    only what the destination verifies or the job asks for."""

    def __init__(
        self,
        raw: BinaryIO,
        limiter: RateLimiter | None = None,
        hashes: Collection[str] = KNOWN_HASHES,
    ) -> None:
        self.raw = raw
        self.limiter = limiter
        self._md5 = hashlib.md5(usedforsecurity=False) if "md5" in hashes else None
        self._crc = google_crc32c.Checksum() if "crc32c" in hashes else None
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            if self._md5 is not None:
                self._md5.update(data)
            if self._crc is not None:
                self._crc.update(data)
            self.bytes_read += len(data)
            if self.limiter is not None:
                self.limiter.consume(len(data))
        return data

    def readable(self) -> bool:
        return True

    def hashes(self) -> tuple[tuple[str, str], ...]:
        """(name, hex) of each hash computed, in KNOWN_HASHES order."""
        found = []
        if self._md5 is not None:
            found.append(("md5", self._md5.hexdigest()))
        if self._crc is not None:
            found.append(("crc32c", self._crc.digest().hex()))
        return tuple(found)

    def close(self) -> None:
        self.raw.close()


def b64_to_hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


def hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")
