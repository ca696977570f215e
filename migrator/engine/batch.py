"""Copy one leased batch: read, hash, write, verify (engine.copy) and, when the job
migrates them, read, translate and apply permissions per item (engine.permissions); then
hand the outcomes to the sink, which records them once while the lease holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from migrator.storage import Connector, StorageError

from .copy import CopyOptions, CopyTask, Halted, Outcome, State, copy_batch
from .permissions import BatchAcl, BatchPermissions, copy_with_permissions
from .sink import BatchSink

CONNECT_FAILED = "connect_failed"


def run_batch(
    tasks: Sequence[CopyTask],
    *,
    source: Callable[[], Connector],
    destination: Callable[[], Connector],
    options: CopyOptions,
    sink: BatchSink,
    permissions: BatchPermissions | None = None,
    only: bool = False,
) -> list[Outcome]:
    """Copy the batch and record it in the sink; returns the outcomes recorded.

    `source()`/`destination()` open a connector per thread. Items not reached because
    the sink said stop are left out (they stay pending, and the batch is handed out
    again). A connector that cannot be opened at all fails every item with its reason. A
    destination that is full keeps what was done, and the sink is told to halt the job
    (sink.halt) until there is space; the rest stay pending.
    `only` with no `permissions`: a permissions-only pass with nothing to apply, so the
    data is left as it is."""
    acl: BatchAcl | None = None
    halted: Halted | None = None
    try:
        if permissions is not None:
            outcomes, acl = copy_with_permissions(
                permissions, tasks, source, destination, options, sink, copy_batch
            )
        elif only:
            outcomes = [Outcome(t.item_id, State.UNCHANGED) for t in tasks]
        else:
            outcomes = copy_batch(tasks, source, destination, options)
    except Halted as exc:  # the items done are kept; the rest wait for space
        halted, outcomes = exc, exc.outcomes
    except (StorageError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, StorageError) else CONNECT_FAILED
        outcomes = [Outcome(t.item_id, State.FAILED, reason, str(exc)) for t in tasks]
    sink.batch_record(tasks, outcomes, acl)
    if halted is not None:
        sink.halt(halted.error)
    return outcomes
