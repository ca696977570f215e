"""A container (and optional prefix) in Azure Blob Storage: azure://account/container/prefix,
with options after '?':

  endpoint=http://127.0.0.1:10000/devstoreaccount1   the blob service's URL, for Azurite
                               or a sovereign cloud (default
                               https://<account>.blob.core.windows.net)

The credentials are the endpoint's secret: the account key (base64), or a SAS token
("sv=…&sig=…", with or without a leading '?'); without one, AZURE_STORAGE_KEY or
AZURE_STORAGE_SAS_TOKEN from the environment (for the CLI); without any, anonymous
(a public container).

Blobs only: folders are implied by '/' in names, so `mkdir` is Unsupported and `scan`
reports the implied folders. Listing goes a page (5,000 names) at a time with
continuation markers, one folder level at a time (a '/' delimiter): never the whole
container in memory. A listing carries each blob's metadata and Content-MD5, so the scan
needs no request per blob. The mtime is kept in the `mtime` metadata (RFC 3339 with
nanoseconds, as rclone writes it).

Writes: a blob under BLOCK bytes is one Put Blob (atomic, its Content-MD5 checked by the
service); a larger one is staged block by block (a few in flight) and appears only when
the block list is committed, with the whole md5 as its Content-MD5: no partial blob is
ever visible.

Errors: BlobNotFound → NotFound, AuthenticationFailed/403 → AccessDenied, ServerBusy,
500 and 503 → Transient. Object reads and single puts are retried by the engine (which
counts each attempt in the manifest); listing pages and blocks are retried here with
backoff and counted in `AzureConnector.retries`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlsplit

from azure.core import exceptions as aexc
from azure.storage.blob import BlobBlock, ContainerClient, ContentSettings

from .base import Capabilities, Connector, Entry, ScanError, Written
from .errors import (
    AccessDenied,
    ConnectFailed,
    InvalidPath,
    NotFound,
    StorageError,
    Transient,
    Unsupported,
)
from .objects import (
    ChecksumMismatch,
    SourceError,
    check_object_path,
    content_type,
    folder_level,
    read_source,
)
from .walk import walk

MAX_NAME_CHARS = 1024  # a blob name is 1-1,024 characters
BLOCK = 8 << 20  # below this one Put Blob; from it, staged blocks then a commit
MAX_BLOCKS = 50_000  # Azure's limit of blocks in one blob
IN_FLIGHT = 4  # blocks staged at once (memory: IN_FLIGHT x the block size)
CHUNK = 4 << 20  # bytes per GET of a read
READ_AHEAD = 4  # GETs of a large blob in flight while it is read
PAGE = 5000  # names per listing page (Azure's maximum)
RETRIES = 4  # attempts for a listing page or a block before Transient is raised
BACKOFF = 0.2  # seconds, doubled per attempt
MTIME_KEY = "mtime"  # rclone's: RFC 3339 with nanoseconds
ENV_KEY = "AZURE_STORAGE_KEY"
ENV_SAS = "AZURE_STORAGE_SAS_TOKEN"
ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
CONTAINER_RE = re.compile(r"^(\$root|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")
OPTIONS = ("endpoint",)
_SIG = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)
_DOT_PART = re.compile(r"(^|/)\.\.?(/|$)")

TRANSIENT_CODES = frozenset(
    {
        "ServerBusy",
        "InternalError",
        "OperationTimedOut",
        "IncrementalCopyOfEarlierVersionSnapshotNotAllowed",
    }
)
DENIED_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "InsufficientAccountPermissions",
        "AccountIsDisabled",
    }
)


# The SDK logs every request and answer at INFO: noise on a terminal, never a help
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)


# -- names -----------------------------------------------------------------------------


def check_relative(path: str, *, literal: bool = False) -> str:
    """A relative blob path, or InvalidPath: no '..', '.', empty parts, leading '/' or
    NUL. `literal`: the name of a blob as listed at a source, taken as it is."""
    return check_object_path(path, literal=literal, refused="\x00", refused_why="NUL in name")


# -- metadata --------------------------------------------------------------------------


def mtime_metadata(mtime_ns: int) -> dict[str, str]:
    """The metadata holding `mtime_ns`, as rclone's azureblob writes it (RFC 3339, ns)."""
    seconds, nanos = divmod(mtime_ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {MTIME_KEY: f"{stamp}.{nanos:09d}Z"}


def parse_mtime_ns(text: str | None) -> int | None:
    """Nanoseconds from RFC 3339 (all nine fraction digits kept) or "seconds[.fraction]"."""
    if not text:
        return None
    text = text.strip()
    match = re.fullmatch(r"(-?\d+)(?:\.(\d+))?", text)
    if match:
        seconds, fraction = match.groups()
        return int(seconds) * 10**9 + int((fraction or "0")[:9].ljust(9, "0"))
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    try:
        value = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    return int(value.timestamp()) * 10**9 + int((fraction or "0")[:9].ljust(9, "0"))


def _datetime_ns(value: datetime | None) -> int:
    if value is None:
        return 0
    return int(value.timestamp()) * 10**9 + value.microsecond * 1000


def _md5_of(properties: Any) -> str | None:
    settings = getattr(properties, "content_settings", None)
    digest = getattr(settings, "content_md5", None)
    return bytes(digest).hex() if digest and len(digest) == 16 else None


# -- errors ----------------------------------------------------------------------------


def _code_of(exc: BaseException) -> tuple[str, int]:
    code = getattr(exc, "error_code", None) or ""
    code = getattr(code, "value", code)  # the SDK's StorageErrorCode enum, or a plain str
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", 0) or 0
    return str(code), int(status)


def _redacted(text: str) -> str:
    """`text` without a SAS signature (an error may quote the URL a request went to)."""
    return _SIG.sub(r"\1…", text)


def _message_of(exc: BaseException) -> str:
    """The service's first line (no request ids, no XML), never a SAS signature."""
    text = getattr(exc, "reason", None) or str(exc).split("\n", 1)[0]
    return _redacted(str(text).strip())


def _wrap(exc: BaseException, path: str) -> StorageError:
    """The typed error for what azure-storage-blob raised."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, aexc.HttpResponseError):
        code, status = _code_of(exc)
        message = _message_of(exc)
        if code == "ContainerNotFound":
            return ConnectFailed(path, "the container does not exist")
        if code == "BlobNotFound" or status == 404:
            return NotFound(path, "no such blob")
        if code in DENIED_CODES or status in (401, 403):
            return AccessDenied(path, f"permission denied ({code or status})")
        if code in TRANSIENT_CODES or status in (408, 429) or status >= 500:
            return Transient(path, f"Azure unavailable ({code or status}): {message}")
        if code in ("Md5Mismatch", "InvalidMd5"):
            return ChecksumMismatch(path, f"upload refused: {message}")
        if code == "ConditionNotMet" or status == 412:
            return Transient(path, "blob was replaced while it was read")
        return StorageError(path, f"Azure error ({code or status}): {message}")
    if isinstance(exc, aexc.ServiceRequestError | aexc.ServiceResponseError):
        return Transient(path, f"cannot reach Azure: {_message_of(exc)}")
    if isinstance(exc, aexc.IncompleteReadError | ConnectionError | TimeoutError):
        return Transient(path, f"connection to Azure failed: {_redacted(str(exc))}")
    return StorageError(path, f"{type(exc).__name__}: {_redacted(str(exc))}")


# -- streams ---------------------------------------------------------------------------


class _BlobReader(io.RawIOBase):
    """A blob's bytes by ranged GETs pinned to the version first read (If-Match), so a
    blob replaced mid-read fails instead of mixing two versions."""

    def __init__(self, chunks: Iterator[bytes], path: str) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._path = path

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        try:
            if size is None or size < 0:
                rest = self._buffer + b"".join(self._chunks)
                self._buffer = b""
                return rest
            if not self._buffer:
                self._buffer = next(self._chunks, b"")
        except Exception as exc:
            raise _wrap(exc, self._path) from exc
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                close = getattr(self._chunks, "close", None)
                if close is not None:  # a read ahead: its GETs in flight stopped
                    close()
            finally:
                super().close()


def _ahead(blob: Any, first: Iterator[bytes], size: int, etag: str) -> Iterator[bytes]:
    """A large blob's bytes in order: the first GET's chunk, then ranges of CHUNK asked
    for READ_AHEAD at a time (as rclone reads), each pinned to the first GET's version."""
    from azure.core import MatchConditions

    head = next(first, b"")  # the rest comes by range, not from `first`

    def fetch(offset: int) -> bytes:
        part = blob.download_blob(
            offset=offset,
            length=min(CHUNK, size - offset),
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
            max_concurrency=1,
        )
        return part.readall()

    yield head
    with ThreadPoolExecutor(READ_AHEAD, thread_name_prefix="azure-read") as pool:
        flight = [pool.submit(fetch, o) for o in range(len(head), size, CHUNK)[:READ_AHEAD]]
        offsets = iter(range(len(head) + READ_AHEAD * CHUNK, size, CHUNK))
        try:
            while flight:
                data = flight.pop(0).result()
                following = next(offsets, None)
                if following is not None:
                    flight.append(pool.submit(fetch, following))
                yield data
        finally:
            for future in flight:
                future.cancel()


# -- the connector ---------------------------------------------------------------------


class AzureConnector(Connector):
    """Blobs under `prefix` in one container; one instance per thread."""

    scheme = "azure"
    capabilities = Capabilities(
        hashes=frozenset({"md5"}),  # Content-MD5 where it is set (ours always)
        verify_hashes=frozenset({"md5", "crc32c"}),
        mtime_precision_ns=1,  # the mtime metadata keeps nanoseconds
        acl=False,
        directories=False,
        literal_names=True,
        case_insensitive=False,
        rename=True,  # move(): a server-side copy then a delete, never atomic
        max_name_units=MAX_NAME_CHARS,
        max_path_units=MAX_NAME_CHARS,
    )

    def __init__(
        self, client: ContainerClient, prefix: str = "", endpoint: str = "", *, sas: str = "",
        anonymous: bool = False,
    ) -> None:  # fmt: skip
        self.client = client
        self.sas = sas  # the SAS token, when that is the credential (a copy's source needs it)
        self.anonymous = anonymous
        self.container = client.container_name
        self.endpoint = endpoint or client.primary_endpoint
        prefix = check_relative(prefix.strip("/"))
        self.root = f"{prefix}/" if prefix else ""  # name prefix, ends with '/'
        self.retries = 0  # requests retried here (listing pages, blocks)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AzureConnector({self.container}/{self.root})"

    def _name(self, path: str, *, literal: bool = False) -> str:
        name = self.root + check_relative(path, literal=literal)
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidPath(path, "name is not valid Unicode") from exc
        # the service counts UTF-16 code units (it is .NET), as Capabilities' units do
        if len(name.encode("utf-16-le")) // 2 > MAX_NAME_CHARS:
            raise InvalidPath(path, f"blob name longer than {MAX_NAME_CHARS} characters")
        return name

    def _call(self, path: str, request: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One request, retried with backoff while Azure answers with a transient error."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return request(*args, **kwargs)
            except Exception as exc:
                error = _wrap(exc, path)
                if not error.transient or attempt >= RETRIES:
                    raise error from exc
            with self._lock:
                self.retries += 1
            time.sleep(BACKOFF * 2 ** (attempt - 1))

    def _entry(self, path: str, blob: Any) -> Entry:
        mtime = parse_mtime_ns((blob.metadata or {}).get(MTIME_KEY))
        if mtime is None:
            mtime = _datetime_ns(blob.last_modified)
        md5 = _md5_of(blob)
        return Entry(path, "file", int(blob.size or 0), mtime, (("md5", md5),) if md5 else ())

    # scan

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        yield from walk(self._level, check_relative(prefix.strip("/")))

    def _pages(self, prefix: str, path: str, delimiter: bool = True) -> Iterator[list]:
        """Listing pages of blobs (and, with the delimiter, folder prefixes) under
        `prefix`, one request each, by continuation marker; each page retried alone."""
        token: str | None = None

        def fetch() -> tuple[list, str | None]:
            if delimiter:
                paged = self.client.walk_blobs(
                    name_starts_with=prefix, include=["metadata"], results_per_page=PAGE
                )
            else:
                paged = self.client.list_blobs(
                    name_starts_with=prefix, include=["metadata"], results_per_page=PAGE
                )
            pager = paged.by_page(continuation_token=token)
            page = list(next(pager, []))
            return page, pager.continuation_token

        while True:
            page, token = self._call(path, fetch)
            yield page
            if not token:
                return

    def _level(self, rel: str) -> Iterator[Entry | ScanError]:
        """One folder's children in scan order, listed lazily page by page."""
        base = self.root + (f"{rel}/" if rel else "")
        skip = len(base)

        def pages() -> Iterator[list[tuple[str, Any]]]:
            for page in self._pages(base, rel):
                yield [(item.name[skip:], item) for item in page]

        yield from folder_level(rel, pages(), self._entry, lambda: self._rooted(base))

    def _rooted(self, base: str) -> Iterator[Entry | ScanError]:
        """Every blob whose name has "/" right after the root: each its own failed entry."""
        try:
            for page in self._pages(f"{base}/", "/", delimiter=False):
                for blob in page:
                    path = blob.name[len(base) :]
                    yield ScanError(path, InvalidPath(path, "blob name begins with '/'"), "file")
        except StorageError as exc:
            yield ScanError("/", exc)

    # single blobs

    def _properties(self, name: str, path: str) -> Any:
        return self._call(path, self.client.get_blob_client(name).get_blob_properties)

    def stat(self, path: str) -> Entry:
        name = self._name(path, literal=True)
        if not name or name == self.root:
            return Entry("", "dir")
        if _DOT_PART.search(path):  # a URL's path drops dot segments: none can be asked for
            raise NotFound(path, "no blob can be addressed by that name")
        try:
            return self._entry(path, self._properties(name, path))
        except NotFound:
            pass
        if self._has_children(name, path):
            return Entry(path, "dir")
        raise NotFound(path, "no such blob")

    def _has_children(self, name: str, path: str) -> bool:
        def first() -> bool:
            paged = self.client.list_blobs(name_starts_with=f"{name}/", results_per_page=1)
            return bool(list(next(paged.by_page(), [])))

        return self._call(path, first)

    def folder_names(self, path: str, limit: int) -> set[str] | None:
        """One listing (a request per 5,000 names) instead of a request per file."""
        try:
            rel = check_relative(path.strip("/"))
            base = self.root + (f"{rel}/" if rel else "")
            names: set[str] = set()
            for page in self._pages(base, path):
                names.update(item.name[len(base) :].rstrip("/") for item in page)
                if len(names) > limit:
                    return None
        except StorageError:
            return None
        return names

    def open(self, path: str) -> BinaryIO:
        name = self._name(path, literal=True)
        if name == self.root:
            raise StorageError(path, "is a folder")
        blob = self.client.get_blob_client(name)
        try:
            download = blob.download_blob(max_concurrency=1)
        except Exception as exc:
            raise _wrap(exc, path) from exc
        first = download.chunks()
        size = int(download.properties.size or 0)
        if size <= CHUNK:  # the first GET carried it all
            return _BlobReader(first, path)  # type: ignore[return-value]
        return _BlobReader(_ahead(blob, first, size, download.properties.etag), path)  # type: ignore[return-value]

    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        name = self._name(path)
        if name == self.root:
            raise InvalidPath(path, "cannot write the root")
        kind = content_type(name)
        metadata = mtime_metadata(entry.mtime_ns) if entry.mtime_ns else {}
        try:
            head = read_source(stream, BLOCK)
            if len(head) < BLOCK:
                return self._put(path, name, head, entry, kind, metadata)
            return self._blocks(path, name, stream, head, entry, kind, metadata)
        except SourceError as exc:
            raise exc.error from None  # the source's own error, not the destination's

    def _refuse_unexpected(self, path: str, entry: Entry, md5: str) -> None:
        expected = entry.hash("md5")
        if expected and expected.lower() != md5:
            raise ChecksumMismatch(path, "md5 of the bytes read is not the source's")

    def _put(
        self, path: str, name: str, data: bytes, entry: Entry, kind: str, metadata: dict
    ) -> Written:
        """One Put Blob, atomic; the service refuses it if the Content-MD5 is wrong."""
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        md5 = digest.hex()
        self._refuse_unexpected(path, entry, md5)
        settings = ContentSettings(content_type=kind, content_md5=bytearray(digest))
        try:
            self.client.get_blob_client(name).upload_blob(
                data, overwrite=True, metadata=metadata, content_settings=settings,
                validate_content=True,
            )  # fmt: skip
        except Exception as exc:
            raise _wrap(exc, path) from exc
        return Written(size=len(data), hashes=(("md5", md5),))

    def _blocks(
        self,
        path: str,
        name: str,
        stream: BinaryIO,
        head: bytes,
        entry: Entry,
        kind: str,
        metadata: dict,
    ) -> Written:
        """Blocks of BLOCK bytes or more, IN_FLIGHT staged at once, each checked by the
        service (transactional md5); the block list is committed only when every byte
        was read and matches the source's md5 where it is known. Uncommitted blocks are
        never visible and the service drops them after a week."""
        block_size = max(BLOCK, -(-entry.size // (MAX_BLOCKS - 100) // (1 << 20)) << 20)
        blob = self.client.get_blob_client(name)
        prefix = uuid.uuid4().hex[:16]  # block ids of this upload only
        whole = hashlib.md5(usedforsecurity=False)
        blocks: list[BlobBlock] = []
        flight: list[Future] = []
        size = 0
        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="azure-block") as pool:
            try:
                data = head + read_source(stream, block_size - len(head))
                while data:
                    if len(blocks) >= MAX_BLOCKS:
                        raise StorageError(path, f"more than {MAX_BLOCKS} blocks")
                    whole.update(data)
                    size += len(data)
                    block_id = base64.b64encode(f"{prefix}{len(blocks):08d}".encode()).decode()
                    blocks.append(BlobBlock(block_id=block_id))
                    flight.append(pool.submit(self._call, path, blob.stage_block, block_id,
                                              data, validate_content=True))  # fmt: skip
                    while len(flight) >= IN_FLIGHT:
                        flight.pop(0).result()
                    data = read_source(stream, block_size)
                for future in flight:
                    future.result()
            except BaseException:
                for future in flight:
                    future.cancel()
                raise
        md5 = whole.hexdigest()
        self._refuse_unexpected(path, entry, md5)
        settings = ContentSettings(content_type=kind, content_md5=bytearray(bytes.fromhex(md5)))
        self._call(path, blob.commit_block_list, blocks, content_settings=settings,
                   metadata=metadata)  # fmt: skip
        return Written(size=size, hashes=(("md5", md5),))

    def move(self, src_path: str, dst_path: str) -> None:
        """Azure has no rename: each blob is copied on the server to its new name
        (metadata and Content-MD5 kept), then deleted; a "folder" is every blob under its
        prefix, moved one by one."""
        src = self._name(src_path, literal=True)
        dst = self._name(dst_path)
        if self.root in (src, dst):
            raise InvalidPath(src_path if src == self.root else dst_path, "cannot move the root")
        try:
            self._properties(src, src_path)
        except NotFound:
            pass
        else:
            self._move_blob(src, dst, src_path)
            return
        moved = 0
        for page in self._pages(f"{src}/", src_path, delimiter=False):
            for blob in page:
                self._move_blob(blob.name, dst + blob.name[len(src) :], src_path)
                moved += 1
        if not moved:
            raise NotFound(src_path, "no such blob")

    def _move_blob(self, src: str, dst: str, path: str) -> None:
        source = self.client.get_blob_client(src)
        target = self.client.get_blob_client(dst)
        url = source.url
        if self.sas and "sig=" not in url:  # the copy's source is authorised by the SAS
            url = f"{url}{'&' if '?' in url else '?'}{self.sas}"
        copy = self._call(path, target.start_copy_from_url, url)
        status = copy.get("copy_status")
        deadline = time.monotonic() + 600
        while status == "pending":  # across accounts or very large: the service copies
            if time.monotonic() > deadline:
                raise Transient(path, "the server-side copy did not finish in 10 minutes")
            time.sleep(0.2)
            status = self._call(path, target.get_blob_properties).copy.status
        if status != "success":
            raise StorageError(path, f"the server-side copy ended {status}")
        self._call(path, source.delete_blob)

    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        raise Unsupported(path, "a container has no folders: they are implied by blob names")

    def delete(self, path: str) -> None:
        name = self._name(path)
        if name == self.root:
            raise InvalidPath(path, "cannot delete the root")
        try:
            self._call(path, self.client.get_blob_client(name).delete_blob)
            return
        except NotFound:
            pass
        if self._has_children(name, path):
            raise StorageError(path, "folder is not empty")
        raise NotFound(path, "no such blob")

    def check(self) -> None:
        where = f"azure://{self.client.account_name}/{self.container}/{self.root}"
        try:
            pager = self.client.list_blobs(name_starts_with=self.root, results_per_page=1)
            next(pager.by_page(), None)
        except aexc.HttpResponseError as exc:
            code, status = _code_of(exc)
            if code == "ContainerNotFound":
                message = f"container {self.container} does not exist at {self.endpoint}"
            elif self.anonymous and status in (401, 403, 404):
                message = (
                    f"no Azure credentials: give the endpoint a secret (account key or SAS"
                    f" token), or set {ENV_KEY}"
                )
            elif code == "AuthenticationFailed" or (
                # a key may do anything: refused, it is the wrong one (Azurite says so)
                code == "AuthorizationFailure" and not self.sas
            ):
                message = f"wrong account key or SAS token: {self.endpoint} refused the signature"
            elif code in DENIED_CODES or status == 403:
                message = f"permission denied listing the container ({code or status})"
            else:
                message = str(_wrap(exc, "").message)
            raise ConnectFailed(where, message) from exc
        except aexc.ServiceRequestError as exc:
            raise ConnectFailed(where, f"cannot reach {self.endpoint}") from exc
        except Exception as exc:
            raise ConnectFailed(where, _wrap(exc, "").message) from exc

    def close(self) -> None:
        self.client.close()


# -- opening ---------------------------------------------------------------------------


def credential_of(account: str, secret: str | None) -> Any:
    """azure-storage-blob's credential for the endpoint's secret (an account key or a SAS
    token), else the environment's, else None (anonymous)."""
    text = (secret or "").strip()
    if not text:
        text = os.environ.get(ENV_SAS, "").strip() or os.environ.get(ENV_KEY, "").strip()
    if not text:
        return None
    if "sig=" in text:
        return text.lstrip("?")
    try:
        if len(base64.b64decode(text, validate=True)) < 16:
            raise ValueError
    except ValueError as exc:
        raise ConnectFailed(
            "", "the Azure secret must be the account key (base64) or a SAS token (…&sig=…)"
        ) from exc
    return {"account_name": account, "account_key": text}


def parse_url(url: str) -> tuple[str, str, str, dict[str, str]]:
    """(account, container, prefix, options) of azure://account/container/prefix?…; the
    prefix is taken literally (no %-decoding)."""
    if not url.startswith("azure://"):
        raise ValueError(f"Azure URL must be azure://account/container/prefix, got {url!r}")
    rest, _, query = url[len("azure://") :].partition("?")
    account, _, rest = rest.partition("/")
    container, _, prefix = rest.partition("/")
    if "@" in account or ":" in account:
        raise ValueError("credentials go in the endpoint's secret, never in the URL")
    if not ACCOUNT_RE.match(account):
        raise ValueError(f"not a valid storage account name in {url!r}")
    if not CONTAINER_RE.match(container):
        raise ValueError(f"not a valid container name in {url!r}")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown Azure option {unknown[0]!r}: expected {', '.join(OPTIONS)}")
    endpoint = options.get("endpoint", "")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"the Azure endpoint must be http(s)://host[:port][/path], got {endpoint!r}"
            )
        if parts.username or parts.password or parts.query:
            raise ValueError("credentials go in the endpoint's secret, never in the URL")
    return account, container, prefix, options


def make_client(endpoint: str, container: str, credential: Any) -> ContainerClient:
    """A ContainerClient with the SDK's own retries off (we retry, and count) and reads
    in chunks of 4 MiB."""
    return ContainerClient(
        endpoint,
        container,
        credential=credential,
        retry_total=0,
        connection_timeout=5,
        read_timeout=120,
        max_single_get_size=CHUNK,
        max_chunk_get_size=CHUNK,
        max_single_put_size=BLOCK,
    )


def from_url(url: str, secret: str | None = None) -> AzureConnector:
    """azure://account/container/prefix[?endpoint=…]."""
    account, container, prefix, options = parse_url(url)
    endpoint = options.get("endpoint") or f"https://{account}.blob.core.windows.net"
    credential = credential_of(account, secret)
    client = make_client(endpoint.rstrip("/"), container, credential)
    sas = credential if isinstance(credential, str) else ""
    try:
        return AzureConnector(client, prefix, endpoint, sas=sas, anonymous=credential is None)
    except InvalidPath as exc:
        raise ValueError(f"invalid prefix in {url!r}: {exc.message}") from exc
