"""Copy a batch of planned items from a source connector to a destination connector.

Inside a batch a small pool of threads pulls items from a shared queue (one hand-off per
item, no future per file); each thread has its own connectors. Every file is streamed
once: the reader hashes as it goes, the destination writes atomically, and verify compares
the hash the source stream produced with what the destination reports.
"""

from __future__ import annotations

import enum
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from migrator.storage import (
    ChangedDuringCopy,
    Connector,
    DestinationFull,
    Entry,
    InvalidPath,
    NotFound,
    StorageError,
)

from .compare import newer, same_file
from .streams import KNOWN_HASHES, HashingReader, RateLimiter, SharedRate, keep_freed_buffers


class Policy(enum.StrEnum):
    """What to do when the destination already holds an object at the target path."""

    SKIP_IDENTICAL = "skip_identical"  # identical: leave it (unchanged); different: replace
    OVERWRITE = "overwrite"  # always write, even when identical
    NEWER = "newer"  # replace only when the source is newer; else leave the destination's
    KEEP_BOTH = "keep_both"  # different: write the source beside it under a new name
    VERIFY = "verify"  # a verify pass: compare with the destination, write nothing


class State(enum.StrEnum):
    PENDING = "pending"
    COPIED = "copied"
    UNCHANGED = "unchanged"
    EXCLUDED = "excluded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CopyTask:
    item_id: int
    source_path: str
    dest_path: str
    kind: str = "file"
    size: int = 0
    mtime_ns: int = 0
    hashes: tuple[tuple[str, str], ...] = ()

    def hash_of(self, algo: str) -> str:
        for name, value in self.hashes:  # at most two: no dict built for each question
            if name == algo:
                return value
        return ""

    def entry(self) -> Entry:
        return Entry(self.source_path, self.kind, self.size, self.mtime_ns, self.hashes)  # type: ignore[arg-type]


@dataclass(slots=True)
class Outcome:
    item_id: int
    state: State
    reason: str = ""
    message: str = ""
    bytes: int = 0
    md5: str = ""
    crc32c: str = ""
    dest_path: str | None = None  # set when the file went elsewhere than planned (keep_both)
    attempts: int = 1


@dataclass(slots=True)
class CopyOptions:
    policy: Policy = Policy.SKIP_IDENTICAL
    bwlimit: int | None = None  # bytes/s for this batch
    threads: int = 8
    retry_attempts: int = 4
    backoff: float = 0.5  # seconds, doubled per attempt
    # content hashes asked for on top of those the destination verifies (see hashes_for)
    hashes: frozenset[str] = frozenset()
    should_stop: Callable[[], bool] = field(default=lambda: False)
    shared_rate: SharedRate | None = None  # a limit shared with the job's other workers


class Halted(Exception):
    """The batch stopped because the destination cannot take more (DestinationFull):
    `outcomes` are the items done before; the rest stay pending until there is space."""

    def __init__(self, error: StorageError, outcomes: list[Outcome]) -> None:
        self.error, self.outcomes = error, outcomes
        super().__init__(str(error))


class SourceFailed(Exception):
    """Raised through the destination's write when reading the source failed."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        super().__init__(str(error))


class _GuardedReader(HashingReader):
    """Tags errors raised while reading the source, so they are not blamed on the
    destination that was pulling the bytes. At the end of the stream it asks the source
    whether the file moved while it was read: if so the read fails, and so the
    destination's atomic write keeps nothing of it (never a torn object)."""

    def __init__(
        self, raw, limiter, changed: Callable[[object], str], path: str, hashes=KNOWN_HASHES
    ) -> None:
        super().__init__(raw, limiter, hashes)
        self._changed, self._path = changed, path

    def read(self, size: int = -1) -> bytes:
        try:
            data = super().read(size)
            if not data and size != 0:
                moved = self._changed(self.raw)
                if moved:
                    raise ChangedDuringCopy(self._path, moved)
            return data
        except Exception as exc:
            raise SourceFailed(exc) from exc


def hashes_for(dst: Connector, options: CopyOptions) -> frozenset[str]:
    """What a copy to `dst` hashes of every byte: what the destination verifies
    (capabilities.verify_hashes: GCS md5 and crc32c, else crc32c), any hash it reports of
    what it stored (so that one is checked too), and what the job asks for."""
    caps = dst.capabilities
    return caps.verify_hashes | caps.hashes | options.hashes


def keep_both_name(path: str, mtime_ns: int) -> str:
    """'a/report.docx' -> 'a/report (source 2026-11-26 0712).docx', stable across passes."""
    folder, _, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    stamp = datetime.fromtimestamp(mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H%M%S")
    new = f"{stem} (source {stamp}){dot}{ext}"
    return f"{folder}/{new}" if folder else new


def _source_reason(exc: Exception) -> str:
    if isinstance(exc, NotFound):
        return "vanished"
    if isinstance(exc, StorageError):
        return "source_unavailable" if exc.transient and exc.reason == "unavailable" else exc.reason
    if isinstance(exc, PermissionError):
        return "access_denied"
    if isinstance(exc, FileNotFoundError):
        return "vanished"
    return "read_error"


def _dest_reason(exc: StorageError) -> str:
    if exc.transient and exc.reason == "unavailable":
        return "destination_unavailable"
    if isinstance(exc, NotFound):
        return "destination_error"
    return exc.reason


class DestinationIndex:
    """What is already at the destination, one folder at a time: a thread's tasks come in
    runs of neighbours, so one listing of their folder answers "is it there?" for each
    (measured: a failing stat per file was 20 µs of the 89 µs a small file cost). Where
    the destination cannot list cheaply, or the folder is huge, each file is stat'ed."""

    LIMIT = 10_000  # names held at most (bounded memory, whatever the folder)

    def __init__(self, dst: Connector) -> None:
        self.dst = dst
        self.folder: str | None = None
        self.names: set[str] | None = None

    def stat(self, path: str) -> Entry | None:
        folder, _, name = path.rpartition("/")
        if folder != self.folder:
            self.folder, self.names = folder, self.dst.folder_names(folder, self.LIMIT)
        if self.names is not None and name not in self.names:
            return None
        return _stat_or_none(self.dst, path)

    def forget(self) -> None:
        """Before a retry: what the failed attempt did is not in the listing."""
        self.folder = self.names = None


def copy_one(
    task: CopyTask,
    src: Connector,
    dst: Connector,
    options: CopyOptions,
    limiter: RateLimiter | None = None,
    index: DestinationIndex | None = None,
) -> Outcome:
    """Copy one planned item; never raises for a storage problem, returns the outcome."""
    attempt = 0
    while True:
        attempt += 1
        if index is not None and attempt > 1:
            index.forget()
        try:
            outcome = _copy_attempt(task, src, dst, options, limiter, index)
            outcome.attempts = attempt
            return outcome
        except SourceFailed as failed:
            exc = failed.error
            transient = isinstance(exc, StorageError) and exc.transient
            reason, message = _source_reason(exc), str(exc)
        except DestinationFull:
            raise  # no further write can succeed: the whole batch stops (see copy_batch)
        except StorageError as exc:
            transient = exc.transient
            reason, message = _dest_reason(exc), str(exc)
        except OSError as exc:  # an unexpected local I/O error: report, never crash the batch
            transient = False
            reason, message = "io_error", str(exc)
        if transient and attempt < options.retry_attempts:
            time.sleep(options.backoff * (2 ** (attempt - 1)))
            continue
        return Outcome(task.item_id, State.FAILED, reason, message, attempts=attempt)


def _copy_attempt(
    task: CopyTask,
    src: Connector,
    dst: Connector,
    options: CopyOptions,
    limiter: RateLimiter | None,
    index: DestinationIndex | None = None,
) -> Outcome:
    if options.policy is Policy.VERIFY:
        from .verify import verify_one  # verify imports this module

        return verify_one(task, src, dst)
    entry = task.entry()
    if task.kind == "dir":
        created = dst.mkdir(task.dest_path, entry) if dst.capabilities.directories else False
        return Outcome(task.item_id, State.COPIED if created else State.UNCHANGED)

    target = task.dest_path
    if options.policy is not Policy.OVERWRITE:
        existing = index.stat(target) if index is not None else _stat_or_none(dst, target)
        if existing is not None:
            if existing.kind != "file":
                raise InvalidPath(target, "a folder has that name at the destination")
            if same_file(entry, existing, src.capabilities, dst.capabilities):
                return Outcome(task.item_id, State.UNCHANGED)
            if options.policy is Policy.NEWER and not newer(
                entry, existing, src.capabilities, dst.capabilities
            ):
                return Outcome(task.item_id, State.EXCLUDED, "destination_newer")
            if options.policy is Policy.KEEP_BOTH:
                target = keep_both_name(target, task.mtime_ns)
                beside = _stat_or_none(dst, target)
                if beside is not None and same_file(
                    entry, beside, src.capabilities, dst.capabilities
                ):
                    return Outcome(task.item_id, State.UNCHANGED, dest_path=target)

    try:
        raw = src.open(task.source_path)
    except (StorageError, OSError) as exc:
        raise SourceFailed(exc) from exc
    algos = hashes_for(dst, options)
    reader = _GuardedReader(raw, limiter, src.changed_while_read, task.source_path, algos)
    try:
        written = dst.write(target, reader, entry)  # type: ignore[arg-type]
    finally:
        try:
            reader.close()
        except OSError:
            pass
    source_hashes = dict(reader.hashes())
    problem = ""
    if written.size != reader.bytes_read:
        problem = f"destination holds {written.size} bytes, source gave {reader.bytes_read}"
    for algo, computed in source_hashes.items():  # those both sides know
        reported = written.hash(algo)
        if reported and reported != computed:
            problem = f"{algo} at destination {reported} != source {computed}"
            break
    if problem:
        try:
            dst.delete(target)
        except StorageError:
            pass
        return Outcome(task.item_id, State.FAILED, "checksum_mismatch", problem)
    return Outcome(
        task.item_id,
        State.COPIED,
        bytes=reader.bytes_read,
        md5=source_hashes.get("md5", ""),  # empty where not computed
        crc32c=source_hashes.get("crc32c", ""),
        dest_path=target if target != task.dest_path else None,
    )


def _stat_or_none(dst: Connector, path: str) -> Entry | None:
    try:
        return dst.stat(path)
    except NotFound:
        return None


def copy_batch(
    tasks: Sequence[CopyTask],
    source: Callable[[], Connector],
    destination: Callable[[], Connector],
    options: CopyOptions,
) -> list[Outcome]:
    """Copy the tasks with a pool of threads; `source()`/`destination()` open a connector
    for each thread, closed when the thread is done. Items not reached because
    `options.should_stop()` turned true are left out of the result (they stay pending).

    Threads take runs of consecutive tasks (neighbours in one folder), not one task at
    a time, and keep their outcomes until they finish: each hand-off between threads
    costs more than copying a small file. When both connectors declare `copy_threads`
    (their work is CPU in this machine's kernel, not waiting on a network), no more
    threads than that are used: more only contend for the GIL and the folder locks."""
    if not tasks:
        return []
    keep_freed_buffers()
    limiter = RateLimiter(options.bwlimit, options.shared_rate)
    first: list[Connector] = []
    try:  # the first thread's connectors, opened here: they say how many threads pay off
        first.append(source())
        first.append(destination())
    except BaseException:
        for conn in first:
            conn.close()
        raise
    threads = max(1, min(options.threads, len(tasks), (os.cpu_count() or 2) * 8))
    hints = [getattr(conn, "copy_threads", None) for conn in first]
    if all(hints):
        threads = min(threads, max(hints))
    run = max(1, min(64, len(tasks) // (threads * 4)))
    todo: queue.SimpleQueue[Sequence[CopyTask]] = queue.SimpleQueue()
    for start in range(0, len(tasks), run):
        todo.put(tasks[start : start + run])
    results: list[Outcome] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    full: list[DestinationFull] = []  # once one thread meets it, every thread stops

    def work(opened: list[Connector]) -> None:
        done: list[Outcome] = []
        try:
            if not opened:
                opened.append(source())
                opened.append(destination())
            src, dst = opened
            index = DestinationIndex(dst)
            while True:
                try:
                    tasks_run = todo.get_nowait()
                except queue.Empty:
                    return
                for task in tasks_run:
                    if full or options.should_stop():
                        return
                    done.append(copy_one(task, src, dst, options, limiter, index))
        except DestinationFull as exc:
            full.append(exc)
        except BaseException as exc:  # a connector that cannot even open: surface it
            errors.append(exc)
        finally:
            with lock:
                results.extend(done)
            for conn in opened:
                conn.close()

    if threads == 1:
        work(first)
    else:
        pool = [threading.Thread(target=work, args=(first if i == 0 else [],), daemon=True)
                for i in range(threads)]  # fmt: skip
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    if full:
        raise Halted(full[0], results)
    if errors and not results:
        raise errors[0]
    return results
