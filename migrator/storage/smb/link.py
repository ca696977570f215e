"""One thread's connection to a share: smbprotocol's (`_Link`), or once logged on our own
(`_LeanLink`): requests packed and signed here and responses read and verified in the
calling thread."""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
from collections.abc import Callable

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBException, SMBResponseException
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from .wire import (
    _HEADER,
    _NO_SIGNATURE,
    _PROTOCOL,
    CHUNK,
    FLAG_ASYNC,
    FLAG_DFS,
    FLAG_RELATED,
    FLAG_SIGNED,
    LINK_GONE,
    STATUS_PENDING,
    _Failed,
    _Msg,
)

CREDIT_FLOOR = 256  # ask for more credits whenever fewer than this are left
READ_AHEAD = 1 << 16  # bytes a receive asks for beyond the frame it needs


class _LinkLost(Exception):
    """The connection under an operation failed; the link is dropped."""


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
