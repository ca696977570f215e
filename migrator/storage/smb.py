"""SMB 2/3 shares (Windows file servers, Samba) as source and destination.

    smb://[DOMAIN;]user@host[:port]/share/path      password: the endpoint's secret

smbprotocol does negotiate, authentication and the tree connect; the file operations are
built here as raw SMB2 bodies with `struct` and sent as compounds (create+read+close,
create+write+set-info+rename+close, …), so a small file costs one round trip. Once a link
is up, it takes the socket over from smbprotocol (`_LeanLink`): headers are packed and
signed here and responses read and verified in the calling thread, with no receive worker
and no thread hand-off per message. Shares that encrypt keep smbprotocol's path. Responses
are parsed from their bytes: names, sizes, 100 ns times and attributes come straight from
the directory listing, never from a stat per entry.

Every thread gets its own connection (smbprotocol shares credits badly between threads).
Idle links go to a per-process pool for the next connector of the same account (a job
opens connectors per batch and thread); a dropped connection is replaced on the next
operation, an idempotent operation that loses its connection midway is tried once more on
a new one, and outside check() a server that cannot be reached is Transient.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import select
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBAuthenticationError, SMBException, SMBResponseException
from smbprotocol.header import Commands
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from migrator.acl import sd as sdmod
from migrator.acl.sd import SecurityDescriptor
from migrator.sanitize import HARD_LIMITS

from .base import (
    AccessDenied,
    Capabilities,
    ConnectFailed,
    Connector,
    Entry,
    InvalidPath,
    Locked,
    NotFound,
    ScanError,
    StorageError,
    Transient,
    Unsupported,
    Written,
)
from .local import check_relative, is_temp, temp_name

T = TypeVar("T")

# smbprotocol tells of every negotiate, logon and tree connect at INFO: on a CLI's stderr
# that buries the one line that matters. A level set in LOGGING still wins.
if logging.getLogger("smbprotocol").level == logging.NOTSET:
    logging.getLogger("smbprotocol").setLevel(logging.WARNING)

CHUNK = 1 << 20  # bytes per READ/WRITE: 16 credits
PIPELINE = 4  # READs/WRITEs in flight per large file
LIST_BUFFER = 1 << 16  # one credit of directory entries (~600 names) per QUERY_DIRECTORY
LIST_RETRY_SECONDS = 30.0  # a scan waits this long for a server that went away
EXTRA_CREDITS = 192  # asked for once per connection, so pipelines never wait on credits

# MS-SMB2 / MS-FSCC constants
FILE_READ_DATA = 0x1
FILE_WRITE_DATA = 0x2
FILE_READ_ATTRIBUTES = 0x80
FILE_WRITE_ATTRIBUTES = 0x100
DELETE = 0x10000
READ_CONTROL = 0x20000
WRITE_DAC = 0x40000
WRITE_OWNER = 0x80000
SYNCHRONIZE = 0x100000
ACCESS_SYSTEM_SECURITY = 0x1000000
SHARE_ALL = 0x7  # read | write | delete
FILE_OPEN, FILE_CREATE, FILE_OVERWRITE_IF = 1, 2, 5
FILE_DIRECTORY_FILE = 0x1
FILE_NON_DIRECTORY_FILE = 0x40
IMPERSONATION = 2
RELATED = b"\xff" * 16  # "the file of the previous request in this compound"
INFO_FILE, INFO_SECURITY = 1, 3
FILE_DIRECTORY_INFORMATION = 1
FILE_BASIC_INFORMATION = 4
FILE_RENAME_INFORMATION = 10
FILE_DISPOSITION_INFORMATION = 13

ATTR_READONLY = 0x1
ATTR_HIDDEN = 0x2
ATTR_SYSTEM = 0x4
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_NORMAL = 0x80
ATTR_REPARSE_POINT = 0x400
COPIED_ATTRIBUTES = ATTR_HIDDEN | ATTR_SYSTEM | ATTR_ARCHIVE

FILETIME_EPOCH = 116_444_736_000_000_000  # 1970-01-01 in 100 ns ticks since 1601

# NTSTATUS codes, by what they mean to a migration
STATUS_NO_MORE_FILES = 0x80000006
STATUS_END_OF_FILE = 0xC0000011
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_LOGON_FAILURE = 0xC000006D
STATUS_BAD_NETWORK_NAME = 0xC00000CC
NOT_FOUND = {0xC0000034, 0xC000003A, 0xC000000F, 0xC0000225, 0xC0000056}
DENIED = {0xC0000022, 0xC0000061, 0xC0000121, 0xC00000A2}
LOCKED = {0xC0000043, 0xC0000054, 0xC0000055}
INVALID = {0xC0000033, 0xC000003B, 0xC0000039, 0xC0000106}
LINK_GONE = {0xC00000C9, 0xC0000203, 0xC000035C, 0xC000020C, 0xC000023A, 0xC0000128}
BUSY = {0xC00000B5, 0xC0000205, 0xC000009A, 0xC00000D0, 0xC0000466, 0xC0000120}
OTHER = {
    0xC0000035: "already exists",
    0xC0000101: "folder is not empty",
    0xC00000BA: "is a folder",
    0xC0000103: "not a folder",
    0xC000007F: "no space left on the share",
    0xC0000044: "quota exceeded",
    0x8000002D: "is a symbolic link",
}
LOGON = {
    0xC000006D: "wrong user name or password",
    0xC000006A: "wrong user name or password",
    0xC0000064: "wrong user name or password",
    0xC0000072: "account is disabled",
    0xC0000234: "account is locked out",
    0xC0000071: "password has expired",
    0xC0000224: "password must be changed",
    0xC000006E: "account restrictions forbid this logon",
    0xC000006F: "logon not allowed at this time",
    0xC0000193: "account has expired",
    0xC000015B: "logon type not granted",
}
# a server that cannot log anyone on right now: starting up (Samba answers INTERNAL_ERROR
# until its auth service is up), no domain controller, overloaded. Retried, unlike LOGON.
LOGON_LATER = {
    0xC00000E5: "the server cannot log on users yet (internal error)",
    0xC000005E: "no logon server is available",
    0xC0000192: "the server's netlogon service has not started",
    0xC0000233: "no domain controller found",
    0xC000018C: "the trust with the domain failed",
    0xC000018D: "the trust relationship failed",
    0xC000009A: "the server is out of resources",
    0xC00000D0: "the server accepts no more connections",
    0xC0000466: "the server is unavailable",
    0xC00000B5: "the logon timed out",
}


SMB_LIMITS = HARD_LIMITS["smb"]


@functools.lru_cache(maxsize=8192)
def _valid_name(name: str) -> bool:
    """Cached: a folder's name is checked once, not once per file written into it."""
    return SMB_LIMITS.is_valid(name)


def filetime(ns: int) -> int:
    """Unix ns -> Windows FILETIME (100 ns ticks since 1601), truncated to 100 ns."""
    return ns // 100 + FILETIME_EPOCH


def unix_ns(ft: int) -> int:
    return (ft - FILETIME_EPOCH) * 100 if ft > 0 else 0


# --- raw SMB2 request bodies ----------------------------------------------------------------


class _Value:
    """What smbprotocol's credit arithmetic reads from a message field."""

    __slots__ = ("value",)

    def __init__(self, value: int | bytes) -> None:
        self.value = value

    def get_value(self) -> int | bytes:
        return self.value

    def __len__(self) -> int:
        return self.value if isinstance(self.value, int) else len(self.value)


class _Msg:
    """A request body packed with struct, shaped like the smbprotocol Structure that
    `Connection.send`/`send_compound` expect (COMMAND, pack, len, fields for credits).
    `payload` is what the credit charge counts: bytes sent or asked for."""

    __slots__ = ("COMMAND", "body", "fields", "payload")

    def __init__(self, command: int, body: bytes, payload: int = 1, **fields: int | bytes) -> None:
        self.COMMAND = command
        self.body = body
        self.fields = fields
        self.payload = payload

    def pack(self) -> bytes:
        return self.body

    def __len__(self) -> int:
        return len(self.body)

    def __getitem__(self, key: str) -> _Value:
        return _Value(self.fields.get(key, 0))


def _create(
    name: str,
    access: int,
    disposition: int = FILE_OPEN,
    options: int = 0,
    share: int = SHARE_ALL,
    attributes: int = ATTR_NORMAL,
) -> _Msg:
    raw = name.encode("utf-16-le")
    body = struct.pack(
        "<HBBIQQIIIIIHHII",
        57,
        0,
        0,  # no oplock: we never cache
        IMPERSONATION,
        0,
        0,
        access,
        attributes,
        share,
        disposition,
        options,
        120,  # name offset: header 64 + fixed body 56
        len(raw),
        0,
        0,
    )
    return _Msg(Commands.SMB2_CREATE, body + (raw or b"\x00"))


def _close(file_id: bytes = RELATED) -> _Msg:
    return _Msg(Commands.SMB2_CLOSE, struct.pack("<HHI16s", 24, 0, 0, file_id))


def _read(offset: int, length: int, file_id: bytes = RELATED) -> _Msg:
    body = struct.pack("<HBBIQ16sIIIHHB", 49, 0x50, 0, length, offset, file_id, 0, 0, 0, 0, 0, 0)
    return _Msg(Commands.SMB2_READ, body, payload=length, length=length, read_channel_info_length=0)


def _write(offset: int, data: bytes | memoryview, file_id: bytes = RELATED) -> _Msg:
    header = struct.pack("<HHIQ16sIIHHI", 49, 112, len(data), offset, file_id, 0, 0, 0, 0, 0)
    return _Msg(
        Commands.SMB2_WRITE,
        header + data,
        payload=len(data),
        length=len(data),
        write_channel_info_length=0,
    )


def _query_directory(file_id: bytes = RELATED, pattern: str = "*") -> _Msg:
    raw = pattern.encode("utf-16-le")
    body = struct.pack(
        "<HBBI16sHHI", 33, FILE_DIRECTORY_INFORMATION, 0, 0, file_id, 96, len(raw), LIST_BUFFER
    )
    return _Msg(
        Commands.SMB2_QUERY_DIRECTORY,
        body + raw,
        payload=max(len(raw), LIST_BUFFER),
        buffer=raw,
        output_buffer_length=LIST_BUFFER,
    )


def _query_security(info: int, file_id: bytes = RELATED, length: int = 1 << 16) -> _Msg:
    body = struct.pack("<HBBIHHIII16s", 41, INFO_SECURITY, 0, length, 0, 0, 0, info, 0, file_id)
    return _Msg(Commands.SMB2_QUERY_INFO, body)


def _set_info(
    info_type: int, info_class: int, data: bytes, additional: int = 0, file_id: bytes = RELATED
) -> _Msg:
    body = struct.pack(
        "<HBBIHHI16s", 33, info_type, info_class, len(data), 96, 0, additional, file_id
    )
    return _Msg(Commands.SMB2_SET_INFO, body + data)


def _basic_info(mtime_ns: int, attributes: int = 0) -> _Msg:
    ft = filetime(mtime_ns) if mtime_ns else 0
    data = struct.pack("<qqqqII", 0, ft, ft, 0, attributes, 0)
    return _set_info(INFO_FILE, FILE_BASIC_INFORMATION, data)


def _rename(target: str, replace: bool = True) -> _Msg:
    raw = target.encode("utf-16-le")
    data = struct.pack("<B7xQI", int(replace), 0, len(raw)) + raw
    return _set_info(INFO_FILE, FILE_RENAME_INFORMATION, data)


def _delete_on_close(file_id: bytes = RELATED) -> _Msg:
    return _set_info(INFO_FILE, FILE_DISPOSITION_INFORMATION, b"\x01", file_id=file_id)


# --- raw SMB2 responses -----------------------------------------------------------------------


class _Opened:
    """The fields of a CREATE response we use."""

    __slots__ = ("file_id", "mtime", "size", "attributes")

    def __init__(self, data: bytes) -> None:
        (_, _, _, _, _, _, self.mtime, _, _, self.size, self.attributes, _, self.file_id) = (
            struct.unpack_from("<HBBIqqqqqqII16s", data, 0)
        )


def _payload(data: bytes | memoryview) -> bytes:
    """The buffer of a QUERY_DIRECTORY or QUERY_INFO response (offsets count the header)."""
    offset, length = struct.unpack_from("<HI", data, 2)
    return bytes(data[offset - 64 : offset - 64 + length])


def _read_payload(data: bytes | memoryview) -> bytes | memoryview:
    """The bytes of a READ response (a one-byte data offset, then the length)."""
    offset, length = data[2], struct.unpack_from("<I", data, 4)[0]
    return data[offset - 64 : offset - 64 + length]


def _directory_entries(buf: bytes) -> Iterator[tuple[str, int, int, int]]:
    """(name, size, mtime FILETIME, attributes) of each FILE_DIRECTORY_INFORMATION record."""
    pos = 0
    while True:
        nxt, _, _, _, mtime, _, size, _, attributes, name_len = struct.unpack_from(
            "<IIqqqqqqII", buf, pos
        )
        name = buf[pos + 64 : pos + 64 + name_len].decode("utf-16-le", "surrogatepass")
        yield name, size, mtime, attributes
        if not nxt:
            return
        pos += nxt


class _Failed:
    """A response that carried an error status, kept in a compound's result list."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status


class _LinkLost(Exception):
    """The connection under an operation failed; the link is dropped."""


# --- connections ----------------------------------------------------------------------------


class _Link:
    """One thread's connection, session and tree."""

    __slots__ = ("conn", "session", "tree", "sid", "tid", "prefix", "chunk", "owner")

    def __init__(self, conn: Connection, session: Session, tree: TreeConnect, prefix: str):
        self.conn, self.session, self.tree = conn, session, tree
        self.sid, self.tid = session.session_id, tree.tree_connect_id
        self.prefix = prefix  # "host\\share\\" on DFS shares, which want full names
        self.chunk = min(CHUNK, conn.max_read_size, conn.max_write_size)
        self.owner: threading.Thread | None = None  # the thread using it now

    @property
    def idle(self) -> bool:
        """Alive with nothing in flight: fit to be used by another connector."""
        return self.alive and not self.conn.outstanding_requests

    @property
    def alive(self) -> bool:
        transport = self.conn.transport
        return transport is not None and transport.connected

    def exchange(self, msgs: list[_Msg], timeout: float) -> list[bytes | _Failed]:
        """Send one request or a related compound; every response's body, or _Failed."""
        try:
            if len(msgs) == 1:
                requests = [self.conn.send(msgs[0], self.sid, self.tid)]
            else:
                requests = self.conn.send_compound(msgs, self.sid, self.tid, related=True)
        except (SMBException, OSError, ValueError) as exc:
            raise _LinkLost(str(exc)) from exc
        return [self.collect(request, timeout) for request in requests]

    def submit(self, msg: _Msg):
        try:
            return self.conn.send(msg, self.sid, self.tid)
        except (SMBException, OSError, ValueError) as exc:
            raise _LinkLost(str(exc)) from exc

    def collect(self, request, timeout: float) -> bytes | _Failed:
        try:
            header = self.conn.receive(request, timeout=timeout, resolve_symlinks=False)
        except SMBResponseException as exc:
            if exc.status in LINK_GONE:
                raise _LinkLost(str(exc)) from exc
            return _Failed(exc.status)
        except (SMBException, OSError, ValueError) as exc:  # closed, timed out, out of credits
            raise _LinkLost(str(exc)) from exc
        return header["data"].get_value()

    def close(self, timeout: float = 5) -> None:
        try:
            if self.alive:
                self.conn.disconnect(close=True, timeout=timeout)
            else:
                self.conn.disconnect(close=False)
        except Exception:  # noqa: BLE001 - closing a dead link can fail any way it likes
            try:
                self.conn.disconnect(close=False)
            except Exception:  # noqa: BLE001
                pass


class _Handoff:
    """Stands in for smbprotocol's transport once a link takes its socket over: sends
    still go through (the echo that ends the handoff), and the receive worker, on its next
    read, sees end of stream and exits. close() still cuts the real wire."""

    def __init__(self, tcp) -> None:
        self.tcp = tcp

    @property
    def connected(self) -> bool:
        return self.tcp.connected

    def send(self, data: bytes) -> None:
        self.tcp.send(data)

    def recv(self, timeout: float) -> bytes:
        return b""

    def close(self) -> None:
        self.tcp.close()


_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")  # an SMB2 sync header, 64 bytes
_PROTOCOL = b"\xfeSMB"
_NO_SIGNATURE = b"\x00" * 16
FLAG_RESPONSE, FLAG_ASYNC, FLAG_RELATED, FLAG_SIGNED = 0x1, 0x2, 0x4, 0x8
FLAG_DFS = 0x10000000
STATUS_PENDING = 0x103
CREDIT_FLOOR = 256  # ask for more credits whenever fewer than this are left
READ_AHEAD = 1 << 16  # bytes a receive asks for beyond the frame it needs


def _signer(conn: Connection, key: bytes) -> Callable[[bytes | bytearray, int, bool], bytes]:
    """sign(message with a zeroed signature, message id, is_response) -> 16 bytes, with the
    algorithm the connection negotiated (SMB 3.1.1: GMAC or CMAC; 3.0: CMAC; 2.x: HMAC)."""
    from cryptography.hazmat.primitives import cmac
    from cryptography.hazmat.primitives.ciphers import aead, algorithms
    from smbprotocol.connection import Dialects, SigningAlgorithms

    if conn.dialect >= Dialects.SMB_3_1_1 and conn.signing_algorithm_id is not None:
        algorithm = conn.signing_algorithm_id
    elif conn.dialect >= Dialects.SMB_3_0_0:
        algorithm = SigningAlgorithms.AES_CMAC
    else:
        algorithm = SigningAlgorithms.HMAC_SHA256
    if algorithm == SigningAlgorithms.AES_GMAC:
        gcm = aead.AESGCM(key)

        def gmac(data: bytes | bytearray, message_id: int, response: bool) -> bytes:
            nonce = message_id.to_bytes(8, "little") + (1 if response else 0).to_bytes(4, "little")
            return gcm.encrypt(nonce, b"", data)

        return gmac
    if algorithm == SigningAlgorithms.AES_CMAC:
        base = cmac.CMAC(algorithms.AES(key))

        def aes_cmac(data: bytes | bytearray, message_id: int, response: bool) -> bytes:
            mac = base.copy()
            mac.update(data)
            return mac.finalize()

        return aes_cmac
    import hmac

    def hmac_sha256(data: bytes | bytearray, message_id: int, response: bool) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()[:16]

    return hmac_sha256


class _LeanLink(_Link):
    """A link that drives its socket itself once smbprotocol has negotiated, logged on
    and connected the tree: requests are packed and signed here and responses read in the
    calling thread, with no receive worker and no hand-off between threads per message.
    That per-message cost (Structure packing, a thread switch each way) was most of the
    CPU a small file cost. Used unless the share or session encrypts."""

    __slots__ = ("sock", "tcp", "sign", "next_id", "high", "flags", "multi_credit", "done",
                 "broken", "in_flight", "rbuf", "rpos", "timeout")  # fmt: skip

    def __init__(
        self,
        conn: Connection,
        session: Session,
        tree: TreeConnect,
        prefix: str,
        tcp,
        timeout: float,
    ) -> None:
        super().__init__(conn, session, tree, prefix)
        self.tcp = tcp
        self.sock = tcp._sock
        signing = bool(session.signing_required and session.signing_key)
        self.sign = _signer(conn, session.signing_key) if signing else None
        with conn.sequence_lock:
            self.next_id = conn.sequence_window["low"]
            self.high = conn.sequence_window["high"]
        self.flags = (FLAG_SIGNED if signing else 0) | (FLAG_DFS if tree.is_dfs_share else 0)
        self.multi_credit = conn.supports_multi_credit
        self.done: dict[int, tuple[int, memoryview]] = {}  # responses read, not yet claimed
        self.broken = False
        self.in_flight = 0  # requests sent whose final response is not read yet
        self.rbuf, self.rpos = bytearray(), 0  # bytes read ahead of the current frame
        self.timeout = -1.0
        self._set_timeout(timeout)

    @property
    def alive(self) -> bool:
        return not self.broken and self.tcp.connected

    @property
    def idle(self) -> bool:
        return self.alive and not self.in_flight and not self.done

    def exchange(self, msgs: list[_Msg], timeout: float) -> list[bytes | _Failed]:
        ids = self._send(msgs)
        return [self.collect(message_id, timeout) for message_id in ids]

    def submit(self, msg: _Msg) -> int:
        return self._send([msg])[0]

    def _send(self, msgs: list[_Msg]) -> list[int]:
        frame = bytearray(4)  # the Direct TCP length, filled in below
        ids = []
        last = len(msgs) - 1
        for i, msg in enumerate(msgs):
            charge = (max(0, msg.payload - 1) >> 16) + 1 if self.multi_credit else 0
            message_id = self.next_id
            if self.high - message_id < max(charge, 1):
                self.broken = True
                raise _LinkLost(f"out of credits ({self.high - message_id} left, {charge} needed)")
            self.next_id += max(charge, 1)
            ask = charge + (64 if self.high - self.next_id < CREDIT_FLOOR else 0)
            length = 64 + len(msg.body)
            pad = (-length) % 8 if i < last else 0
            flags = self.flags | (FLAG_RELATED if i else 0)
            start = len(frame)
            frame += _HEADER.pack(
                _PROTOCOL, 64, charge, 0, msg.COMMAND, max(ask, 1), flags,
                length + pad if i < last else 0, message_id, 0, self.tid, self.sid, _NO_SIGNATURE,
            )  # fmt: skip
            frame += msg.body
            if pad:
                frame += bytes(pad)
            if self.sign is not None:
                frame[start + 48 : start + 64] = self.sign(
                    memoryview(frame)[start:], message_id, False
                )
            ids.append(message_id)
        frame[0:4] = (len(frame) - 4).to_bytes(4, "big")
        self.in_flight += len(ids)
        try:
            self.sock.sendall(frame)
        except OSError as exc:
            self.broken = True
            raise _LinkLost(f"send failed: {exc}") from exc
        return ids

    def collect(self, message_id: int, timeout: float) -> memoryview | _Failed:
        while message_id not in self.done:
            self._read_frame(timeout)
        status, body = self.done.pop(message_id)
        if status:
            if status in LINK_GONE:
                self.broken = True
                raise _LinkLost(f"server ended the session ({status:#010x})")
            return _Failed(status)
        return body

    def _set_timeout(self, timeout: float) -> None:
        """A blocking socket with kernel send/receive timeouts: one syscall per recv, where
        a Python socket timeout adds a poll() to each and two fcntl()s to each change."""
        if timeout == self.timeout:
            return
        seconds = max(timeout, 0.001)
        timeval = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.timeout = timeout

    def _take(self, size: int, timeout: float) -> bytearray:
        """The next `size` bytes of the stream. Reads ahead into a buffer, so a small
        response (length and frame) usually costs one recv; a large one is read straight
        into its own buffer."""
        self._set_timeout(timeout)
        buffered = len(self.rbuf) - self.rpos
        if buffered >= size:
            out = self.rbuf[self.rpos : self.rpos + size]
            self.rpos += size
            return out
        out = bytearray(size)
        out[:buffered] = memoryview(self.rbuf)[self.rpos :]
        self.rbuf, self.rpos = bytearray(), 0
        got = buffered
        view = memoryview(out)
        try:
            while got < size:
                if size - got >= READ_AHEAD:
                    n = self.sock.recv_into(view[got:])
                    if not n:
                        raise _LinkLost("the server closed the connection")
                    got += n
                    continue
                chunk = self.sock.recv(READ_AHEAD)
                if not chunk:
                    raise _LinkLost("the server closed the connection")
                use = min(len(chunk), size - got)
                out[got : got + use] = chunk[:use]
                got += use
                if use < len(chunk):
                    self.rbuf, self.rpos = bytearray(chunk[use:]), 0
        except OSError as exc:  # reset, timed out (EAGAIN), closed under us
            raise _LinkLost(f"receive failed: {exc}") from exc
        finally:
            view.release()
        return out

    def _read_frame(self, timeout: float) -> None:
        """Read one Direct TCP frame and file each response in it under its message id."""
        try:
            size = int.from_bytes(self._take(4, timeout), "big")
            if size > 0xFFFFFF:
                raise _LinkLost(f"frame of {size} bytes")
            buf = self._take(size, timeout)
            frame = memoryview(buf)
            if frame[:4] != _PROTOCOL:
                raise _LinkLost("not an SMB2 response (an encrypted one?)")
            pos = 0
            while True:
                _, _, _, status, command, credits, flags, nxt, message_id, *_, signature = (
                    _HEADER.unpack_from(frame, pos)
                )
                part = frame[pos : pos + nxt] if nxt else frame[pos:]
                self.high += credits
                interim = status == STATUS_PENDING and flags & FLAG_ASYNC
                if self.sign is not None and not interim and message_id != 0xFFFFFFFFFFFFFFFF:
                    if not flags & FLAG_SIGNED:
                        raise _LinkLost(f"unsigned response ({status:#010x}) on a signed session")
                    buf[pos + 48 : pos + 64] = _NO_SIGNATURE  # signed as if zero; no copy
                    if self.sign(part, message_id, True) != signature:
                        raise _LinkLost("a response's signature is wrong")
                if not interim and message_id != 0xFFFFFFFFFFFFFFFF:
                    self.done[message_id] = (status, part[64:])
                    self.in_flight -= 1
                if not nxt:
                    return
                pos += nxt
        except _LinkLost:
            self.broken = True
            raise
        except (struct.error, ValueError) as exc:
            self.broken = True
            raise _LinkLost(f"malformed response: {exc}") from exc

    def close(self, timeout: float = 5) -> None:
        # no logoff round trip: closing the socket ends the session on the server
        self.broken = True
        try:
            self.tcp.close()
        except Exception:  # noqa: BLE001 - closing a dead socket can fail any way it likes
            pass


class _Pool:
    """Idle links by endpoint, shared by the connectors of a process. A job opens new
    connectors for every batch and thread; logging on afresh each time (negotiate, NTLM,
    tree connect: four round trips and ~3 ms of CPU) cost more than a batch of small files.
    A link is only handed back by the thread that used it, with nothing in flight, and is
    closed once idle for IDLE_SECONDS."""

    IDLE_SECONDS = 20.0
    MAX_PER_KEY = 64

    def __init__(self) -> None:
        self._idle: dict[tuple, list[tuple[float, _Link]]] = {}
        self._lock = threading.Lock()

    def put(self, key: tuple, link: _Link) -> None:
        link.owner = None
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.MAX_PER_KEY:
                idle.append((time.monotonic(), link))
                link = None  # type: ignore[assignment]
            stale = self._expire()
        for old in stale + ([link] if link is not None else []):
            old.close(timeout=1)

    def take(self, key: tuple) -> _Link | None:
        with self._lock:
            stale = self._expire()
            idle = self._idle.get(key)
            link = idle.pop()[1] if idle else None
        for old in stale:
            old.close(timeout=1)
        if link is not None and not _quiet(link):
            link.close(timeout=1)  # the server closed it (restarted, timed out)
            self.flush(key)
            return None
        return link

    def flush(self, key: tuple) -> None:
        """Close every idle link to an endpoint: one was found dead, so are the others."""
        with self._lock:
            idle = self._idle.pop(key, [])
        for _, link in idle:
            link.close(timeout=1)

    def _expire(self) -> list[_Link]:
        cutoff = time.monotonic() - self.IDLE_SECONDS
        stale: list[_Link] = []
        for key, idle in list(self._idle.items()):
            keep = [(t, link) for t, link in idle if t >= cutoff]
            stale += [link for t, link in idle if t < cutoff]
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return stale


def _quiet(link: _Link) -> bool:
    """Alive, and nothing to read on an idle link (a closed socket reads as ready)."""
    if not link.alive:
        return False
    sock = getattr(link, "sock", None)
    if sock is None:
        return True
    try:
        return not select.select([sock], [], [], 0)[0]
    except (OSError, ValueError):
        return False


_POOL = _Pool()


# --- the connector ----------------------------------------------------------------------------


class SMBConnector(Connector):
    scheme = "smb"
    capabilities = Capabilities(
        hashes=frozenset(),
        mtime_precision_ns=100,
        acl=True,
        case_insensitive=True,
        max_name_bytes=255,
        max_path_bytes=4096,  # Samba keeps files on POSIX disks; Windows allows 32,767 chars
    )

    def __init__(
        self,
        host: str,
        share: str,
        root: str = "",
        user: str = "",
        password: str = "",
        domain: str = "",
        port: int = 445,
        timeout: float = 60.0,
    ) -> None:
        if not share or any(c in share for c in "\\/"):
            raise ValueError(f"bad SMB share name {share!r}")
        root = root.strip("/")
        if root:
            try:
                check_relative(root)
            except InvalidPath as exc:
                raise ValueError(f"bad SMB path {root!r}: {exc.message}") from None
            if "\\" in root:
                raise ValueError(f"bad SMB path {root!r}: use '/' between folders")
        self.host, self.port, self.share, self.root = host, port, share, root
        self.user, self.domain = user, domain
        self._password = password
        self.timeout = timeout
        self.list_retry_seconds = LIST_RETRY_SECONDS
        self._local = threading.local()
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._chunk = CHUNK  # lowered at connect if the server takes less per READ/WRITE

    def __repr__(self) -> str:
        return f"SMBConnector({self.url!r})"

    @property
    def url(self) -> str:
        who = f"{self.domain};{self.user}" if self.domain else self.user
        where = f"{self.host}:{self.port}" if self.port != 445 else self.host
        return f"smb://{who}@{where}/{self.share}" + (f"/{self.root}" if self.root else "")

    @property
    def _account(self) -> str:
        if self.domain and "\\" not in self.user and "@" not in self.user:
            return f"{self.domain}\\{self.user}"
        return self.user

    # connections

    def _connect(self) -> _Link:
        where = f"{self.host}:{self.port}"
        conn = Connection(uuid.uuid4(), self.host, self.port, require_signing=True)
        try:
            conn.connect(timeout=min(self.timeout, 15))
        except (ValueError, OSError, SMBException) as exc:
            if conn.transport is not None and conn.transport.connected:
                conn.disconnect(close=False)
            # Transient: mid-job a server that cannot be reached is restarting or the
            # network blips, and each batch opens new connectors. check() (run before a
            # job starts) turns it into ConnectFailed.
            raise Transient("", f"cannot reach {where}: {exc.__cause__ or exc}") from exc
        try:
            session = Session(
                conn, self._account, self._password, require_encryption=False, auth_protocol="ntlm"
            )
            try:
                session.connect()
            except SMBResponseException as exc:
                if exc.status in LOGON_LATER:
                    words = LOGON_LATER[exc.status]
                    raise Transient("", f"{words} for {self._account} on {where}") from exc
                words = LOGON.get(exc.status, f"logon refused ({exc.status:#010x})")
                raise ConnectFailed("", f"{words} for {self._account} on {where}") from exc
            except SMBAuthenticationError as exc:
                raise ConnectFailed(
                    "", f"wrong user name or password for {self._account} on {where}: {exc}"
                ) from exc
            tree = TreeConnect(session, rf"\\{self.host}\{self.share}")
            try:
                tree.connect()
            except SMBResponseException as exc:
                if exc.status in LOGON_LATER or exc.status in BUSY:
                    raise Transient(
                        "", f"cannot open share {self.share!r} on {where} now: {exc}"
                    ) from exc
                if exc.status == STATUS_BAD_NETWORK_NAME:
                    message = f"no share named {self.share!r} on {where}"
                elif exc.status in DENIED:
                    message = f"{self._account} may not use share {self.share!r} on {where}"
                else:
                    message = f"cannot open share {self.share!r} on {where}: {exc}"
                raise ConnectFailed("", message) from exc
            tcp = conn.transport
            lean = not (session.encrypt_data or tree.encrypt_data)
            if lean:  # the worker reads the echo's answer, then sees end of stream and exits
                conn.transport = _Handoff(tcp)
            conn.echo(sid=session.session_id, timeout=self.timeout, credit_request=EXTRA_CREDITS)
            if lean:
                conn._t_worker.join(timeout=5)
                if conn._t_worker.is_alive():  # never seen; smbprotocol keeps the socket
                    conn.transport, lean = tcp, False
        except (ConnectFailed, Transient):
            conn.disconnect(close=False)
            raise
        except (SMBException, OSError, ValueError) as exc:
            conn.disconnect(close=False)
            raise Transient("", f"connection to {where} failed: {exc}") from exc
        prefix = rf"{self.host}\{self.share}" + "\\" if tree.is_dfs_share else ""
        if lean:
            return _LeanLink(conn, session, tree, prefix, tcp, self.timeout)
        return _Link(conn, session, tree, prefix)

    @property
    def _pool_key(self) -> tuple:
        secret = hashlib.sha256(self._password.encode("utf-8", "surrogatepass")).digest()
        return (self.host, self.port, self.share.lower(), self.domain, self.user, secret)

    def _link(self) -> _Link:
        link = getattr(self._local, "link", None)
        if link is not None and not link.alive:
            self._drop(link)
            link = None
        if link is None:
            link = _POOL.take(self._pool_key) or self._connect()
            link.owner = threading.current_thread()
            with self._lock:
                self._links.add(link)
            self._chunk = link.chunk
            self._local.link = link
        return link

    def _drop(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
        if getattr(self._local, "link", None) is link:
            self._local.link = None
        link.close(timeout=1)
        _POOL.flush(self._pool_key)  # a lost link: the idle ones are likely gone too

    def close(self) -> None:
        """Hand idle links to the process's pool (links a live thread still uses are
        closed: that thread's next operation reconnects)."""
        with self._lock:
            links, self._links = list(self._links), set()
        me = threading.current_thread()
        for link in links:
            owner = link.owner
            if link.idle and (owner is None or owner is me or not owner.is_alive()):
                _POOL.put(self._pool_key, link)
            else:
                link.close()
        self._local = threading.local()

    def _run(self, path: str, op: Callable[[_Link], T], retry: bool = True) -> T:
        """Run `op` on this thread's link; on a lost connection, reconnect and (for
        operations that are safe to repeat) run it once more."""
        for attempt in (1, 2):
            link = self._link()
            try:
                return op(link)
            except _LinkLost as exc:
                self._drop(link)
                if attempt == 2 or not retry:
                    raise Transient(
                        path, f"connection to {self.host}:{self.port} lost: {exc}"
                    ) from exc
        raise AssertionError("unreachable")

    # paths

    def _name(self, path: str, link: _Link | None = None) -> str:
        """The share-relative name of `path` ('' is the connector's root)."""
        rel = check_relative(path)
        if "\\" in rel:
            raise InvalidPath(path, "backslash in a name")
        joined = "/".join(p for p in (self.root, rel) if p).replace("/", "\\")
        return (link.prefix if link is not None else "") + joined

    def _creatable(self, path: str) -> None:
        """Refuse names Windows cannot hold before creating anything."""
        for part in path.split("/"):
            if not _valid_name(part):
                raise InvalidPath(path, f"{part!r} is not a valid name on SMB")
        full = f"{self.root}/{path}" if self.root else path
        if len(full) + sum(1 for c in full if c > "\uffff") > SMB_LIMITS.max_path_chars:
            raise InvalidPath(path, "path too long for SMB")

    def _error(self, failed: _Failed, path: str) -> StorageError:
        status = failed.status
        if status in NOT_FOUND:
            return NotFound(path, "no such file or folder")
        if status in DENIED:
            return AccessDenied(path, "access denied")
        if status in LOCKED:
            return Locked(path, "in use by another program (sharing violation or lock)")
        if status in INVALID:
            return InvalidPath(path, "name not accepted by the server")
        if status in BUSY:
            return Transient(path, f"server busy ({status:#010x})")
        if status == 0xC0000257:
            return Unsupported(path, "DFS referrals are not followed")
        return StorageError(path, OTHER.get(status, f"SMB error {status:#010x}"))

    def _check(self, result: bytes | _Failed, path: str) -> bytes:
        if isinstance(result, _Failed):
            raise self._error(result, path)
        return result

    # scan

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        start = check_relative(prefix.strip("/"))
        stack = [iter(self._list(start))]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            yield item
            if isinstance(item, Entry) and item.kind == "dir":
                stack.append(iter(self._list(item.path)))

    def _list(self, rel: str) -> list[Entry | ScanError]:
        """One folder's children, sorted by code point; an unreadable folder becomes a
        ScanError. A listing is safe to repeat, and a scan has no other retry short of its
        lease lapsing, so a server away for a while (restarting) is waited for with
        backoff for up to LIST_RETRY_SECONDS; then the Transient is raised: it is not
        about this folder."""
        waited, pause = 0.0, 0.25
        while True:
            try:
                raw = self._run(rel, lambda link: self._list_raw(link, rel))
                break
            except ConnectFailed:
                raise
            except Transient:
                if waited >= self.list_retry_seconds:
                    raise
                time.sleep(pause)
                waited += pause
                pause = min(pause * 2, 4.0)
            except StorageError as exc:
                return [ScanError(rel, exc)]
        out: list[Entry | ScanError] = []
        for name, size, mtime, attributes in sorted(raw):
            if name in (".", "..") or is_temp(name):
                continue
            path = f"{rel}/{name}" if rel else name
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                shown = path.encode("utf-8", "backslashreplace").decode("ascii")
                out.append(ScanError(shown, InvalidPath(shown, "name is not valid Unicode")))
                continue
            out.append(self._entry(path, size, mtime, attributes))
        return out

    @staticmethod
    def _entry(path: str, size: int, mtime: int, attributes: int) -> Entry:
        if attributes & ATTR_REPARSE_POINT:
            return Entry(path, "link", 0, unix_ns(mtime), attributes=attributes)
        if attributes & ATTR_DIRECTORY:
            return Entry(path, "dir", 0, unix_ns(mtime), attributes=attributes)
        return Entry(path, "file", size, unix_ns(mtime), attributes=attributes)

    def _list_raw(self, link: _Link, rel: str) -> list[tuple[str, int, int, int]]:
        name = self._name(rel, link)
        access = FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE
        results = link.exchange(
            [_create(name, access, options=FILE_DIRECTORY_FILE), _query_directory()],
            self.timeout,
        )
        opened = _Opened(self._check(results[0], rel))
        out: list[tuple[str, int, int, int]] = []
        try:
            result = results[1]
            while True:
                if isinstance(result, _Failed):
                    if result.status == STATUS_NO_MORE_FILES:
                        break
                    raise self._error(result, rel)
                out.extend(_directory_entries(_payload(result)))
                result = link.exchange([_query_directory(opened.file_id)], self.timeout)[0]
        finally:
            link.exchange([_close(opened.file_id)], self.timeout)
        return out

    # stat, open

    def stat(self, path: str) -> Entry:
        rel = check_relative(path)

        def op(link: _Link) -> Entry:
            msgs = [_create(self._name(rel, link), FILE_READ_ATTRIBUTES | SYNCHRONIZE), _close()]
            opened = _Opened(self._check(link.exchange(msgs, self.timeout)[0], path))
            return self._entry(rel, opened.size, opened.mtime, opened.attributes)

        return self._run(path, op)

    def open(self, path: str) -> BinaryIO:
        rel = check_relative(path)
        if not rel:
            raise StorageError(path, "is a folder")
        return _Reader(self, rel)  # type: ignore[return-value]

    # write

    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        rel = check_relative(path)
        if not rel:
            raise InvalidPath(path, "cannot write the root")
        if "\\" in rel:
            raise InvalidPath(path, "backslash in a name")
        self._creatable(rel)
        parent, _, base = rel.rpartition("/")
        tmp_rel = f"{parent}/{temp_name(base)}" if parent else temp_name(base)
        self._link()  # connect first: a bad endpoint fails before the source is read
        first = _read_up_to(stream, self._chunk)
        # the temp file is made hidden; the final name gets the source's attributes
        attributes = entry.attributes & COPIED_ATTRIBUTES or ATTR_ARCHIVE
        if len(first) < self._chunk:
            return self._write_small(rel, tmp_rel, first, entry.mtime_ns, attributes)
        return self._write_large(rel, tmp_rel, first, stream, entry.mtime_ns, attributes)

    def _open_temp(self, link: _Link, tmp_rel: str, path: str, then: list[_Msg]) -> list:
        """CREATE the temp file (overwriting a leftover) followed by `then` in one
        compound; make the parent folders when they are missing."""
        access = FILE_WRITE_DATA | FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES | DELETE
        create = _create(
            self._name(tmp_rel, link),
            access | SYNCHRONIZE,
            FILE_OVERWRITE_IF,
            FILE_NON_DIRECTORY_FILE,
            share=0,  # nobody else opens a half-written file
            attributes=ATTR_HIDDEN,  # nor sees it in Explorer
        )
        results = link.exchange([create, *then], self.timeout)
        first = results[0]
        if isinstance(first, _Failed) and first.status == STATUS_OBJECT_PATH_NOT_FOUND:
            self._mkdirs(link, path.rpartition("/")[0])
            results = link.exchange([create, *then], self.timeout)
        self._check(results[0], path)
        return results

    def _write_small(
        self, rel: str, tmp_rel: str, data: bytes, mtime_ns: int, attributes: int
    ) -> Written:
        def op(link: _Link) -> Written:
            then = [_write(0, data)] if data else []
            then.append(_basic_info(mtime_ns, attributes))
            then += [_rename(self._name(rel, link)), _close()]
            results = self._open_temp(link, tmp_rel, rel, then)
            failed = next((r for r in results[1:-1] if isinstance(r, _Failed)), None)
            if failed is not None:  # the compound's CLOSE still ran: remove the temp file
                self._remove_quietly(link, tmp_rel)
                raise self._error(failed, rel)
            return Written(size=len(data))

        return self._run(rel, op)

    def _write_large(
        self,
        rel: str,
        tmp_rel: str,
        first: bytes,
        stream: BinaryIO,
        mtime_ns: int,
        attributes: int,
    ) -> Written:
        link = self._link()
        try:
            results = self._open_temp(link, tmp_rel, rel, [_write(0, first)])
        except _LinkLost as exc:
            self._drop(link)
            raise Transient(rel, f"connection to {self.host}:{self.port} lost: {exc}") from exc
        file_id = _Opened(results[0]).file_id
        pending: deque = deque()
        size = len(first)
        try:
            self._check(results[1], rel)
            while chunk := _read_up_to(stream, self._chunk):
                if len(pending) >= PIPELINE:
                    self._check(link.collect(pending.popleft(), self.timeout), rel)
                pending.append(link.submit(_write(size, chunk, file_id)))
                size += len(chunk)
            while pending:
                self._check(link.collect(pending.popleft(), self.timeout), rel)
            msgs = [_basic_info(mtime_ns, attributes), _rename(self._name(rel, link)), _close()]
            # the first message names the handle; the rest follow it in the compound
            msgs[0] = _with_file_id(msgs[0], file_id)
            results = link.exchange(msgs, self.timeout)
            failed = next((r for r in results[:-1] if isinstance(r, _Failed)), None)
            file_id = b""  # closed by the compound
            if failed is not None:
                self._remove_quietly(link, tmp_rel)
                raise self._error(failed, rel)
            return Written(size=size)
        except _LinkLost as exc:
            self._drop(link)
            raise Transient(rel, f"connection to {self.host}:{self.port} lost: {exc}") from exc
        except BaseException:
            if file_id and link.alive:
                self._discard(link, file_id, pending)
            raise

    def _discard(self, link: _Link, file_id: bytes, pending: deque) -> None:
        """Delete the temp file behind an open handle and close it, after a failure."""
        try:
            while pending:
                link.collect(pending.popleft(), self.timeout)
            link.exchange([_delete_on_close(file_id), _close()], self.timeout)
        except _LinkLost:
            self._drop(link)

    def _remove_quietly(self, link: _Link, rel: str) -> None:
        try:
            link.exchange(
                [_create(self._name(rel, link), DELETE), _delete_on_close(), _close()],
                self.timeout,
            )
        except _LinkLost:
            self._drop(link)

    # folders, delete

    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        rel = check_relative(path)
        if not rel:  # the root itself, made (with its parents) for a new destination
            return self._run("", lambda link: self._mkdirs(link, ""))
        if "\\" in rel:
            raise InvalidPath(path, "backslash in a name")
        self._creatable(rel)
        mtime_ns = entry.mtime_ns if entry is not None else 0
        return self._run(path, lambda link: self._mkdirs(link, rel, mtime_ns))

    def _mkdirs(self, link: _Link, rel: str, mtime_ns: int = 0) -> bool:
        """Create `rel` and any missing parents, the root included; True when `rel`
        itself was created."""
        return self._mkdirs_in_share(link, "/".join(p for p in (self.root, rel) if p), mtime_ns)

    def _mkdirs_in_share(self, link: _Link, full: str, mtime_ns: int = 0) -> bool:
        if not full:
            return False
        access = FILE_READ_ATTRIBUTES | FILE_WRITE_ATTRIBUTES | SYNCHRONIZE
        name = link.prefix + full.replace("/", "\\")
        create = _create(name, access, FILE_CREATE, FILE_DIRECTORY_FILE)
        msgs = [create, *([_basic_info(mtime_ns)] if mtime_ns else []), _close()]
        result = link.exchange(msgs, self.timeout)[0]
        if isinstance(result, _Failed) and result.status == STATUS_OBJECT_PATH_NOT_FOUND:
            self._mkdirs_in_share(link, full.rpartition("/")[0])
            result = link.exchange(msgs, self.timeout)[0]
        shown = full[len(self.root) + 1 :] if self.root else full  # errors name our paths
        if isinstance(result, _Failed) and result.status == STATUS_OBJECT_NAME_COLLISION:
            probe = [_create(name, FILE_READ_ATTRIBUTES | SYNCHRONIZE), _close()]
            existing = _Opened(self._check(link.exchange(probe, self.timeout)[0], shown))
            if not existing.attributes & ATTR_DIRECTORY:
                raise StorageError(shown, "a file is in the way of this folder")
            return False
        self._check(result, shown)
        return True

    def delete(self, path: str) -> None:
        rel = check_relative(path)
        if not rel:
            raise InvalidPath(path, "cannot delete the root")

        def op(link: _Link) -> None:
            msgs = [
                _create(self._name(rel, link), DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE),
                _delete_on_close(),
                _close(),
            ]
            results = link.exchange(msgs, self.timeout)
            for result in results[:2]:
                self._check(result, path)

        self._run(path, op)

    # ACLs

    def read_acl(self, path: str) -> SecurityDescriptor:
        """Owner, group and DACL of `path` (the SACL needs a privilege we do not ask for)."""
        rel = check_relative(path)
        info = (
            sdmod.OWNER_SECURITY_INFORMATION
            | sdmod.GROUP_SECURITY_INFORMATION
            | sdmod.DACL_SECURITY_INFORMATION
        )

        def op(link: _Link) -> SecurityDescriptor:
            msgs = [
                _create(self._name(rel, link), READ_CONTROL | FILE_READ_ATTRIBUTES | SYNCHRONIZE),
                _query_security(info),
                _close(),
            ]
            results = link.exchange(msgs, self.timeout)
            self._check(results[0], path)
            blob = _payload(self._check(results[1], path))
            try:
                return sdmod.parse(blob)
            except sdmod.SDParseError as exc:
                raise StorageError(path, f"unreadable security descriptor: {exc}") from exc

        return self._run(path, op)

    def write_acl(self, path: str, acl: object) -> None:
        """Set the owner, group and DACL (and SACL, when given) that `acl` carries."""
        rel = check_relative(path)
        if isinstance(acl, bytes | bytearray | memoryview):
            acl = sdmod.parse(bytes(acl))
        if not isinstance(acl, SecurityDescriptor):
            raise TypeError(f"write_acl wants a SecurityDescriptor, not {type(acl).__name__}")
        info = acl.security_information
        access = READ_CONTROL | SYNCHRONIZE
        if info & sdmod.DACL_SECURITY_INFORMATION:
            access |= WRITE_DAC
        if info & (sdmod.OWNER_SECURITY_INFORMATION | sdmod.GROUP_SECURITY_INFORMATION):
            access |= WRITE_OWNER
        if info & sdmod.SACL_SECURITY_INFORMATION:
            access |= ACCESS_SYSTEM_SECURITY
        blob = sdmod.serialize(acl)

        def op(link: _Link) -> None:
            msgs = [
                _create(self._name(rel, link), access),
                _set_info(INFO_SECURITY, 0, blob, additional=info),
                _close(),
            ]
            for result in link.exchange(msgs, self.timeout)[:2]:
                self._check(result, path)

        self._run(path, op)

    # check

    def check(self) -> None:
        """Log on, open the share, and list the first names of the root folder."""
        where = f"{self.host}:{self.port}"
        try:
            self._run("", self._probe)
        except ConnectFailed:
            raise
        except Transient as exc:  # before any work: unreachable is final, in words
            raise ConnectFailed("", exc.message) from exc
        except NotFound as exc:
            raise ConnectFailed(
                "", f"no folder {self.root!r} in share {self.share!r} on {where}"
            ) from exc
        except AccessDenied as exc:
            shown = repr(self.root) if self.root else "the root of the share"
            raise ConnectFailed(
                "", f"{self._account} may not list {shown} in {self.share!r} on {where}"
            ) from exc
        except StorageError as exc:
            raise ConnectFailed("", f"{where}: {exc}") from exc

    def _probe(self, link: _Link) -> None:
        access = FILE_READ_DATA | FILE_READ_ATTRIBUTES | SYNCHRONIZE
        msgs = [
            _create(self._name("", link), access, options=FILE_DIRECTORY_FILE),
            _query_directory(),
            _close(),
        ]
        results = link.exchange(msgs, self.timeout)
        self._check(results[0], "")
        listed = results[1]
        if not (isinstance(listed, _Failed) and listed.status == STATUS_NO_MORE_FILES):
            self._check(listed, "")


def _with_file_id(msg: _Msg, file_id: bytes) -> _Msg:
    """The same SET_INFO/CLOSE request aimed at `file_id` instead of the related handle."""
    offset = {Commands.SMB2_SET_INFO: 16, Commands.SMB2_CLOSE: 8}[msg.COMMAND]
    body = msg.body[:offset] + file_id + msg.body[offset + 16 :]
    return _Msg(msg.COMMAND, body, msg.payload, **msg.fields)


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Exactly `size` bytes unless the stream ends first (sources give short reads)."""
    first = stream.read(size)
    if not first or len(first) == size:
        return first or b""
    parts = [first]
    got = len(first)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


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
            raise Transient(self._rel, "file changed while it was read")

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
            raise Transient(self._rel, "file shrank while it was read")
        data = _read_payload(self._c._check(result, self._rel))
        if len(data) != length:
            raise Transient(self._rel, "file changed while it was read")
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


def from_url(url: str, secret: str | None = None) -> SMBConnector:
    """smb://[DOMAIN;]user@host[:port]/share/path; the password is `secret`."""
    parts = urlsplit(url)
    if parts.scheme != "smb" or not parts.hostname:
        raise ValueError(f"SMB URL must be smb://[DOMAIN;]user@host[:port]/share/path: {url!r}")
    if parts.password is not None:
        raise ValueError("put the SMB password in the endpoint's secret, not in the URL")
    userinfo = unquote(parts.username or "")
    domain, _, user = userinfo.rpartition(";")
    if not user:
        raise ValueError(f"SMB URL names no user: {url!r}")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments:
        raise ValueError(f"SMB URL names no share: {url!r}")
    try:
        port = parts.port or 445
    except ValueError as exc:
        raise ValueError(f"bad port in SMB URL {url!r}") from exc
    return SMBConnector(
        host=parts.hostname,
        share=segments[0],
        root="/".join(segments[1:]),
        user=user,
        password=secret or "",
        domain=domain,
        port=port,
    )
