"""Reading a file from a share: the first chunk with the open, the rest pipelined."""

from __future__ import annotations

import io
import struct
from collections import deque
from typing import TYPE_CHECKING

from smbprotocol.header import Commands

from ..errors import ChangedDuringCopy, Transient
from .link import _Link, _LinkLost
from .wire import (
    FILE_NON_DIRECTORY_FILE,
    FILE_READ_ATTRIBUTES,
    FILE_READ_DATA,
    PIPELINE,
    RELATED,
    STATUS_END_OF_FILE,
    SYNCHRONIZE,
    _close,
    _create,
    _Failed,
    _Msg,
    _Opened,
    _read,
    _read_payload,
)

if TYPE_CHECKING:
    from .connector import SMBConnector

CLOSE_POSTQUERY_ATTRIB = 0x1  # MS-SMB2 2.2.15: the CLOSE answers with the file's attributes


def _close_query(file_id: bytes = RELATED) -> _Msg:
    """A CLOSE whose answer says the file's size and mtime as it is closed: what the
    reader compares with the open's, at no extra round trip."""
    body = struct.pack("<HHI16s", 24, CLOSE_POSTQUERY_ATTRIB, 0, file_id)
    return _Msg(Commands.SMB2_CLOSE, body)


def _closed_as(data: bytes) -> tuple[int, int] | None:
    """(size, mtime FILETIME) from a CLOSE answer, or None when the server sent none."""
    _, flags, _, _, _, mtime, _, _, size = struct.unpack_from("<HHIqqqqqq", data, 0)
    return (size, mtime) if flags & CLOSE_POSTQUERY_ATTRIB else None


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
            _close_query(),
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
        if len(data) >= self._size:  # the whole file came with the open: did it hold still?
            self._unchanged(results[2])

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

    def _unchanged(self, closed: bytes | _Failed) -> None:
        """Raise ChangedDuringCopy when the file's size or mtime as it was closed, after
        its last byte was read, differ from the open's: what was read may be torn."""
        if isinstance(closed, _Failed):
            return  # the bytes were read; a failed CLOSE says nothing about them
        now = _closed_as(closed)
        if now is None:
            return
        if now[0] != self._first.size:
            raise ChangedDuringCopy(
                self._rel,
                f"its size went from {self._first.size} to {now[0]} bytes while it was read",
            )
        if now[1] != self._first.mtime:
            raise ChangedDuringCopy(self._rel, "it was modified while it was read")

    def _finish(self) -> None:
        """After the last byte of a large file: close its handle, asking how it is now."""
        link, file_id = self._link, self._file_id
        if link is None or not file_id:
            return
        self._file_id = b""
        try:
            closed = link.exchange([_close_query(file_id)], self._c.timeout)[0]
        except _LinkLost as exc:
            self._c._drop(link)
            raise Transient(self._rel, f"connection lost while reading: {exc}") from exc
        self._unchanged(closed)

    def _next(self, size: int) -> memoryview:
        if not self._buf:
            if self._pos >= self._size and not self._pending:
                self._finish()
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
