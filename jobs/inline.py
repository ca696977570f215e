"""Run a job to the end from this process, with the same task functions the worker
cluster runs (used by the one-shot CLI and by tests that need no cluster).

With `processes`, copy batches run in that many child processes, as a worker cluster
runs them: copying small files is Python work, and one process holds one core (one GIL).
The scan and everything else stay on this process's threads. A child's own enqueued
tasks come back with its result and are dispatched here."""

from __future__ import annotations

import gc
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.utils.module_loading import import_string

from .choices import JOB_FINISHED, JobState
from .dispatch import set_inline

if TYPE_CHECKING:
    from .models import MigrationJob

# what runs in the child processes (see the module's docstring)
PROCESS_TASKS = {"jobs.tasks.copy_batch"}


class InlineRunner:
    """Installs itself as the dispatcher; tasks run on a local thread pool, and copy
    batches in `processes` child processes when that is not 0 (the database must then be
    one other processes can open: a file or a server, not SQLite in memory)."""

    def __init__(self, workers: int = 2, processes: int = 0) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers + 1, thread_name_prefix="inline")
        self.lock = threading.Lock()
        self.in_flight = 0
        self.errors: list[BaseException] = []
        self.finished = threading.Event()  # a task ended: wait() looks again at once
        self.processes = _process_pool(processes) if processes else None

    def __enter__(self) -> InlineRunner:
        set_inline(self.submit)
        return self

    def __exit__(self, *exc: object) -> None:
        set_inline(None)
        self.pool.shutdown(wait=True)
        if self.processes is not None:
            self.processes.shutdown(wait=True)

    def submit(self, func: str, args: tuple[Any, ...]) -> None:
        with self.lock:
            self.in_flight += 1
        if self.processes is not None and func in PROCESS_TASKS:
            try:
                future = self.processes.submit(_child_run, func, args)
                future.add_done_callback(lambda done: self._child_done(done, args))
                return
            except RuntimeError:  # a child died (BrokenProcessPool): threads from now on
                self.processes = None
        self.pool.submit(self._run, import_string(func), args)

    def _child_done(self, future: Future, args: tuple[Any, ...]) -> None:
        try:
            queued, error = future.result()
            for func, task_args in queued:  # before this task counts as done
                self.submit(func, task_args)
            if error:
                self.errors.append(RuntimeError(error))
        except BaseException as exc:  # the child died (killed, out of memory): its batch
            self.errors.append(exc)  # is handed out again now, not when its lease lapses
            from .services import batch_orphaned

            try:
                batch_orphaned(batch_id=args[0])
            finally:
                connection.close()
        finally:
            self._ended()

    def _run(self, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            target(*args)
        except BaseException as exc:  # kept and shown; the job's own state says the rest
            self.errors.append(exc)
        finally:
            connection.close()
            self._ended()

    def _ended(self) -> None:
        with self.lock:
            self.in_flight -= 1
        self.finished.set()

    def wait(
        self, job: MigrationJob, on_tick: Callable[[MigrationJob], None] | None = None
    ) -> MigrationJob:
        """Until the job is finished (or paused) and no task is running."""
        while True:
            self.finished.clear()  # before looking: an end after this wakes the wait below
            job.refresh_from_db()
            if on_tick:
                on_tick(job)
            with self.lock:
                idle = self.in_flight == 0
            if idle and (job.state in JOB_FINISHED or job.state == JobState.PAUSED):
                return job
            if idle and job.state not in (JobState.QUEUED,):
                # nothing runs and the job is not finished: a lost task; hand leases out
                from .services import leases_reap

                leases_reap()
            self.finished.wait(0.2)


def _process_pool(processes: int) -> ProcessPoolExecutor | None:
    """The copy processes, forked from this process, all of them now, while it holds no
    database connection and runs no other thread (migrator_run creates its runner first
    thing): each child starts at once with Django loaded. A process that already holds
    connections or threads must not be forked (they would be shared with the children):
    it copies on its own threads instead (None)."""
    from django.db import connections

    if threading.active_count() > 1 or any(
        conn.connection is not None for conn in connections.all(initialized_only=True)
    ):
        return None
    for func in PROCESS_TASKS:  # loaded once, here, not by each child
        import_string(func)
    gc.freeze()  # what is loaded now is kept for good: no collection walks (and copies) it
    pool = ProcessPoolExecutor(
        max_workers=processes, mp_context=multiprocessing.get_context("fork"),
        initializer=_child_setup,
    )  # fmt: skip
    pool.submit(_child_ready)  # with fork, the first task forks every process
    return pool


# --- in a child process ----------------------------------------------------------------

_queued: list[tuple[str, tuple[Any, ...]]] = []


def _child_setup() -> None:
    """A forked copy process: Django is set up already; what it enqueues is kept."""
    set_inline(lambda func, args: _queued.append((func, args)))


def _child_ready() -> None:
    """The first task of a forked pool: it makes the pool fork its processes."""


def _child_run(func: str, args: tuple[Any, ...]) -> tuple[list, str]:
    """Run one task; what it enqueued, and its error in words ('' when none)."""
    _queued.clear()
    try:
        import_string(func)(*args)
        error = ""
    except Exception as exc:  # returned as words: not every exception can be pickled
        error = f"{func}{args}: {exc!r}"
    return list(_queued), error
