"""A bucket (and optional prefix) in Google Cloud Storage: gs://bucket/prefix.

Objects only: folders are implied by '/' in names, so `mkdir` is a no-op and `scan`
reports the implied folders. Writes are single objects, which GCS makes visible
atomically; every upload is checked against md5 (and crc32c) of the bytes actually read.
"""

from __future__ import annotations

import base64
import calendar
import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

import google_crc32c
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption

from .base import Change, Connector, Entry, ScanError, Watch, WatchError, Written
from .errors import (
    AccessDenied,
    ConnectFailed,
    InvalidPath,
    NotFound,
    StorageError,
    Transient,
    Unsupported,
)
from .gcs_limits import MAX_NAME_BYTES, NAME_LIMITS, RESERVED_PREFIX
from .objects import (
    ChecksumMismatch,
    SourceError,
    check_name_bytes,
    check_object_path,
    content_type,
    folder_level,
    in_path_order,  # noqa: F401 - tests/migrator/storage/test_gcs.py reads it from here
    read_source,
)
from .walk import walk

SMALL_FILE_MAX = 8 << 20  # below this: one request, bytes in memory, md5 checked by the server
CHUNK = 8 << 20  # resumable upload chunk and ranged download size (a multiple of 256 KiB)
TIMEOUT = (5, 60)  # (connect, read) seconds; the engine retries transient errors itself
MTIME_SECONDS_KEY = "goog-reserved-file-mtime"  # gsutil: integer seconds
MTIME_KEY = "mtime"  # rclone: RFC 3339 with nanoseconds
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


# -- names -----------------------------------------------------------------------------


def check_relative(path: str, *, literal: bool = False) -> str:
    """A relative object path, or InvalidPath: no '..', '.', empty parts, leading '/',
    or characters GCS refuses (CR, LF, NUL). `literal`: the name of an object as listed
    at a source, where such parts are just characters of the name (nothing is written
    under it; the planner gives it a safe name at the destination)."""
    return check_object_path(
        path, literal=literal, refused="\r\n\x00", refused_why="CR, LF or NUL in name"
    )


def _b64_to_hex(value: str | None) -> str | None:
    return base64.b64decode(value).hex() if value else None


def _hex_to_b64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode("ascii")


def _hashes_of(blob: storage.Blob) -> tuple[tuple[str, str], ...]:
    """The hashes GCS reports, as hex (composite objects have no md5)."""
    out = []
    for algo, value in (("md5", blob.md5_hash), ("crc32c", blob.crc32c)):
        if hex_value := _b64_to_hex(value):
            out.append((algo, hex_value))
    return tuple(out)


# -- mtime in custom metadata ----------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)$"
)


def mtime_metadata(mtime_ns: int) -> dict[str, str]:
    """The custom metadata holding `mtime_ns`, under both gsutil's and rclone's keys."""
    seconds, nanos = divmod(mtime_ns, 10**9)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return {MTIME_SECONDS_KEY: str(seconds), MTIME_KEY: f"{stamp}.{nanos:09d}Z"}


def parse_rfc3339_ns(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 time, keeping all nine digits."""
    match = _RFC3339.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        seconds = calendar.timegm(
            (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
        )
    except (ValueError, OverflowError):
        return None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 10**9 + int((fraction or "0")[:9].ljust(9, "0"))


def _datetime_ns(value: datetime) -> int:
    return calendar.timegm(value.utctimetuple()) * 10**9 + value.microsecond * 1000


def mtime_of(blob: storage.Blob) -> int:
    """Our (or rclone's) ns mtime; else gsutil's seconds; else when the object was written.
    A `mtime` that disagrees with gsutil's seconds was left stale by another tool."""
    metadata = blob.metadata or {}
    precise = parse_rfc3339_ns(metadata.get(MTIME_KEY, ""))
    try:
        seconds = int(float(metadata[MTIME_SECONDS_KEY]))
    except (KeyError, ValueError, OverflowError):
        seconds = None
    if precise is not None and (seconds is None or precise // 10**9 == seconds):
        return precise
    if seconds is not None:
        return seconds * 10**9
    return _datetime_ns(blob.updated) if blob.updated else 0


# -- errors ----------------------------------------------------------------------------

_CHECKSUM_REFUSED = re.compile(r"(md5|crc32c)[^\n]*(doesn't|does not|didn't) match", re.I)


def _wrap(exc: BaseException, path: str) -> StorageError:
    """The typed error for what google-cloud-storage or requests raised."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, DataCorruption):
        return ChecksumMismatch(path, "the server's checksum differs from the bytes sent")
    if isinstance(exc, gexc.GoogleAPICallError):
        message = getattr(exc, "message", "") or str(exc)
        if isinstance(exc, gexc.NotFound):
            return NotFound(path, "no such object")
        if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
            return AccessDenied(path, f"permission denied: {message}")
        if exc.code is not None and (exc.code in (408, 429) or exc.code >= 500):
            return Transient(path, f"GCS unavailable ({exc.code}): {message}")
        if isinstance(exc, gexc.BadRequest) and _CHECKSUM_REFUSED.search(message):
            return ChecksumMismatch(path, f"upload refused: {message}")
        return StorageError(path, f"GCS error ({exc.code}): {message}")
    if isinstance(exc, auth_exc.RefreshError):
        return AccessDenied(path, f"credentials refused: {exc}")
    if isinstance(exc, requests.RequestException | auth_exc.TransportError | ConnectionError):
        return Transient(path, f"connection to GCS failed: {exc}")
    if isinstance(exc, TimeoutError):
        return Transient(path, "GCS did not answer in time")
    return StorageError(path, f"{type(exc).__name__}: {exc}")


# -- streams ---------------------------------------------------------------------------


def _hashes_of_bytes(data: bytes) -> dict[str, str]:
    return {
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "crc32c": google_crc32c.Checksum(data).digest().hex(),
    }


class _HashingReader(io.RawIOBase):
    """What the resumable upload reads: `head`, then the rest of the caller's stream in
    full-sized pieces (a short read means the end to the uploader), hashing exactly the
    bytes handed on."""

    def __init__(self, stream: BinaryIO, head: bytes) -> None:
        self._stream = stream
        self._head = head
        self._pos = 0
        self.md5 = hashlib.md5(head, usedforsecurity=False)
        self.crc32c = google_crc32c.Checksum(head)

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 62
        data, self._head = self._head[:size], self._head[size:]
        if len(data) < size:
            more = read_source(self._stream, size - len(data))
            self.md5.update(more)
            self.crc32c.update(more)
            data += more
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    @property
    def hashes(self) -> dict[str, str]:
        return {"md5": self.md5.hexdigest(), "crc32c": self.crc32c.digest().hex()}


class _ObjectReader(io.RawIOBase):
    """An object's bytes by ranged downloads of CHUNK. The first range is fetched at once
    (so a missing object raises NotFound from `open`, and a small file costs one request);
    later ranges ask for the same generation, so a concurrent overwrite is an error, never
    a file spliced from two versions."""

    def __init__(self, blob: storage.Blob, path: str) -> None:
        self._blob = blob
        self._path = path
        self._offset = 0
        self._buffer = memoryview(b"")
        self._eof = False
        self._fetch()

    def _fetch(self) -> None:
        try:
            data = self._blob.download_as_bytes(
                start=self._offset,
                end=self._offset + CHUNK - 1,
                raw_download=True,  # the stored bytes, as md5 and size describe them
                checksum=None,
                timeout=TIMEOUT,
                retry=None,
            )
        except gexc.RequestRangeNotSatisfiable:
            data = b""  # GCS answers 416 for a range past the end (an empty object)
        except gexc.NotFound as exc:
            if self._offset:
                raise Transient(self._path, "object was replaced or deleted while read") from exc
            raise NotFound(self._path, "no such object") from exc
        except Exception as exc:
            raise _wrap(exc, self._path) from exc
        self._offset += len(data)
        self._eof = len(data) < CHUNK
        self._buffer = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if not self._buffer:
            if self._eof:
                return 0
            self._fetch()
        count = min(len(buffer), len(self._buffer))
        buffer[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


# -- the connector ---------------------------------------------------------------------


class GCSConnector(Connector):
    """Objects under `prefix` in `bucket_name`; one instance per thread."""

    scheme = "gs"
    capabilities = dataclasses.replace(
        NAME_LIMITS,  # the names GCS refuses, read by the gcs sanitization profile too
        hashes=frozenset({"md5", "crc32c"}),
        verify_hashes=frozenset({"md5", "crc32c"}),  # it checks both on upload
        mtime_precision_ns=1,  # our custom metadata keeps nanoseconds
        acl=False,
        directories=False,
        literal_names=True,
        rename=True,  # move(): a copy then a delete of each object, never atomic
        watch=True,  # watch(): a listing every few seconds, diffed (GCS has no notify here)
    )

    def __init__(self, client: storage.Client, bucket_name: str, prefix: str = "") -> None:
        self.client = client
        self.bucket_name = bucket_name
        self.bucket = client.bucket(bucket_name)
        prefix = check_relative(prefix.strip("/"))
        self.root = f"{prefix}/" if prefix else ""  # object name prefix, ends with '/'

    def __repr__(self) -> str:
        return f"GCSConnector(gs://{self.bucket_name}/{self.root})"

    def _name(self, path: str, *, literal: bool = False) -> str:
        name = self.root + check_relative(path, literal=literal)
        if name.startswith(RESERVED_PREFIX):
            raise InvalidPath(path, f"GCS reserves names under {RESERVED_PREFIX}")
        return check_name_bytes(name, path, MAX_NAME_BYTES, "object name")

    def _entry(self, path: str, blob: storage.Blob) -> Entry:
        return Entry(path, "file", blob.size or 0, mtime_of(blob), _hashes_of(blob))

    # scan

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        yield from walk(self._level, check_relative(prefix.strip("/")))

    def _level(self, rel: str) -> Iterator[Entry | ScanError]:
        """One folder's children in scan order, listed lazily page by page."""
        base = self.root + (f"{rel}/" if rel else "")
        skip = len(base)

        def pages() -> Iterator[list[tuple[str, storage.Blob | None]]]:
            try:
                blobs = self.client.list_blobs(
                    self.bucket, prefix=base, delimiter="/", timeout=TIMEOUT, retry=None
                )
                for page in blobs.pages:
                    raws: list[tuple[str, storage.Blob | None]] = [
                        (blob.name[skip:], blob) for blob in page
                    ]
                    raws.extend((sub[skip:], None) for sub in page.prefixes)
                    yield raws
            except Exception as exc:
                raise _wrap(exc, rel) from exc

        yield from folder_level(rel, pages(), self._entry, lambda: self._rooted(base))

    def _rooted(self, base: str) -> Iterator[Entry | ScanError]:
        """Every object whose name has "/" right after the root: each its own failed entry
        (a leading "/" makes an absolute path), listed as they come."""
        try:
            for blob in self.client.list_blobs(
                self.bucket, prefix=f"{base}/", timeout=TIMEOUT, retry=None
            ):
                path = blob.name[len(base) :]
                yield ScanError(path, InvalidPath(path, "object name begins with '/'"), "file")
        except Exception as exc:
            yield ScanError("/", _wrap(exc, "/"))

    def listing(self, prefix: str = "") -> Iterator[Entry]:
        """Every object under `prefix`, flat: one `list_blobs` without delimiter, pages of
        1,000 (one request per 1,000 objects). Folder placeholders ("a/") are skipped."""
        rel = check_relative(prefix.strip("/"))
        base = self.root + (f"{rel}/" if rel else "")
        skip = len(self.root)
        try:
            blobs = self.client.list_blobs(
                self.bucket, prefix=base, page_size=1000, timeout=TIMEOUT, retry=None
            )
            for page in blobs.pages:
                for blob in page:
                    if not blob.name.endswith("/"):
                        yield self._entry(blob.name[skip:], blob)
        except StorageError:
            raise
        except Exception as exc:
            raise _wrap(exc, rel) from exc

    # single objects

    def stat(self, path: str) -> Entry:
        name = self._name(path, literal=True)  # reads only: a listed name as it is
        if not name or name == self.root:
            return Entry("", "dir")
        try:
            blob = self.bucket.get_blob(name, timeout=TIMEOUT, retry=None)
            if blob is not None:
                return self._entry(path, blob)
            if self._has_children(name):
                return Entry(path, "dir")
        except Exception as exc:
            raise _wrap(exc, path) from exc
        raise NotFound(path, "no such object")

    def folder_names(self, path: str, limit: int) -> set[str] | None:
        """One listing (a request per 1,000 names) instead of two requests per file
        (get the object, else look for children) to learn that it is not there yet."""
        try:
            rel = check_relative(path.strip("/"))
            base = self.root + (f"{rel}/" if rel else "")
            listed = self.client.list_blobs(
                self.bucket, prefix=base, delimiter="/", max_results=limit + 1,
                timeout=TIMEOUT, retry=None,
            )  # fmt: skip
            names: set[str] = set()
            for page in listed.pages:
                names.update(blob.name[len(base) :] for blob in page)
                names.update(sub[len(base) :].rstrip("/") for sub in page.prefixes)
                if len(names) > limit:
                    return None
        except Exception:  # it cannot say: each file is asked for on its own
            return None
        return names

    def _has_children(self, name: str) -> bool:
        listed = self.client.list_blobs(
            self.bucket, prefix=f"{name}/", max_results=1, timeout=TIMEOUT, retry=None
        )
        return next(iter(listed), None) is not None

    def open(self, path: str) -> BinaryIO:
        name = self._name(path, literal=True)  # reads only: a listed name as it is
        if name == self.root:
            raise StorageError(path, "is a folder")
        return _ObjectReader(self.bucket.blob(name), path)  # type: ignore[return-value]

    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        name = self._name(path)
        if name == self.root:
            raise InvalidPath(path, "cannot write the root")
        blob = self.bucket.blob(name)
        blob.content_type = content_type(name)
        if entry.mtime_ns:
            blob.metadata = mtime_metadata(entry.mtime_ns)
        try:
            head = read_source(stream, SMALL_FILE_MAX)
            if len(head) < SMALL_FILE_MAX:
                return self._write_small(path, blob, head, entry)
            return self._write_resumable(path, blob, _HashingReader(stream, head), entry)
        except SourceError as exc:
            raise exc.error from None  # the source's own error, not the destination's

    def _write_small(self, path: str, blob: storage.Blob, data: bytes, entry: Entry) -> Written:
        """One multipart request; the server refuses it if the md5 we declare is wrong."""
        actual = _hashes_of_bytes(data)
        self._refuse_unexpected(path, entry, actual)
        blob.md5_hash = _hex_to_b64(actual["md5"])
        blob.crc32c = _hex_to_b64(actual["crc32c"])
        try:
            blob.upload_from_file(
                io.BytesIO(data), size=len(data), checksum=None, timeout=TIMEOUT, retry=None
            )
        except Exception as exc:
            raise _wrap(exc, path) from exc
        return self._written(path, blob, len(data), actual)

    def _write_resumable(
        self, path: str, blob: storage.Blob, reader: _HashingReader, entry: Entry
    ) -> Written:
        """Chunked upload of a stream of unknown length, checked after the last chunk: the
        source's expected hashes go with the upload (GCS refuses a mismatch before the
        object appears); our own hash of the bytes read is compared afterwards."""
        blob.chunk_size = CHUNK
        if expected := entry.hash("md5"):
            blob.md5_hash = _hex_to_b64(expected)
        if expected := entry.hash("crc32c"):
            blob.crc32c = _hex_to_b64(expected)
        try:
            blob.upload_from_file(reader, checksum=None, timeout=TIMEOUT, retry=None)
        except SourceError:
            raise
        except Exception as exc:
            raise _wrap(exc, path) from exc
        actual = reader.hashes
        try:
            self._refuse_unexpected(path, entry, actual)
            return self._written(path, blob, reader.tell(), actual)
        except ChecksumMismatch:
            self._delete_generation(blob)
            raise

    def _refuse_unexpected(self, path: str, entry: Entry, actual: dict[str, str]) -> None:
        for algo, value in actual.items():
            expected = entry.hash(algo)
            if expected and expected.lower() != value:
                raise ChecksumMismatch(path, f"{algo} of the bytes read is not the source's")

    def _written(self, path: str, blob: storage.Blob, size: int, actual: dict) -> Written:
        """What the server reports, after checking it stored exactly the bytes read."""
        hashes = _hashes_of(blob)
        reported = dict(hashes)
        if blob.size is not None and blob.size != size:
            raise ChecksumMismatch(path, f"stored {blob.size} bytes, sent {size}")
        for algo, value in reported.items():
            if actual[algo] != value:
                raise ChecksumMismatch(path, f"stored {algo} differs from the bytes sent")
        return Written(size=size, hashes=hashes)

    def _delete_generation(self, blob: storage.Blob) -> None:
        try:
            blob.delete(if_generation_match=blob.generation, timeout=TIMEOUT, retry=None)
        except Exception:
            pass  # best effort: the caller gets ChecksumMismatch either way

    def upload_session(self, path: str, entry: Entry) -> str:
        """A resumable upload session for one object (its name, type and mtime metadata
        set now): whoever holds the URI can upload that object's bytes, and nothing else
        — what the on-premises agent is given instead of a key."""
        name = self._name(path)
        if name == self.root:
            raise InvalidPath(path, "cannot write the root")
        blob = self.bucket.blob(name)
        if entry.mtime_ns:
            blob.metadata = mtime_metadata(entry.mtime_ns)
        try:
            return blob.create_resumable_upload_session(
                content_type=content_type(name), size=entry.size, timeout=TIMEOUT
            )
        except Exception as exc:
            raise _wrap(exc, path) from exc

    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        # capabilities.directories is False: callers check it and never get here
        raise Unsupported(path, "a bucket has no folders: they are implied by object names")

    def delete(self, path: str) -> None:
        name = self._name(path)
        if name == self.root:
            raise InvalidPath(path, "cannot delete the root")
        try:
            try:
                self.bucket.delete_blob(name, timeout=TIMEOUT, retry=None)
                return
            except gexc.NotFound:
                pass
            try:  # an empty "folder" may exist as a placeholder object
                self.bucket.delete_blob(f"{name}/", timeout=TIMEOUT, retry=None)
                return
            except gexc.NotFound:
                pass
            if self._has_children(name):
                raise StorageError(path, "folder is not empty")
        except Exception as exc:
            raise _wrap(exc, path) from exc
        raise NotFound(path, "no such object")

    def move(self, src_path: str, dst_path: str) -> None:
        """GCS has no rename: each object is copied to its new name (metadata kept), then
        deleted; a "folder" is every object under its prefix, moved one by one."""
        src = self._name(src_path, literal=True)  # a listed name, as it is
        dst = self._name(dst_path)
        if self.root in (src, dst):
            raise InvalidPath(src_path if src == self.root else dst_path, "cannot move the root")
        try:
            blob = self.bucket.get_blob(src, timeout=TIMEOUT, retry=None)
            if blob is not None:
                self._move_object(blob, dst)
                return
            moved = 0
            for child in self.client.list_blobs(
                self.bucket, prefix=f"{src}/", timeout=TIMEOUT, retry=None
            ):
                self._move_object(child, dst + child.name[len(src) :])
                moved += 1
        except Exception as exc:
            raise _wrap(exc, src_path) from exc
        if not moved:
            raise NotFound(src_path, "no such object")

    def _move_object(self, blob: storage.Blob, name: str) -> None:
        self.bucket.copy_blob(blob, self.bucket, name, timeout=TIMEOUT, retry=None)
        blob.delete(timeout=TIMEOUT, retry=None)

    # object ACLs (permissions migrated onto objects; see migrator.acl.apply)

    def object_acl(self, path: str) -> list[dict[str, str]]:
        """The object's ACL entries: [{"entity": "user-a@example.com", "role": "READER"}]."""
        blob = self.bucket.blob(self._name(path))
        try:
            blob.acl.reload(timeout=TIMEOUT, retry=None)
        except Exception as exc:
            raise _wrap(exc, path) from exc
        return _acl_entries(blob.acl)

    def set_object_acl(self, path: str, entries: list[dict[str, str]]) -> list[dict[str, str]]:
        """Replace the object's ACL; returns the entries the server stored."""
        blob = self.bucket.blob(self._name(path))
        try:
            blob.acl.save(acl=entries, timeout=TIMEOUT, retry=None)
        except Exception as exc:
            raise _wrap(exc, path) from exc
        return _acl_entries(blob.acl)

    def uniform_access(self) -> bool:
        """True when the bucket has uniform bucket-level access: no object ACLs at all."""
        try:
            bucket = self.client.get_bucket(self.bucket_name, timeout=TIMEOUT, retry=None)
        except Exception as exc:
            raise _wrap(exc, "") from exc
        return bool(bucket.iam_configuration.uniform_bucket_level_access_enabled)

    def check(self) -> None:
        where = f"gs://{self.bucket_name}/{self.root}"
        try:
            listed = self.client.list_blobs(
                self.bucket, prefix=self.root, max_results=1, timeout=TIMEOUT, retry=None
            )
            next(iter(listed), None)
        except gexc.NotFound as exc:
            raise ConnectFailed(where, f"bucket {self.bucket_name} does not exist") from exc
        except (gexc.Forbidden, gexc.Unauthorized, auth_exc.RefreshError) as exc:
            raise ConnectFailed(where, f"permission denied listing the bucket: {exc}") from exc
        except (requests.RequestException, auth_exc.TransportError, OSError) as exc:
            host = self.client._connection.API_BASE_URL
            raise ConnectFailed(where, f"cannot reach {host}: {exc}") from exc
        except Exception as exc:
            raise ConnectFailed(where, str(_wrap(exc, ""))) from exc

    # changes (continuous mode)

    def watch(self, prefix: str = "", interval: float | None = None) -> Watch:
        """Changes under `prefix` by listing it every `interval` seconds (WATCH_INTERVAL)
        and comparing each object's generation with the last listing: a new name is
        created, a new generation modified, a name no longer listed deleted. Moves show
        as a deletion and a creation. Past WATCH_TRACK_MAX objects the names are no longer
        kept (bounded memory): changes are then those updated since the last listing, and
        deletions are left to reconciliation (said once as a WatchError). A failed
        listing is a WatchError; the next one carries on."""
        from .watching import QueueWatch

        rel = check_relative(prefix.strip("/"))
        base = self.root + (f"{rel}/" if rel else "")
        poller = _ListingWatch(self, base, float(interval or WATCH_INTERVAL))
        watch = QueueWatch(stop=poller.stop.set)
        watch.poller = poller  # type: ignore[attr-defined]  # (tests reach its client)
        poller.start(watch)
        return watch

    def close(self) -> None:
        self.client.close()


WATCH_INTERVAL = 5.0  # seconds between listings of a watched GCS source
WATCH_TRACK_MAX = 1_000_000  # object names kept to tell deletions (≈ 100 MB at most)


class _ListingWatch:
    """The polling thread behind GCSConnector.watch (a client of its own)."""

    def __init__(self, conn: GCSConnector, base: str, interval: float) -> None:
        import threading

        self.conn, self.base, self.interval = conn, base, interval
        self.skip = len(conn.root)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="gcs-watch", daemon=True)
        self.known: dict[str, int] | None = {}  # path -> generation; None past the cap
        self.watermark: datetime | None = None  # the newest `updated` seen

    def start(self, watch) -> None:
        self.watch = watch
        self.client = storage.Client(
            project=self.conn.client.project, credentials=self.conn.client._credentials
        )
        try:
            self._list(first=True)  # the state the changes are told against
        except Exception as exc:
            self.client.close()
            raise _wrap(exc, self.base[self.skip :]) from exc
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.wait(self.interval):
                try:
                    self._list(first=False)
                except Exception as exc:
                    error = _wrap(exc, self.base[self.skip :])
                    self.watch.put(WatchError("error", f"listing the bucket failed: {error}"))
        finally:
            self.client.close()

    def _list(self, first: bool) -> None:
        blobs = self.client.list_blobs(
            self.conn.bucket_name, prefix=self.base, page_size=1000, timeout=TIMEOUT, retry=None
        )
        known, watermark = self.known, self.watermark
        listed: dict[str, int] | None = {} if known is not None else None
        newest = watermark
        changes: list[Change] = []
        for blob in blobs:
            if self.stop.is_set():
                return
            if blob.name.endswith("/"):
                continue  # a folder placeholder
            path = blob.name[self.skip :]
            updated = blob.updated
            if updated is not None and (newest is None or updated > newest):
                newest = updated
            if listed is not None:
                listed[path] = blob.generation or 0
                if len(listed) > WATCH_TRACK_MAX:
                    listed = None
                    self.watch.put(WatchError(
                        "overflow", f"more than {WATCH_TRACK_MAX} objects: deletions are no "
                        "longer reported, reconciliation finds them"))  # fmt: skip
            if first:
                continue
            if known is not None:
                was = known.get(path)
                if was is None:
                    changes.append(Change(path, "created"))
                elif was != (blob.generation or 0):
                    changes.append(Change(path, "modified"))
            elif watermark is not None and updated is not None and updated > watermark:
                changes.append(Change(path, "modified"))
        if not first and known is not None and listed is not None:
            changes += [Change(path, "deleted") for path in known if path not in listed]
        for change in changes:
            self.watch.put(change)
        self.known, self.watermark = listed, newest


def _acl_entries(acl) -> list[dict[str, str]]:
    return [
        {"entity": str(entity), "role": role}
        for entity in acl.get_entities()
        for role in sorted(entity.get_roles())
    ]


def make_client(secret: str | None = None) -> storage.Client:
    """A storage client: anonymous against an emulator, else the service account in
    `secret` (its JSON key), else Application Default Credentials."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        return storage.Client(project="test", credentials=AnonymousCredentials())
    try:
        if secret:
            from google.oauth2 import service_account

            info = json.loads(secret)
            credentials = service_account.Credentials.from_service_account_info(info)
            return storage.Client(project=info.get("project_id"), credentials=credentials)
        return storage.Client()
    except (ValueError, KeyError) as exc:
        raise ConnectFailed("", f"the service account key is not valid: {exc}") from exc
    except auth_exc.DefaultCredentialsError as exc:
        raise ConnectFailed("", f"no Google credentials: {exc}") from exc


def from_url(url: str, secret: str | None = None) -> GCSConnector:
    """gs://bucket/prefix; the prefix is taken literally (no %-decoding, like gsutil)."""
    if not url.startswith("gs://"):
        raise ValueError(f"GCS URL must be gs://bucket/prefix, got {url!r}")
    bucket_name, _, prefix = url[len("gs://") :].partition("/")
    if not BUCKET_RE.match(bucket_name):
        raise ValueError(f"not a valid bucket name in {url!r}")
    try:
        return GCSConnector(make_client(secret), bucket_name, prefix)
    except InvalidPath as exc:
        raise ValueError(f"invalid prefix in {url!r}: {exc.message}") from exc
