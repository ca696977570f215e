"""Idle links, kept per process for the next connector of the same account."""

from __future__ import annotations

import select
import threading
import time

from .link import _Link


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
