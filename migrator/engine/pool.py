"""One pool of threads that each hold their own connector: a connector (an SMB
connection, an HTTP session) is never shared between threads, and opening one costs more
than most items take. Used for per-item work that is not a copy: reading and applying
permissions, checking what is at the destination."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, TypeVar

from migrator.storage import Connector

log = logging.getLogger(__name__)

T = TypeVar("T")
_STOP = object()


def connector_pool(
    items: Iterable[T],
    opener: Callable[[], Connector],
    work: Callable[[Connector, T], Any],
    threads: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> Iterator[tuple[T, Any]]:
    """(item, work(connector, item)) for each item, as they are done, from a few threads
    that each open their own connector. `items` may be a stream too long to hold (a
    database iterator): it is read in this thread into a bounded queue. Items not reached
    because `should_stop()` turned true are left out. A thread that cannot open its
    connector or whose work raises stops; the others carry on. When every thread stopped
    so, or one did and nothing was done, its error is raised."""
    if isinstance(items, Sized):
        if not len(items):
            return
        threads = min(threads, len(items))
    threads = max(1, threads)
    if threads == 1:  # no hand-off between threads: a small batch, or one thread asked
        yield from _inline(items, opener, work, should_stop)
        return
    todo: queue.Queue = queue.Queue(maxsize=threads * 64)
    done: queue.SimpleQueue = queue.SimpleQueue()
    errors: list[BaseException] = []
    count = 0

    def run() -> None:
        try:
            conn = opener()
        except BaseException as exc:
            errors.append(exc)
            return
        try:
            while (item := todo.get()) is not _STOP:
                if should_stop():
                    continue  # drain: the feeder is told by should_stop() too
                done.put((item, work(conn, item)))
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()

    def alive() -> bool:
        return any(t.is_alive() for t in pool)

    try:
        for item in items:
            if should_stop():
                break
            while True:
                while not done.empty():
                    count += 1
                    yield done.get()
                if not alive():
                    raise errors[0]
                try:
                    todo.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
    finally:
        for t in pool:
            while t.is_alive():
                try:
                    todo.put(_STOP, timeout=0.2)
                    break
                except queue.Full:
                    continue
        for t in pool:
            t.join()
    while not done.empty():
        count += 1
        yield done.get()
    if errors:
        if not count:
            raise errors[0]
        log.warning("a pool thread stopped early: %s", errors[0])


def _inline(
    items: Iterable[T],
    opener: Callable[[], Connector],
    work: Callable[[Connector, T], Any],
    should_stop: Callable[[], bool],
) -> Iterator[tuple[T, Any]]:
    conn = opener()
    try:
        for item in items:
            if should_stop():
                return
            yield item, work(conn, item)
    finally:
        conn.close()
