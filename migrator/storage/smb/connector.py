"""The SMB connector: paths, the file operations as compounds, folders, ACLs, check."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBAuthenticationError, SMBException, SMBResponseException
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from migrator.acl import sd as sdmod
from migrator.acl.sd import SecurityDescriptor
from migrator.sanitize import hard_limits_for

from ..base import Capabilities, Connector, Entry, ScanError, Watch, Written
from ..errors import (
    AccessDenied,
    ConnectFailed,
    DestinationFull,
    InvalidPath,
    Locked,
    NotFound,
    StorageError,
    Transient,
    Unsupported,
)
from ..local import check_relative
from ..walk import children, temp_name, walk
from .link import _Handoff, _LeanLink, _Link, _LinkLost
from .pool import _POOL
from .reader import _Reader
from .wire import (
    ACCESS_SYSTEM_SECURITY,
    ATTR_ARCHIVE,
    ATTR_DIRECTORY,
    ATTR_HIDDEN,
    ATTR_REPARSE_POINT,
    BUSY,
    CHUNK,
    COPIED_ATTRIBUTES,
    DELETE,
    DENIED,
    FILE_CREATE,
    FILE_DIRECTORY_FILE,
    FILE_NON_DIRECTORY_FILE,
    FILE_OVERWRITE_IF,
    FILE_READ_ATTRIBUTES,
    FILE_READ_DATA,
    FILE_WRITE_ATTRIBUTES,
    FILE_WRITE_DATA,
    FULL,
    INFO_SECURITY,
    INVALID,
    LOCKED,
    LOGON,
    LOGON_LATER,
    NOT_FOUND,
    OTHER,
    PIPELINE,
    READ_CONTROL,
    STATUS_BAD_NETWORK_NAME,
    STATUS_NO_MORE_FILES,
    STATUS_OBJECT_NAME_COLLISION,
    STATUS_OBJECT_PATH_NOT_FOUND,
    SYNCHRONIZE,
    WRITE_DAC,
    WRITE_OWNER,
    _basic_info,
    _close,
    _create,
    _delete_on_close,
    _directory_entries,
    _Failed,
    _Msg,
    _Opened,
    _payload,
    _query_directory,
    _query_security,
    _rename,
    _set_info,
    _with_file_id,
    _write,
    unix_ns,
)

T = TypeVar("T")

# smbprotocol tells of every negotiate, logon and tree connect at INFO: on a CLI's stderr
# that buries the one line that matters. A level set in LOGGING still wins.
if logging.getLogger("smbprotocol").level == logging.NOTSET:
    logging.getLogger("smbprotocol").setLevel(logging.WARNING)

LIST_RETRY_SECONDS = 30.0  # a scan waits this long for a server that went away
EXTRA_CREDITS = 192  # asked for once per connection, so pipelines never wait on credits


@functools.lru_cache(maxsize=8192)
def _valid_name(name: str) -> bool:
    """By the rules SMBConnector.capabilities declare. Cached: a folder's name is checked
    once, not once per file written into it."""
    return hard_limits_for("smb").is_valid(name)


# --- the connector ----------------------------------------------------------------------------


class SMBConnector(Connector):
    scheme = "smb"
    capabilities = Capabilities(
        mtime_precision_ns=100,
        acl=True,
        case_insensitive=True,
        rename=True,
        # what Windows and NTFS hold: 255 UTF-16 units a name, 32,767 a path (counted from
        # the share; Explorer's MAX_PATH of 260 is a sanitization profile, not a limit)
        max_name_units=255,
        max_path_units=32_767,
        windows_names=True,
        watch=True,
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
        limit = self.capabilities.max_path_units
        if limit is not None and len(full) + sum(1 for c in full if c > "\uffff") > limit:
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
        if status in FULL:
            return DestinationFull(path, OTHER[status])
        if status == 0xC0000257:
            return Unsupported(path, "DFS referrals are not followed")
        return StorageError(path, OTHER.get(status, f"SMB error {status:#010x}"))

    def _check(self, result: bytes | _Failed, path: str) -> bytes:
        if isinstance(result, _Failed):
            raise self._error(result, path)
        return result

    # scan

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        yield from walk(self._list, check_relative(prefix.strip("/")))

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
        return children(rel, ((row[0], row) for row in sorted(raw)), self._listed)

    @staticmethod
    def _listed(path: str, row: tuple[str, int, int, int]) -> Entry:
        """The entry of one row of a listing: (name, size, mtime FILETIME, attributes)."""
        _, size, mtime, attributes = row
        return SMBConnector._entry(path, size, mtime, attributes)

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

    def move(self, src_path: str, dst_path: str) -> None:
        """One rename on the share (a folder moves with its contents): open, rename,
        close in one compound; the target's parents are made when missing."""
        src, dst = check_relative(src_path), check_relative(dst_path)
        if not src or not dst:
            raise InvalidPath(dst_path if src else src_path, "cannot move the root")
        if "\\" in src or "\\" in dst:
            raise InvalidPath(dst_path, "backslash in a name")
        self._creatable(dst)

        def op(link: _Link) -> None:
            msgs = [
                _create(self._name(src, link), DELETE | FILE_READ_ATTRIBUTES | SYNCHRONIZE),
                _rename(self._name(dst, link)),
                _close(),
            ]
            results = link.exchange(msgs, self.timeout)
            self._check(results[0], src_path)
            renamed = results[1]
            if isinstance(renamed, _Failed) and renamed.status == STATUS_OBJECT_PATH_NOT_FOUND:
                self._mkdirs(link, dst.rpartition("/")[0])
                results = link.exchange(msgs, self.timeout)
                self._check(results[0], src_path)
            self._check(results[1], dst_path)

        # not repeated on a lost connection: a rename that went through would then
        # report its source as missing
        self._run(src_path, op, retry=False)

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

    def watch(self, prefix: str = "") -> Watch:
        """SMB2 CHANGE_NOTIFY on the root with SMB2_WATCH_TREE, on a connection of its own
        (smb/watch.py); reported paths are relative to this connector's root."""
        from .watch import watch_share

        root = "/".join(p for p in (self.root, prefix.strip("/")) if p)
        return watch_share(host=self.host, port=self.port, share=self.share, root=root,
                           account=self._account, password=self._password,
                           timeout=self.timeout, under=prefix.strip("/"))  # fmt: skip

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
