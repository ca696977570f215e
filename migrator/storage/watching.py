"""A `Watch` fed from another thread (watchdog's observer, an SMB notify loop): the
producer puts Changes and WatchErrors in a queue, the consumer iterates, close() ends it."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator

from .base import Change, Watch, WatchError

_END = object()


class QueueWatch(Watch):
    def __init__(self, stop: Callable[[], None] | None = None) -> None:
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = stop
        self.closed = False

    def put(self, item: Change | WatchError) -> None:
        if not self.closed:
            self.queue.put(item)

    def __iter__(self) -> Iterator[Change | WatchError]:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            yield item

    def get(self, timeout: float) -> Change | WatchError | None:
        """The next change, or None after `timeout` seconds of quiet (or once closed)."""
        try:
            item = self.queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self.queue.put(_END)  # stays ended for the next call
            return None
        return item

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._stop is not None:
            self._stop()
        self.queue.put(_END)
