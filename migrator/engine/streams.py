"""Streams that hash as they read, and a token bucket for bandwidth limits."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from typing import BinaryIO

import google_crc32c


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
