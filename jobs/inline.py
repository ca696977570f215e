"""Run a job to the end inside this process, with the same task functions the worker
cluster runs (used by the one-shot CLI and by tests that need no cluster)."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import connection

from .choices import JOB_FINISHED, JobState
from .dispatch import set_inline
from .models import MigrationJob


class InlineRunner:
    """Installs itself as the dispatcher; tasks run on a local thread pool."""

    def __init__(self, workers: int = 2) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers + 1, thread_name_prefix="inline")
        self.lock = threading.Lock()
        self.in_flight = 0
        self.errors: list[BaseException] = []
        self.finished = threading.Event()  # a task ended: wait() looks again at once

    def __enter__(self) -> InlineRunner:
        set_inline(self.submit)
        return self

    def __exit__(self, *exc: object) -> None:
        set_inline(None)
        self.pool.shutdown(wait=True)

    def submit(self, func: str, args: tuple[Any, ...]) -> None:
        module, _, name = func.rpartition(".")
        target = getattr(importlib.import_module(module), name)
        with self.lock:
            self.in_flight += 1
        self.pool.submit(self._run, target, args)

    def _run(self, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            target(*args)
        except BaseException as exc:  # kept and shown; the job's own state says the rest
            self.errors.append(exc)
        finally:
            connection.close()
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
                from .execution import leases_reap

                leases_reap()
            self.finished.wait(0.2)
