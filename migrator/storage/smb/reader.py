"""Reading a file from a share: the first chunk with the open, the rest pipelined."""

from __future__ import annotations

import io
from collections import deque
from typing import TYPE_CHECKING

from ..errors import ChangedDuringCopy, Transient
from .link import _Link, _LinkLost
from .wire import (
    FILE_NON_DIRECTORY_FILE,
    FILE_READ_ATTRIBUTES,
    FILE_READ_DATA,
    PIPELINE,
    STATUS_END_OF_FILE,
    SYNCHRONIZE,
    _close,
    _create,
    _Failed,
    _Opened,
    _read,
    _read_payload,
)

if TYPE_CHECKING:
    from .connector import SMBConnector


class _Reader(io.RawIOBase):
    """A file's bytes. Small files arrive with the open (CREATE+READ+CLOSE in one round
    trip); larger ones are read on with READs pipelined on a handle of their own."""

    def __init__(self, connector: SMBConnector, rel: str) -> None:
        super().__init__()
        self._c = connector
        self._rel = rel
        self._buf = memoryview(b"")
        self._pos = 0  # offset of the next byte the server sends
        self._pending: deque = deque()
        self._link: _Link | None = None
        self._file_id = b""
        self._first: _Opened
        connector._run(rel, self._open_first)

    def _open_first(self, link: _Link) -> None:
        access = FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE
        msgs = [
            _create(self._c._name(self._rel, link), access, options=FILE_NON_DIRECTORY_FILE),
            _read(0, self._c._chunk),
            _close(),
        ]
        results = link.exchange(msgs, self._c.timeout)
        self._first = _Opened(self._c._check(results[0], self._rel))
        read = results[1]
        if isinstance(read, _Failed) and read.status == STATUS_END_OF_FILE:
            data = b""
        else:
            data = _read_payload(self._c._check(read, self._rel))
        self._buf = memoryview(data)
        self._pos = len(data)
        self._size = self._first.size

    def readable(self) -> bool:
        return True

    def _reopen(self) -> None:
        """A second handle for the rest of a large file; it must still be the same file."""
        link = self._c._link()
        access = FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE
        create = _create(self._c._name(self._rel, link), access, options=FILE_NON_DIRECTORY_FILE)
        try:
            result = link.exchange([create], self._c.timeout)[0]
        except _LinkLost as exc:
            self._c._drop(link)
            raise Transient(self._rel, f"connection lost: {exc}") from exc
        opened = _Opened(self._c._check(result, self._rel))
        self._link, self._file_id = link, opened.file_id
        if (opened.size, opened.mtime) != (self._first.size, self._first.mtime):
            raise ChangedDuringCopy(self._rel, "it changed while it was read")

    def _fill(self) -> None:
        if not self._file_id:
            self._reopen()
        link = self._link
        assert link is not None
        try:
            while len(self._pending) < PIPELINE and self._pos < self._size:
                length = min(self._c._chunk, self._size - self._pos)
                self._pending.append((length, link.submit(_read(self._pos, length, self._file_id))))
                self._pos += length
            length, request = self._pending.popleft()
            result = link.collect(request, self._c.timeout)
        except _LinkLost as exc:
            self._c._drop(link)
            self._file_id = b""
            raise Transient(self._rel, f"connection lost while reading: {exc}") from exc
        if isinstance(result, _Failed) and result.status == STATUS_END_OF_FILE:
            raise ChangedDuringCopy(self._rel, "it shrank while it was read")
        data = _read_payload(self._c._check(result, self._rel))
        if len(data) != length:
            raise ChangedDuringCopy(self._rel, "it changed while it was read")
        self._buf = memoryview(data)

    def _next(self, size: int) -> memoryview:
        if not self._buf:
            if self._pos >= self._size and not self._pending:
                return memoryview(b"")
            self._fill()
        take = self._buf if size < 0 else self._buf[:size]
        self._buf = self._buf[len(take) :]
        return take

    def read(self, size: int = -1) -> bytes:
        if self.closed:
            raise ValueError("read of closed file")
        if size is None or size < 0:
            return self.readall()
        return bytes(self._next(size))

    def readall(self) -> bytes:
        parts = []
        while chunk := self._next(-1):
            parts.append(bytes(chunk))
        return b"".join(parts)

    def readinto(self, buffer) -> int:
        chunk = self._next(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if self.closed:
            return
        link, file_id = self._link, self._file_id
        self._file_id, self._buf = b"", memoryview(b"")
        if link is not None and file_id and link.alive:
            try:
                while self._pending:
                    link.collect(self._pending.popleft()[1], self._c.timeout)
                link.exchange([_close(file_id)], self._c.timeout)
            except _LinkLost:
                self._c._drop(link)
        self._pending.clear()
        super().close()
