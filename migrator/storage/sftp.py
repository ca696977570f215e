"""A folder on a server reached over SSH (SFTP), as source or destination:

  sftp://user@host[:port]/absolute/path[?hostkey=SHA256:…]

The path is absolute on the server (an empty path is the user's login folder). Options:

  hostkey=SHA256:…   the server's host key fingerprint, as `ssh-keygen -l` shows it: a
                     server that presents another key is refused before any credential
                     is sent. Without it the first key seen is pinned for the connector's
                     life (its reconnects must meet the same key) and reported by
                     `host_key_fingerprint` and by check() for staff to put in the URL.

The credentials are the endpoint's secret (never the URL): a password, or an OpenSSH/PEM
private key's text, or a JSON object {"password": …} / {"private_key": …, "passphrase":
…}. Without a secret (the one-shot CLI), the environment: MIGRATOR_SFTP_PASSWORD or
MIGRATOR_SFTP_KEY_FILE (a private key file's path).

paramiko (synchronous, as the engine's threads are): one SSH connection per connector,
and the engine opens one connector per copy thread. Reads are streamed in bounded
windows of pipelined requests (memory bounded whatever the file's size); writes go to a
temp name in the same folder, get their mtime, then take the final name with the
posix-rename@openssh.com extension (atomic, replaces a file there), or where the server
lacks it a remove then a rename. SFTP v3 keeps whole seconds and no hashes.

Errors: no such file → NotFound, permission denied → AccessDenied, a dropped connection
→ Transient (the connector reconnects on its next call; listings and stats, which the
engine cannot redo on their own, are retried here and counted in `retries`).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import json
import logging
import os
import posixpath
import socket
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import paramiko

from .base import Capabilities, Connector, Entry, ScanError, Written
from .errors import (
    AccessDenied,
    ConnectFailed,
    DestinationFull,
    InvalidPath,
    NotFound,
    StorageError,
    Transient,
)
from .walk import children, temp_name, walk

DEFAULT_PORT = 22
TIMEOUT = 15.0  # seconds to connect, to finish the SSH handshake and to log in
RETRIES = 3  # attempts for a listing or a stat across a dropped connection
BACKOFF = 0.2  # seconds, doubled per attempt
CHUNK = 1 << 20  # bytes read from the caller's stream per write call
READ_AHEAD = 128  # SFTP read requests in flight while a file is streamed
REQUEST = 32768  # bytes one SFTP read asks for (what OpenSSH and paramiko send at most)
# bytes read ahead as one window of pipelined requests: bounds what a stream holds, since
# paramiko keeps every answer that came until it is read (its plain read-ahead of a
# whole 256 MB file held 300 MB and took 60 s; in windows of 16 MB with 128 requests in
# flight 5.4-5.9 s and 58 MB RSS on a loaded machine; 64 in flight 10.6 s, 32 34 s)
WINDOW = 16 << 20
WINDOW_BYTES = 8 << 20  # the SSH channel window we offer: twice READ_AHEAD's requests
SMALL = 256 << 10  # smaller files are read by plain requests, no read-ahead thread
OPTIONS = ("hostkey",)
ENV_PASSWORD = "MIGRATOR_SFTP_PASSWORD"  # noqa: S105 - the variable's name
ENV_KEY_FILE = "MIGRATOR_SFTP_KEY_FILE"
DROPPED_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT, errno.ENOTCONN}
)

T = TypeVar("T")

# paramiko says at INFO that it connected and how each login went: noise on a terminal
# (the CLI prints one line for a failure), never a help
logging.getLogger("paramiko").setLevel(logging.WARNING)


def check_relative(path: str) -> str:
    """A relative path, or InvalidPath: no '..', '.', empty parts, leading '/' or NUL."""
    if path in ("", "."):
        return ""
    if "\x00" in path or path.startswith("/"):
        raise InvalidPath(path, "absolute path or NUL in name")
    wrapped = f"/{path}/"
    if "//" in wrapped or "/./" in wrapped or "/../" in wrapped:
        raise InvalidPath(path, "path would escape the destination root")
    return path


def fingerprint(key: paramiko.PKey) -> str:
    """The "SHA256:<base64, no padding>" of a public key, as OpenSSH shows it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


# -- credentials -------------------------------------------------------------------------


def credentials_of(secret: str | None) -> tuple[str | None, paramiko.PKey | None]:
    """(password, private key) from the endpoint's secret, else from the environment.
    Raises ValueError (naming no secret) when a key is given but cannot be read."""
    if not secret:
        key_file = os.environ.get(ENV_KEY_FILE)
        if key_file:
            with open(key_file, encoding="utf-8") as fh:
                return None, _load_key(fh.read(), None)
        return os.environ.get(ENV_PASSWORD) or None, None
    text = secret.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("the SFTP secret looks like JSON but is not valid JSON") from None
        key_text = data.get("private_key")
        key = _load_key(key_text, data.get("passphrase")) if key_text else None
        return data.get("password") or None, key
    if text.startswith("-----BEGIN"):
        return None, _load_key(text, None)
    return secret, None


def _load_key(text: str, passphrase: str | None) -> paramiko.PKey:
    kinds = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
    for kind in kinds:
        try:
            return kind.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise ValueError("the private key needs a passphrase: give it in the secret") from None
        except (paramiko.SSHException, ValueError, IndexError, TypeError):
            continue
    raise ValueError("the private key in the secret cannot be read (OpenSSH or PEM expected)")


# -- errors ------------------------------------------------------------------------------


def _wrap(exc: BaseException, path: str) -> StorageError:
    """The typed error for what paramiko raised."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, EOFError | paramiko.SSHException | socket.timeout):
        return Transient(path, f"SFTP connection failed: {exc}")
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOENT:
            return NotFound(path, "no such file or folder")
        if exc.errno == errno.EACCES:
            return AccessDenied(path, "permission denied")
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return DestinationFull(path, "no space left on the server")
        if exc.errno in DROPPED_ERRNOS:
            return Transient(path, f"SFTP connection failed: {exc}")
        text = exc.strerror or (str(exc.args[0]) if exc.args else "") or type(exc).__name__
        return StorageError(path, f"SFTP error: {text}")
    return StorageError(path, f"{type(exc).__name__}: {exc}")


# -- reading -----------------------------------------------------------------------------


class _Reader(io.RawIOBase):
    """A remote file's bytes up to the size it had when opened, read ahead by windows of
    pipelined requests (paramiko's readv); errors typed."""

    def __init__(
        self,
        handle: paramiko.SFTPFile,
        path: str,
        opened_as: tuple[int, int],
        transport: paramiko.Transport,
    ) -> None:
        self._handle = handle
        self._transport = transport  # this stream's connection, whatever the connector's now
        self._path = path
        self.opened_as = opened_as  # (size, mtime s) when opened: changed_while_read
        self._size = opened_as[0]
        self._planned = 0  # bytes asked for so far
        self._chunks: Iterator[bytes] = iter(())
        self._rest = b""

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bytes:
        chunk = next(self._chunks, None)
        if chunk is not None:
            return chunk
        if self._planned >= self._size:
            return b""
        if self._size <= SMALL:  # a few requests in turn: no thread for a small file
            self._planned = self._size
            return self._handle.read(self._size)
        start, end = self._planned, min(self._size, self._planned + WINDOW)
        self._planned = end
        wanted = [(offset, min(REQUEST, end - offset)) for offset in range(start, end, REQUEST)]
        self._chunks = iter(self._handle.readv(wanted, READ_AHEAD))
        return next(self._chunks, b"")

    def read(self, size: int | None = -1) -> bytes:
        try:
            if size is None or size < 0:
                parts = [self._rest]
                while chunk := self._next_chunk():
                    parts.append(chunk)
                self._rest = b""
                return b"".join(parts)
            if not self._rest:
                self._rest = self._next_chunk()
            data, self._rest = self._rest[:size], self._rest[size:]
            return data
        except Exception as exc:
            if not self._transport.is_active():  # paramiko says so in several ways
                raise Transient(self._path, f"SFTP connection dropped: {exc}") from exc
            raise _wrap(exc, self._path) from exc

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def fstat(self) -> paramiko.SFTPAttributes:
        return self._handle.stat()

    def close(self) -> None:
        if not self.closed:
            try:
                self._handle.close()
            except Exception:  # noqa: S110 - a read-only handle on a dropped connection
                pass
            finally:
                super().close()


# -- the connector -----------------------------------------------------------------------


class SftpConnector(Connector):
    """A folder on an SFTP server; one SSH connection, opened on first use."""

    scheme = "sftp"
    capabilities = Capabilities(
        hashes=frozenset(),  # SFTP v3 has no checksums (no server-side hashing)
        mtime_precision_ns=10**9,  # SFTP v3 attributes hold whole seconds
        case_insensitive=False,
        rename=True,
        max_name_bytes=255,  # NAME_MAX of the server's (Unix) file system
        max_path_bytes=4095,
    )

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        path: str,
        *,
        password: str | None = None,
        key: paramiko.PKey | None = None,
        hostkey: str = "",
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self._path = path  # absolute on the server; "" = the login folder
        self._password = password
        self._key = key
        self.pinned = hostkey  # what the URL pins; else the first key seen
        self.host_key_fingerprint = ""  # what the server presented
        self.retries = 0  # listings and stats retried here after a dropped connection
        self.reconnects = 0  # connections found dropped and opened again
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._root: str | None = None
        self._made: set[str] = set()
        self._posix_rename = True
        self._connected = False  # logged in once: a later failure to reach it is transient
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}{self._path or '/~'}"

    def __repr__(self) -> str:  # never the secret
        return f"<SftpConnector {self.where}>"

    # -- connection ----------------------------------------------------------------------

    def _connect(self) -> paramiko.SFTPClient:
        """A logged-in SFTP session; raises ConnectFailed in words."""
        address = f"{self.host}:{self.port}"
        try:
            sock = socket.create_connection((self.host, self.port), timeout=TIMEOUT)
        except socket.gaierror as exc:
            raise ConnectFailed(self.where, f"unknown host {self.host}: {exc.strerror}") from exc
        except ConnectionRefusedError as exc:
            if self._connected:  # it served us before: down for a moment, maybe
                raise Transient(self.where, f"connection refused at {address}") from exc
            message = f"connection refused at {address}: no SSH server listens on that port"
            raise ConnectFailed(self.where, message) from exc
        except OSError as exc:
            if self._connected:
                raise Transient(self.where, f"cannot reach {address}: {exc}") from exc
            cause = Transient(self.where, str(exc))
            message = f"cannot reach {address}: {exc.strerror or exc}"
            raise ConnectFailed(self.where, message) from cause
        transport = paramiko.Transport(sock, default_window_size=WINDOW_BYTES)
        try:
            transport.banner_timeout = transport.auth_timeout = TIMEOUT
            try:
                transport.start_client(timeout=TIMEOUT)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                message = f"{address} did not complete an SSH handshake: {exc}"
                if self._connected:
                    raise Transient(self.where, message) from exc
                raise ConnectFailed(self.where, message) from exc
            seen = fingerprint(transport.get_remote_server_key())
            self.host_key_fingerprint = seen
            if self.pinned and seen != self.pinned:
                message = (
                    f"host key mismatch: the server at {address} presents {seen}, but "
                    f"the endpoint pins {self.pinned}; nothing was sent to it (if the "
                    "server's key was changed on purpose, put the new one in hostkey=)"
                )
                raise ConnectFailed(self.where, message)
            self.pinned = seen  # pinned on first use for this connector's reconnects
            self._login(transport, address)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise ConnectFailed(self.where, f"{address} refused the SFTP subsystem")
            sftp.get_channel().settimeout(TIMEOUT * 4)
        except BaseException:
            transport.close()
            raise
        self._transport, self._sftp = transport, sftp
        self._connected = True
        if self._root is None:
            try:
                self._root = sftp.normalize(self._path or ".")
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    self._root = posixpath.normpath(self._path)  # check() says it is missing
                else:
                    raise _wrap(exc, "") from exc
        return sftp

    def _login(self, transport: paramiko.Transport, address: str) -> None:
        if self._password is None and self._key is None:
            message = (
                "no SFTP credentials: give the endpoint a secret (a password or a private key)"
            )
            raise ConnectFailed(self.where, message)
        try:
            if self._key is not None:
                transport.auth_publickey(self.user, self._key)
            else:
                transport.auth_password(self.user, self._password or "")
        except paramiko.BadAuthenticationType as exc:
            allowed = ", ".join(exc.allowed_types) or "none"
            message = f"{address} does not accept this kind of login (it allows: {allowed})"
            raise ConnectFailed(self.where, message) from exc
        except paramiko.AuthenticationException as exc:
            what = "the private key" if self._key is not None else "the password"
            message = f"login refused: {what} is wrong for user {self.user} at {address}"
            raise ConnectFailed(self.where, message) from exc
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectFailed(self.where, f"login to {address} failed: {exc}") from exc

    def _client(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is not None and self._transport is not None:
                if self._transport.is_active():
                    return self._sftp
                self._drop()
                self.reconnects += 1
            return self._connect()

    def _drop(self) -> None:
        transport, self._transport, self._sftp = self._transport, None, None
        if transport is not None:
            transport.close()

    def _alive(self) -> bool:
        return self._transport is not None and self._transport.is_active()

    def _call(self, path: str, action: Callable[[paramiko.SFTPClient], T], retry: bool) -> T:
        """`action` on the session, its errors typed; a dropped connection reconnects and,
        where `retry` (idempotent reads), is tried again with backoff."""
        attempt = 0
        while True:
            attempt += 1
            try:
                sftp = self._client()
            except StorageError as exc:  # reconnecting failed: retried only if transient
                if not (retry and exc.transient and attempt < RETRIES):
                    raise
            else:
                try:
                    return action(sftp)
                except Exception as exc:
                    error = self._typed(exc, path)
                    if not (retry and error.transient and attempt < RETRIES):
                        raise error from exc
            self.retries += 1
            time.sleep(BACKOFF * (2 ** (attempt - 1)))

    def _typed(self, exc: Exception, path: str) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if not self._alive() or isinstance(exc, EOFError | socket.timeout):
            with self._lock:
                self._drop()
            return Transient(path, f"SFTP connection dropped: {exc}")
        return _wrap(exc, path)

    def _root_path(self) -> str:
        if self._root is None:
            self._client()
        return self._root or "/"

    def _abs(self, path: str) -> str:
        rel = check_relative(path)
        root = self._root_path()
        return posixpath.join(root, rel) if rel else root

    # -- reading -------------------------------------------------------------------------

    def _entry(self, path: str, attrs: paramiko.SFTPAttributes) -> Entry:
        mode = attrs.st_mode or 0
        mtime_ns = int(attrs.st_mtime or 0) * 10**9
        if stat_mod.S_ISDIR(mode):
            return Entry(path, "dir", 0, mtime_ns)
        if stat_mod.S_ISLNK(mode):
            return Entry(path, "link", 0, mtime_ns)
        return Entry(path, "file", int(attrs.st_size or 0), mtime_ns)

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        yield from walk(self._list, check_relative(prefix.strip("/")))

    def _list(self, rel: str) -> list[Entry | ScanError]:
        """One folder's children, sorted by name; a folder that cannot be read (gone,
        denied, the server unreachable after retries) becomes a ScanError."""
        try:
            full = self._abs(rel)
            listed = self._call(rel, lambda s: s.listdir_attr(full), retry=True)
        except StorageError as exc:
            return [ScanError(rel, exc)]
        listed.sort(key=lambda a: a.filename)
        return children(rel, ((a.filename, a) for a in listed), self._entry)

    def stat(self, path: str) -> Entry:
        full = self._abs(path)
        return self._entry(path, self._call(path, lambda s: s.lstat(full), retry=True))

    def folder_names(self, path: str, limit: int) -> set[str] | None:
        try:
            names = self._call(path, lambda s: s.listdir(self._abs(path)), retry=True)
        except NotFound:
            return set()
        except StorageError:
            return None
        return set(names) if len(names) <= limit else None

    def open(self, path: str) -> BinaryIO:
        full = self._abs(path)

        def opening(sftp: paramiko.SFTPClient) -> _Reader:
            handle = sftp.open(full, "rb")
            try:
                attrs = handle.stat()
                if stat_mod.S_ISDIR(attrs.st_mode or 0):
                    raise StorageError(path, "is a folder")
                size = int(attrs.st_size or 0)
            except BaseException:
                handle.close()
                raise
            opened_as = (size, int(attrs.st_mtime or 0))
            return _Reader(handle, path, opened_as, sftp.get_channel().get_transport())

        return self._call(path, opening, retry=False)  # type: ignore[return-value]

    def changed_while_read(self, stream: BinaryIO) -> str:
        before = getattr(stream, "opened_as", None)
        if before is None or stream.closed or not isinstance(stream, _Reader):
            return ""
        try:
            now = stream.fstat()
        except Exception:
            return ""
        if int(now.st_size or 0) != before[0]:
            return f"its size went from {before[0]} to {now.st_size} bytes while it was read"
        if int(now.st_mtime or 0) != before[1]:
            return "it was modified while it was read"
        return ""

    # -- writing -------------------------------------------------------------------------

    def _ensure_folder(self, sftp: paramiko.SFTPClient, full: str) -> bool:
        """Make `full` and its missing parents (the root's too, as a destination's first
        check asks); True when it was made."""
        if full in self._made:
            return False
        missing: list[str] = []
        current = full
        while current not in ("/", ""):
            try:
                attrs = sftp.stat(current)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                missing.append(current)
                current = posixpath.dirname(current)
                continue
            if not stat_mod.S_ISDIR(attrs.st_mode or 0):
                raise StorageError(current, "a file is in the way of a folder")
            break
        for folder in reversed(missing):
            try:
                sftp.mkdir(folder)
            except OSError:
                # made by another thread meanwhile, or a real failure that stat shows
                if not stat_mod.S_ISDIR(sftp.stat(folder).st_mode or 0):
                    raise
        self._made.add(full)
        return bool(missing)

    def _rename_over(self, sftp: paramiko.SFTPClient, src: str, dst: str) -> None:
        """Rename replacing what is at `dst`: atomic with posix-rename@openssh.com."""
        if self._posix_rename:
            try:
                sftp.posix_rename(src, dst)
                return
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EACCES) or self._alive() is False:
                    raise
                self._posix_rename = False  # the server lacks the extension
        try:
            sftp.remove(dst)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        sftp.rename(src, dst)

    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        full = self._abs(path)
        if full == self._root_path():
            raise InvalidPath(path, "cannot write the root")
        folder = posixpath.dirname(full)
        tmp = posixpath.join(folder, temp_name(posixpath.basename(full)))
        sftp = self._client()
        size = 0
        try:
            self._ensure_folder(sftp, folder)
            with sftp.open(tmp, "wb") as handle:
                handle.set_pipelined(True)
                while chunk := stream.read(CHUNK):
                    handle.write(chunk)
                    size += len(chunk)
            if entry.mtime_ns:
                seconds = entry.mtime_ns // 10**9
                sftp.utime(tmp, (seconds, seconds))
            self._rename_over(sftp, tmp, full)
        except BaseException as exc:
            alive = self._alive()
            if alive:
                try:
                    sftp.remove(tmp)
                except Exception:  # noqa: S110 - never made
                    pass
            else:
                with self._lock:
                    self._drop()
            if isinstance(exc, StorageError) or not _is_ours(exc):
                raise  # typed already, or the caller's stream failed: unchanged
            self._made.discard(folder)  # a folder removed under us: make it again
            if not alive:
                raise Transient(path, f"SFTP connection dropped: {exc}") from exc
            raise _wrap(exc, path) from exc
        return Written(size=size)

    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        full = self._abs(path)

        def making(sftp: paramiko.SFTPClient) -> bool:
            self._made.discard(full)
            created = self._ensure_folder(sftp, full)
            if entry is not None and entry.mtime_ns:
                seconds = entry.mtime_ns // 10**9
                sftp.utime(full, (seconds, seconds))
            return created

        return self._call(path, making, retry=True)

    def delete(self, path: str) -> None:
        full = self._abs(path)
        if full == self._root_path():
            raise InvalidPath(path, "cannot delete the root")

        def deleting(sftp: paramiko.SFTPClient) -> None:
            if stat_mod.S_ISDIR(sftp.lstat(full).st_mode or 0):
                sftp.rmdir(full)
                self._made = {m for m in self._made if not (m + "/").startswith(full + "/")}
            else:
                sftp.remove(full)

        self._call(path, deleting, retry=False)

    def move(self, src_path: str, dst_path: str) -> None:
        src, dst = self._abs(src_path), self._abs(dst_path)
        root = self._root_path()
        if root in (src, dst):
            raise InvalidPath(src_path if src == root else dst_path, "cannot move the root")

        def moving(sftp: paramiko.SFTPClient) -> None:
            sftp.lstat(src)
            self._ensure_folder(sftp, posixpath.dirname(dst))
            self._rename_over(sftp, src, dst)
            self._made = {m for m in self._made if not (m + "/").startswith(src + "/")}

        self._call(src_path, moving, retry=False)

    # -- checking ------------------------------------------------------------------------

    def check(self) -> None:
        """Connect, pin the host key, log in and list the root; ConnectFailed in words."""
        try:
            sftp = self._client()
            root = self._root_path()
            attrs = sftp.stat(root)
        except ConnectFailed:
            raise
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                cause: StorageError = NotFound(self.where, "no such folder")
                message = f"folder {self._path} does not exist on {self.host}"
                raise ConnectFailed(self.where, message) from cause
            raise ConnectFailed(self.where, str(_wrap(exc, self._path))) from exc
        except StorageError as exc:
            raise ConnectFailed(self.where, exc.message) from exc
        except Exception as exc:
            raise ConnectFailed(self.where, str(_wrap(exc, self._path))) from exc
        if not stat_mod.S_ISDIR(attrs.st_mode or 0):
            raise ConnectFailed(self.where, f"{self._path} on {self.host} is not a folder")
        try:
            sftp.listdir(root)
        except OSError as exc:
            error = _wrap(exc, self._path)
            raise ConnectFailed(self.where, f"cannot list {self._path}: {error.message}") from exc

    def close(self) -> None:
        with self._lock:
            self._drop()


def _is_ours(exc: Exception) -> bool:
    """An error of the SFTP session (typed, or paramiko's/the socket's), not the
    caller's stream's."""
    return isinstance(exc, StorageError | OSError | EOFError | paramiko.SSHException)


# -- opening -----------------------------------------------------------------------------


def parse_url(url: str) -> tuple[str, int, str, str, dict[str, str]]:
    """(host, port, user, absolute path, options) of an sftp:// URL; ValueError if bad."""
    parts = urlsplit(url)
    if parts.scheme != "sftp":
        raise ValueError(f"not an sftp:// URL: {url!r}")
    if parts.password is not None:
        raise ValueError("put the SFTP password in the endpoint's secret, never in the URL")
    if not parts.username or not parts.hostname:
        raise ValueError(f"SFTP URL must be sftp://user@host[:port]/path, got {url!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}") from exc
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown SFTP URL option {unknown[0]!r}: expected {', '.join(OPTIONS)}")
    # a fingerprint's base64 holds '+', which a query string reads as a space
    hostkey = options.get("hostkey", "").replace(" ", "+")
    if hostkey and not hostkey.startswith("SHA256:"):
        raise ValueError("hostkey= must be a SHA256:… fingerprint, as ssh-keygen -l shows it")
    path = unquote(parts.path)
    if path:
        path = posixpath.normpath(path)
    options["hostkey"] = hostkey
    return parts.hostname, port, unquote(parts.username), path, options


def from_url(url: str, secret: str | None = None) -> SftpConnector:
    """sftp://user@host[:port]/path[?hostkey=SHA256:…]; no connection until first use."""
    host, port, user, path, options = parse_url(url)
    password, key = credentials_of(secret)
    return SftpConnector(
        host, port, user, path, password=password, key=key, hostkey=options.get("hostkey", "")
    )


__all__ = ["SftpConnector", "credentials_of", "fingerprint", "from_url", "parse_url"]
