"""Streams that hash as they read, and a token bucket for bandwidth limits."""

from __future__ import annotations

import base64
import ctypes
import hashlib
import threading
import time
from typing import BinaryIO

import google_crc32c

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


class RateLimiter:
    """A token bucket shared by the threads of one batch: at most `rate` bytes/s."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate if rate and rate > 0 else None
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def consume(self, nbytes: int) -> None:
        if self.rate is None or nbytes <= 0:
            return
        with self._lock:
            now = time.monotonic()
            # pay for what was just read before reading more
            self._next = max(now, self._next) + nbytes / self.rate
            wait = self._next - now
        if wait > 0:
            time.sleep(wait)


class HashingReader:
    """Wraps a source stream: every byte read is hashed (md5, crc32c) and counted, and the
    bandwidth limit is applied, so verify needs no second read of the source."""

    def __init__(self, raw: BinaryIO, limiter: RateLimiter | None = None) -> None:
        self.raw = raw
        self.limiter = limiter
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._crc = google_crc32c.Checksum()
        self.bytes_read = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        if data:
            self._md5.update(data)
            self._crc.update(data)
            self.bytes_read += len(data)
            if self.limiter is not None:
                self.limiter.consume(len(data))
        return data

    def readable(self) -> bool:
        return True

    def hashes(self) -> tuple[tuple[str, str], ...]:
        return (("md5", self._md5.hexdigest()), ("crc32c", self._crc.digest().hex()))

    def close(self) -> None:
        self.raw.close()


def b64_to_hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


def hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")
