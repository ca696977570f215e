"""Changes at a watched source, coalesced: a burst of events on one path (a save that
creates, writes and renames, an editor's many writes) becomes one change, applied once
the path has been quiet for a short window.

Rules: created then deleted cancels out; deleted then created is a modification; created
then modified stays created; anything then deleted is deleted; a move keeps from -> to
(a file created or modified just before its move becomes created at its new name, and
the old name deleted). Plain Python, no Django.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from migrator.storage.base import Change, Watch, WatchError

__all__ = ["Change", "Coalescer", "Watch", "WatchError"]

WINDOW_SECONDS = 0.15  # quiet time before a path's change is applied
MAX_WAIT_SECONDS = 1.0  # a path written to without pause is applied this often anyway


@dataclass(slots=True)
class _Pending:
    change: Change
    first: float
    last: float


class Coalescer:
    """Collects changes by path; `due()` hands out those quiet for `window` seconds."""

    def __init__(self, window: float = WINDOW_SECONDS, max_wait: float = MAX_WAIT_SECONDS):
        self.window, self.max_wait = window, max_wait
        self.pending: dict[str, _Pending] = {}  # by the path the change leaves in place

    def __len__(self) -> int:
        return len(self.pending)

    def oldest(self) -> float | None:
        """When the oldest change still waiting was first seen (monotonic), or None."""
        return min((p.first for p in self.pending.values()), default=None)

    def _put(self, change: Change, now: float, first: float | None = None) -> None:
        old = self.pending.get(change.path if change.kind != "moved" else change.new_path)
        key = change.new_path if change.kind == "moved" else change.path
        start = old.first if old else now
        self.pending[key] = _Pending(change, min(start, first or start), now)

    def add(self, change: Change, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        kind = change.kind
        if kind == "moved":
            if not change.new_path:  # left the watched tree
                self.add(Change(change.path, "deleted", is_dir=change.is_dir), now)
                return
            if not change.path:  # came in from outside it
                self.add(Change(change.new_path, "created", is_dir=change.is_dir), now)
                return
            before = self.pending.pop(change.path, None)
            if before is not None and before.change.kind in ("created", "modified", "moved"):
                # its content was never applied under the old name: new at the new name
                if before.change.kind == "created":
                    pass  # nothing at the destination under the old name
                elif before.change.kind == "moved":
                    if before.change.path != change.new_path:  # a->b->c: one move a->c
                        self._put(Change(before.change.path, "moved", change.new_path,
                                         change.is_dir), now, before.first)  # fmt: skip
                    return
                else:
                    self._put(Change(change.path, "deleted", is_dir=change.is_dir), now)
                self._put(Change(change.new_path, "created", is_dir=change.is_dir), now)
                return
            self.pending.pop(change.new_path, None)  # replaced by what moved there
            self._put(change, now)
            return
        before = self.pending.get(change.path)
        if before is None:
            self._put(change, now)
            return
        was = before.change.kind
        if kind == "deleted":
            if was == "created":
                del self.pending[change.path]  # never applied: nothing to undo
                return
            if was == "moved":  # moved here then deleted: the old name is gone too
                del self.pending[change.path]
                self._put(Change(before.change.path, "deleted", is_dir=change.is_dir), now)
                return
            self._put(change, now)
            return
        if kind == "created" and was == "deleted":
            self._put(Change(change.path, "modified", is_dir=change.is_dir), now)
            return
        if was in ("created", "moved"):
            if was == "moved" and kind == "modified":  # moved and then written: both
                self._put(Change(before.change.path, "deleted", is_dir=change.is_dir), now)
                self.pending[change.path] = _Pending(
                    Change(change.path, "created", is_dir=change.is_dir), before.first, now
                )
                return
            before.last = now
            return
        self._put(change, now)

    def due(self, now: float | None = None) -> list[Change]:
        """The changes whose path has been quiet for the window (or waited max_wait),
        in the order they were first seen; they leave the coalescer."""
        now = time.monotonic() if now is None else now
        ready = [
            (p.first, key)
            for key, p in self.pending.items()
            if now - p.last >= self.window or now - p.first >= self.max_wait
        ]
        ready.sort()
        return [self.pending.pop(key).change for _, key in ready]

    def drain(self) -> list[Change]:
        """Everything still waiting, at once (the watch is closing)."""
        return self.due(float("inf"))
