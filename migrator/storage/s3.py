"""A bucket (and optional prefix) in Amazon S3 or an S3-compatible store (MinIO, Wasabi,
Ceph): s3://bucket/prefix, with options after '?':

  endpoint=https://host:port   another S3 service than AWS (default: AWS, or the
                               AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL environment)
  region=eu-west-1             the signing region (default us-east-1 with an endpoint)
  path_style=0|1               bucket in the path, not the host name (default: 1 with an
                               endpoint, as MinIO and Ceph expect; 0 on AWS)
  mtime=metadata|upload        a file's mtime: the one kept in x-amz-meta-mtime (default;
                               a HEAD per object at the scan), or when the object was
                               uploaded (the listing's LastModified: no HEADs, for a
                               bucket no tool kept mtimes in; as rclone's
                               --use-server-modtime)

The credentials are the endpoint's secret, "ACCESS_KEY_ID:SECRET_ACCESS_KEY" (or a JSON
object with access_key_id, secret_access_key and optionally session_token); without one,
boto3's own chain (AWS_ACCESS_KEY_ID…, ~/.aws, an instance role).

Objects only: folders are implied by '/' in keys, so `mkdir` is Unsupported and `scan`
reports the implied folders. Listing goes a page (1,000 keys) at a time with
continuation tokens, one folder level at a time: never the whole bucket in memory. A
listing has no user metadata, so the scan asks for each object's head (in parallel,
page by page) to read the mtime that rclone and we keep in `x-amz-meta-mtime`.

Writes: an S3 PUT is atomic; files from 8 MiB go as a multipart upload, which is invisible
until completed and aborted on any failure, so no partial object is ever visible. md5 is
the ETag of a single-part object; for one we upload in parts it is kept in
`x-amz-meta-md5chksum` (as rclone does), set by copying the object onto itself once it is
complete (up to 5 GiB, the limit of one copy).

Errors: NoSuchKey → NotFound, AccessDenied → AccessDenied, SlowDown and 5xx → Transient.
Object reads and single PUTs are retried by the engine (which counts each attempt in the
manifest); listing pages, heads and parts, which it cannot redo on their own, are retried
here with backoff and counted in `S3Connector.retries`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, urlsplit

import boto3
from botocore import exceptions as bexc
from botocore.config import Config

from .base import Capabilities, Connector, Entry, ScanError, Written
from .errors import (
    AccessDenied,
    ConnectFailed,
    DestinationFull,
    InvalidPath,
    NotFound,
    StorageError,
    Transient,
    Unsupported,
)
from .objects import (
    ChecksumMismatch,
    SourceError,
    check_name_bytes,
    check_object_path,
    content_type,
    folder_level,
    read_source,
)
from .walk import walk

MAX_KEY_BYTES = 1024  # S3 object keys are 1-1024 bytes of UTF-8
PART_SIZE = 8 << 20  # below this one PUT (bytes in memory); from it, a multipart upload
MAX_PARTS = 10_000  # S3's limit of parts in one upload
MAX_COPY = 5 << 30  # the largest object one CopyObject can copy (md5 stamp, move)
COPY_PART = 1 << 30  # a range copied on the server by one UploadPartCopy, beyond that
PAGE = 1000  # keys per listing page (S3's maximum)
HEAD_THREADS = 8  # heads in flight while a listing page is read
RETRIES = 4  # attempts for a listing page, a head or a part before Transient is raised
BACKOFF = 0.2  # seconds, doubled per attempt
MTIME_KEY = "mtime"  # rclone's: seconds since the epoch, with a fraction ("1600000000.123")
MD5_KEY = "md5chksum"  # rclone's: the base64 md5 of a multipart object
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
OPTIONS = ("endpoint", "region", "path_style", "mtime")

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "OperationAborted",
    }
)
DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AccountProblem",
    }
)


# botocore says at INFO where it found the credentials, once per client: noise on a
# terminal (the CLI prints one line for a failure), never a help
logging.getLogger("botocore.credentials").setLevel(logging.WARNING)


# -- names -----------------------------------------------------------------------------


def check_relative(path: str, *, literal: bool = False) -> str:
    """A relative key path, or InvalidPath: no '..', '.', empty parts, leading '/' or
    NUL. `literal`: the key of an object as listed at a source, where such parts are just
    characters of the name (nothing is written under it)."""
    return check_object_path(path, literal=literal, refused="\x00", refused_why="NUL in name")


# -- metadata --------------------------------------------------------------------------


def mtime_metadata(mtime_ns: int) -> dict[str, str]:
    """The user metadata holding `mtime_ns`, as rclone writes it (seconds.nanoseconds)."""
    seconds, nanos = divmod(mtime_ns, 10**9)
    return {MTIME_KEY: f"{seconds}.{nanos:09d}"}


def parse_mtime_ns(text: str | None) -> int | None:
    """Nanoseconds from "seconds[.fraction]" (rclone's form), keeping all nine digits; or
    from an RFC 3339 time, which some tools write under the same key."""
    if not text:
        return None
    match = re.fullmatch(r"\s*(-?\d+)(?:\.(\d+))?\s*", text)
    if match:
        seconds, fraction = match.groups()
        return int(seconds) * 10**9 + int((fraction or "0")[:9].ljust(9, "0"))
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp()) * 10**9 + value.microsecond * 1000


def _datetime_ns(value: datetime | None) -> int:
    if value is None:
        return 0
    return int(value.timestamp()) * 10**9 + value.microsecond * 1000


def _md5_of(etag: str | None, metadata: dict[str, str] | None) -> str | None:
    """The object's md5 as hex: its ETag when it was written in one part (no '-'), else
    what the writer kept in metadata, else unknown."""
    tag = (etag or "").strip('"').lower()
    if re.fullmatch(r"[0-9a-f]{32}", tag):
        return tag
    stamped = (metadata or {}).get(MD5_KEY)
    if stamped:
        try:
            raw = base64.b64decode(stamped, validate=True)
        except ValueError:
            return None
        if len(raw) == 16:
            return raw.hex()
    return None


def _listed(obj: dict) -> dict:
    """A listed object's fields, as a head would give them (no user metadata)."""
    return {"ContentLength": obj["Size"], "LastModified": obj.get("LastModified"),
            "ETag": obj.get("ETag")}  # fmt: skip


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


# -- errors ----------------------------------------------------------------------------


def _code_of(exc: bexc.ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(error.get("Code", "")), int(status)


def _wrap(exc: BaseException, path: str) -> StorageError:
    """The typed error for what boto3 raised."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, bexc.ClientError):
        code, status = _code_of(exc)
        message = exc.response.get("Error", {}).get("Message") or code
        if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket"):
            return NotFound(path, "no such object")
        if code == "NoSuchBucket":
            return ConnectFailed(path, "the bucket does not exist")
        if code in DENIED_CODES or status == 403:
            return AccessDenied(path, f"permission denied ({code}): {message}")
        if code in TRANSIENT_CODES or status in (408, 429) or status >= 500:
            return Transient(path, f"S3 unavailable ({code or status}): {message}")
        if code in ("BadDigest", "InvalidDigest"):
            return ChecksumMismatch(path, f"upload refused: {message}")
        if code in ("QuotaExceeded", "XMinioStorageFull", "StorageFull"):
            return DestinationFull(path, f"no space left ({code}): {message}")
        if code == "PreconditionFailed":
            return Transient(path, "object was replaced while it was used")
        return StorageError(path, f"S3 error ({code or status}): {message}")
    if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
        return AccessDenied(path, f"no S3 credentials: {exc}")
    if isinstance(exc, bexc.EndpointConnectionError | bexc.ConnectTimeoutError):
        return Transient(path, f"cannot reach S3: {exc}")
    if isinstance(
        exc,
        bexc.ConnectionError
        | bexc.HTTPClientError
        | bexc.ReadTimeoutError
        | bexc.IncompleteReadError
        | bexc.ResponseStreamingError
        | ConnectionError
        | TimeoutError,
    ):
        return Transient(path, f"connection to S3 failed: {exc}")
    return StorageError(path, f"{type(exc).__name__}: {exc}")


# -- streams ---------------------------------------------------------------------------


class _ObjectReader(io.RawIOBase):
    """An object's bytes from one GET, streamed as they arrive (S3 serves one version for
    the whole response); the first bytes are asked for at once, so a missing object
    raises NotFound from `open`."""

    def __init__(self, body: Any, path: str) -> None:
        self._body = body
        self._path = path

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """The next bytes as they come, handed on without a copy (a buffered wrapper cost
        a third more time on a 256 MB object)."""
        try:
            return self._body.read(None if size is None or size < 0 else size)
        except Exception as exc:
            raise _wrap(exc, self._path) from exc

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            try:
                self._body.close()
            finally:
                super().close()


# -- the connector ---------------------------------------------------------------------


class S3Connector(Connector):
    """Objects under `prefix` in `bucket`; one instance per thread (its client is shared
    by the few threads that read heads for its scan)."""

    scheme = "s3"
    capabilities = Capabilities(
        hashes=frozenset({"md5"}),  # the ETag of a single-part object; ours keep it always
        # md5: S3 checks each request's Content-MD5; crc32c for the manifest, as elsewhere
        verify_hashes=frozenset({"md5", "crc32c"}),
        mtime_precision_ns=1,  # x-amz-meta-mtime keeps nanoseconds
        acl=False,
        directories=False,
        literal_names=True,
        case_insensitive=False,
        rename=True,  # move(): a copy then a delete of each object, never atomic
        max_name_bytes=MAX_KEY_BYTES,  # a part is no longer than the whole key
        max_path_bytes=MAX_KEY_BYTES,
    )

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        endpoint: str = "",
        *,
        upload_mtime: bool = False,
    ) -> None:
        self.client = client
        self.upload_mtime = upload_mtime  # mtime=upload: LastModified, no heads at the scan
        self.bucket = bucket
        self.endpoint = endpoint or "AWS S3"
        prefix = check_relative(prefix.strip("/"))
        self.root = f"{prefix}/" if prefix else ""  # key prefix, ends with '/'
        self.retries = 0  # requests retried here (listing pages, heads, parts)
        self._lock = threading.Lock()
        self._heads: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"S3Connector(s3://{self.bucket}/{self.root})"

    def _key(self, path: str, *, literal: bool = False) -> str:
        key = self.root + check_relative(path, literal=literal)
        return check_name_bytes(key, path, MAX_KEY_BYTES, "object key")

    def _call(self, path: str, request: Callable[..., dict], **kwargs: Any) -> dict:
        """One request, retried with backoff while S3 answers with a transient error."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return request(**kwargs)
            except Exception as exc:
                error = _wrap(exc, path)
                if not error.transient or attempt >= RETRIES:
                    raise error from exc
            with self._lock:
                self.retries += 1
            time.sleep(BACKOFF * 2 ** (attempt - 1))

    def _head(self, key: str, path: str) -> dict:
        return self._call(path, self.client.head_object, Bucket=self.bucket, Key=key)

    def _entry(self, path: str, head: dict) -> Entry:
        metadata = head.get("Metadata") or {}
        mtime = None if self.upload_mtime else parse_mtime_ns(metadata.get(MTIME_KEY))
        if mtime is None:
            mtime = _datetime_ns(head.get("LastModified"))
        md5 = _md5_of(head.get("ETag"), metadata)
        return Entry(
            path, "file", int(head.get("ContentLength", 0)), mtime, (("md5", md5),) if md5 else ()
        )

    # scan

    def scan(self, prefix: str = "") -> Iterator[Entry | ScanError]:
        yield from walk(self._level, check_relative(prefix.strip("/")))

    def _pages(self, prefix: str, path: str, delimiter: bool = True) -> Iterator[dict]:
        """Listing pages of keys under `prefix`, one request each, by continuation token."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": PAGE}
        if delimiter:
            kwargs["Delimiter"] = "/"
        while True:
            page = self._call(path, self.client.list_objects_v2, **kwargs)
            yield page
            if not page.get("IsTruncated") or not page.get("NextContinuationToken"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _with_heads(self, rel: str, base: str, objects: list[dict]) -> list[tuple[dict, Any]]:
        """Each listed object with its head (or the typed error asking for it), asked for
        by a few threads at once: the listing does not carry user metadata (the mtime)."""

        def head(obj: dict) -> Any:
            path = f"{rel}/{obj['Key'][len(base) :]}" if rel else obj["Key"][len(base) :]
            try:
                return self._head(obj["Key"], path)
            except StorageError as exc:
                return exc

        if self.upload_mtime:  # what the listing says is all that is used
            return [(obj, _listed(obj)) for obj in objects]
        if len(objects) <= 1:
            return [(obj, head(obj)) for obj in objects]
        if self._heads is None:
            self._heads = ThreadPoolExecutor(HEAD_THREADS, thread_name_prefix="s3-head")
        return list(zip(objects, self._heads.map(head, objects), strict=True))

    def _level(self, rel: str) -> Iterator[Entry | ScanError]:
        """One folder's children in scan order, listed lazily page by page."""
        base = self.root + (f"{rel}/" if rel else "")
        skip = len(base)

        def pages() -> Iterator[list[tuple[str, tuple[dict, Any] | None]]]:
            for page in self._pages(base, rel):
                objects = [o for o in page.get("Contents", ()) if o["Key"] != base]
                raws: list[tuple[str, tuple[dict, Any] | None]] = [
                    (obj["Key"][skip:], pair)
                    for obj, pair in zip(objects, self._with_heads(rel, base, objects), strict=True)
                ]
                raws.extend((p["Prefix"][skip:], None) for p in page.get("CommonPrefixes", ()))
                yield raws

        yield from folder_level(rel, pages(), self._listed_entry, lambda: self._rooted(base))

    def _listed_entry(self, path: str, listed: tuple[dict, Any]) -> Entry | ScanError:
        """A listed object's Entry from its head, or its failed entry."""
        obj, head = listed
        if isinstance(head, NotFound):
            # deleted between the listing and its head: seen as listed (upload time
            # for mtime), so its copy finds it gone and says so (reason vanished)
            head = _listed(obj)
        if isinstance(head, StorageError):
            return ScanError(path, head, "file")
        return self._entry(path, head)

    def _rooted(self, base: str) -> Iterator[Entry | ScanError]:
        """Every object whose key has "/" right after the root: each its own failed entry
        (a leading "/" makes an absolute path)."""
        try:
            for page in self._pages(f"{base}/", "/", delimiter=False):
                for obj in page.get("Contents", ()):
                    path = obj["Key"][len(base) :]
                    yield ScanError(path, InvalidPath(path, "object key begins with '/'"), "file")
        except StorageError as exc:
            yield ScanError("/", exc)

    # single objects

    def stat(self, path: str) -> Entry:
        key = self._key(path, literal=True)  # reads only: a listed name as it is
        if not key or key == self.root:
            return Entry("", "dir")
        try:
            return self._entry(path, self._head(key, path))
        except NotFound:
            pass
        if self._has_children(key, path):
            return Entry(path, "dir")
        raise NotFound(path, "no such object")

    def _has_children(self, key: str, path: str) -> bool:
        page = self._call(
            path, self.client.list_objects_v2, Bucket=self.bucket, Prefix=f"{key}/", MaxKeys=1
        )
        return bool(page.get("KeyCount") or page.get("Contents"))

    def folder_names(self, path: str, limit: int) -> set[str] | None:
        """One listing (a request per 1,000 names) instead of a head per file to learn
        that it is not there yet."""
        try:
            rel = check_relative(path.strip("/"))
            base = self.root + (f"{rel}/" if rel else "")
            names: set[str] = set()
            for page in self._pages(base, path):
                names.update(o["Key"][len(base) :] for o in page.get("Contents", ()))
                names.update(
                    p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", ())
                )
                if len(names) > limit:
                    return None
        except StorageError:  # it cannot say: each file is asked for on its own
            return None
        return names

    def open(self, path: str) -> BinaryIO:
        key = self._key(path, literal=True)  # reads only: a listed name as it is
        if key == self.root:
            raise StorageError(path, "is a folder")
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _wrap(exc, path) from exc
        return _ObjectReader(answer["Body"], path)  # type: ignore[return-value]

    def write(self, path: str, stream: BinaryIO, entry: Entry) -> Written:
        key = self._key(path)
        if key == self.root:
            raise InvalidPath(path, "cannot write the root")
        headers: dict[str, Any] = {
            "ContentType": content_type(key),
            "Metadata": mtime_metadata(entry.mtime_ns) if entry.mtime_ns else {},
        }
        try:
            head = read_source(stream, PART_SIZE)
            if len(head) < PART_SIZE:
                return self._put(path, key, head, entry, headers)
            return self._multipart(path, key, stream, head, entry, headers)
        except SourceError as exc:
            raise exc.error from None  # the source's own error, not the destination's

    def _refuse_unexpected(self, path: str, entry: Entry, md5: str) -> None:
        expected = entry.hash("md5")
        if expected and expected.lower() != md5:
            raise ChecksumMismatch(path, "md5 of the bytes read is not the source's")

    def _put(self, path: str, key: str, data: bytes, entry: Entry, headers: dict) -> Written:
        """One PUT, atomic; the server refuses it if the Content-MD5 we send is wrong."""
        digest = hashlib.md5(data, usedforsecurity=False).digest()
        md5 = digest.hex()
        self._refuse_unexpected(path, entry, md5)
        try:
            answer = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentMD5=_b64(digest), **headers
            )
        except Exception as exc:
            raise _wrap(exc, path) from exc
        stored = _md5_of(answer.get("ETag"), None)
        if stored is not None and stored != md5:
            self._delete_key(key)
            raise ChecksumMismatch(path, "stored md5 differs from the bytes sent")
        return Written(size=len(data), hashes=(("md5", md5),))

    def _multipart(
        self, path: str, key: str, stream: BinaryIO, head: bytes, entry: Entry, headers: dict
    ) -> Written:
        """Parts of PART_SIZE or more (so an object of entry.size fits in 10,000 parts),
        each with its Content-MD5; completed only when every byte was read and matches
        the source's md5 where it is known, else aborted: nothing is ever visible but
        the whole object."""
        part_size = max(PART_SIZE, -(-entry.size // (MAX_PARTS - 100) // (1 << 20)) << 20)
        expected = entry.hash("md5")
        if expected:  # known before the first byte: kept with the object from the start
            headers["Metadata"][MD5_KEY] = _b64(bytes.fromhex(expected))
        upload = self._call(
            path, self.client.create_multipart_upload, Bucket=self.bucket, Key=key, **headers
        )["UploadId"]
        whole = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            parts = []
            data = head + read_source(stream, part_size - len(head))
            while data:
                if len(parts) >= MAX_PARTS:
                    raise StorageError(path, f"more than {MAX_PARTS} parts of {part_size} bytes")
                whole.update(data)
                size += len(data)
                digest = hashlib.md5(data, usedforsecurity=False).digest()
                number = len(parts) + 1
                answer = self._call(
                    path,
                    self.client.upload_part,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=_b64(digest),
                )
                parts.append({"ETag": answer["ETag"], "PartNumber": number})
                data = read_source(stream, part_size)
            md5 = whole.hexdigest()
            self._refuse_unexpected(path, entry, md5)
            done = self._call(
                path,
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            self._abort(key, upload)
            raise
        if expected or size > MAX_COPY:
            return Written(size=size, hashes=(("md5", md5),) if expected else ())
        return Written(size=size, hashes=self._stamp_md5(key, done.get("ETag"), md5, headers))

    def _stamp_md5(self, key: str, etag: str | None, md5: str, headers: dict) -> tuple:
        """Copy the completed object onto itself with its md5 in metadata (S3 cannot add
        metadata otherwise), only while it is still the object we wrote. Best effort: an
        object without it reports no md5, and is compared by size and mtime."""
        metadata = {**headers["Metadata"], MD5_KEY: _b64(bytes.fromhex(md5))}
        condition = {"CopySourceIfMatch": etag} if etag else {}
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                Metadata=metadata,
                ContentType=headers["ContentType"],
                **condition,
            )
        except Exception:
            return ()
        return (("md5", md5),)

    def _abort(self, key: str, upload: str) -> None:
        # best effort: a lifecycle rule reaps abandoned uploads; none is visible
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)

    def _delete_key(self, key: str) -> None:
        with contextlib.suppress(Exception):  # best effort: ChecksumMismatch either way
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def move(self, src_path: str, dst_path: str) -> None:
        """S3 has no rename: each object is copied to its new key (metadata kept), then
        deleted; a "folder" is every object under its prefix, moved one by one."""
        src = self._key(src_path, literal=True)  # a listed name, as it is
        dst = self._key(dst_path)
        if self.root in (src, dst):
            raise InvalidPath(src_path if src == self.root else dst_path, "cannot move the root")
        try:
            head = self._head(src, src_path)
        except NotFound:
            pass
        else:
            self._move_object(src, dst, head, src_path)
            return
        moved = 0
        for page in self._pages(f"{src}/", src_path, delimiter=False):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                self._move_object(key, dst + key[len(src) :], self._head(key, src_path), src_path)
                moved += 1
        if not moved:
            raise NotFound(src_path, "no such object")

    def _move_object(self, src: str, dst: str, head: dict, path: str) -> None:
        source = {"Bucket": self.bucket, "Key": src}
        if int(head.get("ContentLength", 0)) <= MAX_COPY:
            self._call(path, self.client.copy_object, Bucket=self.bucket, Key=dst,
                       CopySource=source, MetadataDirective="COPY")  # fmt: skip
        else:
            self._copy_in_parts(source, dst, head, path)
        self._call(path, self.client.delete_object, Bucket=self.bucket, Key=src)

    def _copy_in_parts(self, source: dict, dst: str, head: dict, path: str) -> None:
        """An object over 5 GiB, copied on the server in ranges of COPY_PART (what one
        CopyObject cannot do), its metadata and type kept; aborted on failure."""
        headers = {
            "Metadata": head.get("Metadata") or {},
            "ContentType": head.get("ContentType") or "application/octet-stream",
        }
        upload = self._call(path, self.client.create_multipart_upload, Bucket=self.bucket,
                            Key=dst, **headers)["UploadId"]  # fmt: skip
        size, step, parts = int(head["ContentLength"]), COPY_PART, []
        try:
            for number, start in enumerate(range(0, size, step), 1):
                answer = self._call(
                    path, self.client.upload_part_copy, Bucket=self.bucket, Key=dst,
                    UploadId=upload, PartNumber=number, CopySource=source,
                    CopySourceRange=f"bytes={start}-{min(start + step, size) - 1}",
                )  # fmt: skip
                parts.append({"ETag": answer["CopyPartResult"]["ETag"], "PartNumber": number})
            self._call(path, self.client.complete_multipart_upload, Bucket=self.bucket,
                       Key=dst, UploadId=upload, MultipartUpload={"Parts": parts})  # fmt: skip
        except BaseException:
            self._abort(dst, upload)
            raise

    def mkdir(self, path: str, entry: Entry | None = None) -> bool:
        # capabilities.directories is False: callers check it and never get here
        raise Unsupported(path, "a bucket has no folders: they are implied by object keys")

    def delete(self, path: str) -> None:
        key = self._key(path)
        if key == self.root:
            raise InvalidPath(path, "cannot delete the root")
        # S3 answers a DELETE of a missing key with success: look first, to say NotFound
        for candidate in (key, f"{key}/"):  # an empty "folder" may be a placeholder object
            try:
                self._head(candidate, path)
            except NotFound:
                continue
            self._call(path, self.client.delete_object, Bucket=self.bucket, Key=candidate)
            return
        if self._has_children(key, path):
            raise StorageError(path, "folder is not empty")
        raise NotFound(path, "no such object")

    def check(self) -> None:
        where = f"s3://{self.bucket}/{self.root}"
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.root, MaxKeys=1)
        except bexc.ClientError as exc:
            code, status = _code_of(exc)
            if code == "NoSuchBucket":
                message = f"bucket {self.bucket} does not exist at {self.endpoint}"
            elif code == "InvalidAccessKeyId":
                message = f"wrong access key: {self.endpoint} does not know it"
            elif code == "SignatureDoesNotMatch":
                message = "wrong secret key: it does not match the access key"
            elif code in DENIED_CODES or status == 403:
                message = f"permission denied listing the bucket ({code or status})"
            else:
                message = str(_wrap(exc, ""))
            raise ConnectFailed(where, message) from exc
        except (bexc.NoCredentialsError, bexc.PartialCredentialsError) as exc:
            message = "no S3 credentials: give the endpoint a secret ACCESS_KEY_ID:SECRET"
            raise ConnectFailed(where, message) from exc
        except (bexc.EndpointConnectionError, bexc.ConnectTimeoutError) as exc:
            raise ConnectFailed(where, f"cannot reach {self.endpoint}: {exc}") from exc
        except Exception as exc:
            raise ConnectFailed(where, str(_wrap(exc, ""))) from exc

    def close(self) -> None:
        if self._heads is not None:
            self._heads.shutdown(wait=True)
            self._heads = None
        self.client.close()


# -- opening ---------------------------------------------------------------------------


def credentials_of(secret: str | None) -> dict[str, str]:
    """boto3's keyword arguments for the endpoint's secret: "ACCESS:SECRET" or JSON."""
    if not secret:
        return {}
    text = secret.strip()
    if text.startswith("{"):
        try:
            info = json.loads(text)
            out = {
                "aws_access_key_id": str(info["access_key_id"]),
                "aws_secret_access_key": str(info["secret_access_key"]),
            }
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectFailed(
                "", "the S3 secret must hold access_key_id and secret_access_key"
            ) from exc
        if info.get("session_token"):
            out["aws_session_token"] = str(info["session_token"])
        return out
    access, sep, secret_key = text.partition(":")
    if not sep or not access or not secret_key:
        raise ConnectFailed("", "the S3 secret must be ACCESS_KEY_ID:SECRET_ACCESS_KEY")
    return {"aws_access_key_id": access, "aws_secret_access_key": secret_key}


def parse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """(bucket, prefix, options) of s3://bucket/prefix?option=value&…; the prefix is
    taken literally (no %-decoding, like the AWS CLI)."""
    if not url.startswith("s3://"):
        raise ValueError(f"S3 URL must be s3://bucket/prefix, got {url!r}")
    rest, _, query = url[len("s3://") :].partition("?")
    bucket, _, prefix = rest.partition("/")
    if "@" in bucket or ":" in bucket:
        raise ValueError("credentials go in the endpoint's secret, never in the URL")
    if not BUCKET_RE.match(bucket):
        raise ValueError(f"not a valid bucket name in {url!r}")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown S3 option {unknown[0]!r}: expected {', '.join(OPTIONS)}")
    endpoint = options.get("endpoint", "")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the S3 endpoint must be http(s)://host[:port], got {endpoint!r}")
        if parts.username or parts.password:
            raise ValueError("credentials go in the endpoint's secret, never in the URL")
    if options.get("path_style", "") not in ("", "0", "1", "true", "false"):
        raise ValueError("path_style must be 0 or 1")
    if options.get("mtime", "") not in ("", "metadata", "upload"):
        raise ValueError("mtime must be metadata or upload")
    return bucket, prefix, options


def make_client(options: dict[str, str], secret: str | None = None) -> Any:
    """A boto3 S3 client for the URL's options and the endpoint's secret. botocore's own
    retries are off (we retry, and count); request checksums only where S3 requires
    them, which S3-compatible stores that predate them (older MinIO, Ceph) accept."""
    endpoint = options.get("endpoint") or None
    path_style = options.get("path_style", "1" if endpoint else "0") in ("1", "true")
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if path_style else "auto"},
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=120,  # a CopyObject of a large object answers when it is done
        max_pool_connections=HEAD_THREADS + 2,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    region = options.get("region") or ("us-east-1" if endpoint else None)
    credentials = credentials_of(secret)
    with _session_lock:
        return _session().client(
            "s3", endpoint_url=endpoint, region_name=region, config=config, **credentials
        )


# One boto3 session per process, its clients made under a lock (a session is not
# thread-safe): a client from a fresh session costs 0.2 s of CPU parsing botocore's
# service model again, from a shared one 15 ms, and a copy opens a connector per thread.
# Credentials go to each client; the session's own chain is only for those without.
_session_lock = threading.Lock()
_sessions: dict[int, Any] = {}


def _session() -> Any:
    pid = os.getpid()  # a forked copy process makes its own
    if pid not in _sessions:
        _sessions.clear()
        _sessions[pid] = boto3.session.Session()
    return _sessions[pid]


def _after_fork() -> None:
    global _session_lock
    _session_lock = threading.Lock()  # a lock another thread held at the fork is never freed


os.register_at_fork(after_in_child=_after_fork)


def from_url(url: str, secret: str | None = None) -> S3Connector:
    """s3://bucket/prefix[?endpoint=…&region=…&path_style=…&mtime=…]."""
    bucket, prefix, options = parse_url(url)
    try:
        return S3Connector(
            make_client(options, secret),
            bucket,
            prefix,
            options.get("endpoint", ""),
            upload_mtime=options.get("mtime") == "upload",
        )
    except InvalidPath as exc:
        raise ValueError(f"invalid prefix in {url!r}: {exc.message}") from exc
