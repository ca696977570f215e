"""Transfer windows on the Django side: a job's schedules (its own and its agent pool's),
whether its batches may be leased now, what the pages say while it waits, and the
bandwidth bucket all its workers share. The grid logic is migrator.engine.windows."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q, Subquery, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from migrator.engine.windows import (
    Schedule,
    grid_check,
    limit_at,
    next_opening,
    parse_schedule,
    schedule_text,
    zone_of,
)

from .choices import BatchState
from .models import AgentPool, BandwidthBucket, Batch, MigrationJob, TransferWindow

RATE_RECHECK_SECONDS = 5.0  # how long a worker keeps the window's limit before asking again
CHUNK_MIN, CHUNK_MAX = 16 * 1024, 1024 * 1024  # bytes a worker takes from the shared bucket


def now() -> datetime:
    """The time windows are judged at: settings.MIGRATOR_WINDOW_NOW (an ISO time, for
    tests that move across hours without waiting for them), else the real time."""
    fixed = getattr(settings, "MIGRATOR_WINDOW_NOW", None)
    return parse_datetime(fixed) if fixed else timezone.now()


def _schedule(window: TransferWindow) -> Schedule:
    return Schedule(window.grid, window.zone)


def _windows_of(job_ids: Iterable[int]) -> dict[int, list[TransferWindow]]:
    """Each job's windows (its own, its pool's), in two queries at most."""
    ids = list(job_ids)
    found: dict[int, list[TransferWindow]] = {pk: [] for pk in ids}
    if not ids:
        return found
    pools = dict(
        MigrationJob.objects.filter(pk__in=ids, agent_pool__isnull=False).values_list(
            "pk", "agent_pool_id"
        )
    )
    rows = TransferWindow.objects.filter(Q(job_id__in=ids) | Q(pool_id__in=set(pools.values())))
    for w in rows:
        if w.job_id is not None:
            found[w.job_id].append(w)
        else:
            found.update({j: [*found[j], w] for j, p in pools.items() if p == w.pool_id})
    return found


@dataclass(frozen=True)
class WindowState:
    open: bool
    limit: int | None  # bytes/s the window allows now (None: no limit; 0: closed)
    opens_at: datetime | None  # when closed: the next opening (None: none this week)
    zone: str  # the zone the pages show times in (the job's window's, else the pool's)

    def waiting_text(self) -> str:
        if self.open:
            return ""
        if self.opens_at is None:
            return "waiting for window (no open hour in the coming week)"
        local = self.opens_at.astimezone(zone_of(self.zone))
        return f"waiting for window until {local:%a %d %b %H:%M} ({self.zone})"


OPEN = WindowState(open=True, limit=None, opens_at=None, zone="UTC")


def _state(windows: list[TransferWindow], at: datetime) -> WindowState:
    if not windows:
        return OPEN
    schedules = [_schedule(w) for w in windows]
    limit = limit_at(schedules, at)
    zone = sorted(windows, key=lambda w: w.job_id is None)[0].zone
    if limit == 0:
        return WindowState(False, 0, next_opening(schedules, at), zone)
    return WindowState(True, limit, None, zone)


def job_window(*, job_id: int, at: datetime | None = None) -> WindowState:
    """Whether the job may copy now, at what rate, and when it opens if not."""
    return _state(_windows_of([job_id])[job_id], at or now())


def jobs_closed(*, job_ids: Iterable[int]) -> set[int]:
    """The jobs among `job_ids` outside their transfer window now."""
    at = now()
    return {pk for pk, ws in _windows_of(job_ids).items() if ws and not _state(ws, at).open}


def batch_closed(*, batch_id: int) -> bool:
    """Whether the batch's job is outside its transfer window now (one query when the job
    and its pool have no window)."""
    job_id = Batch.objects.filter(pk=batch_id).values("job_id")
    pool_id = MigrationJob.objects.filter(pk=Subquery(job_id)).values("agent_pool_id")
    windows = list(
        TransferWindow.objects.filter(Q(job_id=Subquery(job_id)) | Q(pool_id=Subquery(pool_id)))
    )
    return bool(windows) and not _state(windows, now()).open


def job_waiting(*, job: MigrationJob) -> str:
    """'waiting for window until …' while the job is outside its window, else '' (one
    query: the job's window and its pool's)."""
    mine = Q(job_id=job.pk)
    if job.agent_pool_id is not None:
        mine |= Q(pool_id=job.agent_pool_id)
    return _state(list(TransferWindow.objects.filter(mine)), now()).waiting_text()


def waiting_texts(*, job_ids: Iterable[int]) -> dict[int, str]:
    """'waiting for window until …' for each job outside its window (pages, API)."""
    at = now()
    texts = {pk: _state(ws, at).waiting_text() for pk, ws in _windows_of(job_ids).items() if ws}
    return {pk: text for pk, text in texts.items() if text}


def job_rate(*, job_id: int, bwlimit: int | None) -> int | None:
    """The job's limit now: its own `bwlimit` and its window's, the lower wins (a window
    that closed while a batch is in flight lets that batch finish at `bwlimit`)."""
    limit = job_window(job_id=job_id).limit
    limits = [x for x in (bwlimit, limit) if x]
    return min(limits) if limits else None


def agent_share(*, job: MigrationJob) -> int | None:
    """The bytes/s an agent's batch may use: the job's limit now, split between the job's
    batches being copied now (this one included). Fixed for the batch's life: agents
    cannot reach the shared bucket."""
    rate = job_rate(job_id=job.pk, bwlimit=job.bwlimit)
    if not rate:
        return None
    held = Batch.objects.filter(
        job_id=job.pk, state=BatchState.LEASED, lease_expires__gte=timezone.now()
    ).count()
    return max(1, rate // max(1, held))


def job_has_window(*, job_id: int) -> bool:
    return any(_windows_of([job_id])[job_id])


# --- editing ---------------------------------------------------------------------------------


def window_text(owner: MigrationJob | AgentPool) -> tuple[str, str]:
    """(schedule text, zone) of a job's or pool's window; ('', 'UTC') when it has none."""
    window = TransferWindow.objects.filter(**_owner(owner)).first()
    return (schedule_text(window.grid), window.zone) if window else ("", "UTC")


def _owner(owner: MigrationJob | AgentPool) -> dict:
    return {"job": owner} if isinstance(owner, MigrationJob) else {"pool": owner}


def transfer_window_set(
    *, owner: MigrationJob | AgentPool, text: str | None = None, grid=None, zone: str = "UTC"
) -> TransferWindow | None:
    """Set the window of a job or an agent pool from the text form (`mon-fri 08-18
    10MB/s; sat,sun closed`) or a grid; empty text and no grid: no window (always open).
    ValueError, in words, for bad input. Batches held back by a window that is now open
    are sent again by the reaper (leases_reap) within its minute."""
    zone = (zone or "UTC").strip()
    zone_of(zone)
    if grid is None:
        if not (text or "").strip():
            TransferWindow.objects.filter(**_owner(owner)).delete()
            return None
        grid = parse_schedule(text or "")
    grid = grid_check(grid)
    window, _ = TransferWindow.objects.update_or_create(
        **_owner(owner), defaults={"grid": grid, "zone": zone}
    )
    return window


# --- the bandwidth all the job's workers share -----------------------------------------------


class SharedBucket:
    """The job's limit shared by every worker (migrator.engine.streams.SharedRate). What
    the batch reads is owed; once the debt reaches about an eighth of a second of the line
    (16 KiB to 1 MiB), it is paid: the next `debt / rate` seconds of the job's line are
    reserved in the database (one UPDATE and one SELECT in a transaction, so workers on any
    machine queue behind each other) and the batch sleeps until they have passed. What is
    still owed at close() is reserved too, so nothing read goes unpaid. The rate is the
    job's now (bwlimit and window, the lower), looked up again every few seconds. The
    database work runs on one thread of its own, whose connection close() shuts."""

    def __init__(self, job_id: int, bwlimit: int | None) -> None:
        self.job_id, self.bwlimit = job_id, bwlimit
        self._rate: int | None = None
        self._rate_at = float("-inf")
        self._debt = 0
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bucket-{job_id}")
        self._lock = threading.Lock()

    def _on_db(self, fn, *args):
        """fn(*args) on the bucket's thread; _AWAY when the database is away (restarted,
        failed over): the copy must not fail for its pacing, so the caller paces alone
        until the database answers again (each worker then keeps to the whole limit)."""
        try:
            return self._db.submit(fn, *args).result()
        except DatabaseError:
            self._db.submit(_forget_connection).result()
            return _AWAY

    def _current_rate(self) -> int | None:
        if time.monotonic() - self._rate_at >= RATE_RECHECK_SECONDS:
            rate = self._on_db(lambda: job_rate(job_id=self.job_id, bwlimit=self.bwlimit))
            if rate is not _AWAY:
                self._rate = rate
            elif self._rate is None:
                self._rate = self.bwlimit  # never asked yet: the job's own limit
            self._rate_at = time.monotonic()
        return self._rate

    def _reserve(self, seconds: float) -> float:
        with transaction.atomic():
            t = time.time()
            bucket = BandwidthBucket.objects.filter(job_id=self.job_id)
            if not bucket.update(next_at=Greatest(F("next_at"), Value(t)) + Value(seconds)):
                BandwidthBucket.objects.get_or_create(job_id=self.job_id)
                bucket.update(next_at=Greatest(F("next_at"), Value(t)) + Value(seconds))
            return bucket.values_list("next_at", flat=True).get()

    def take(self, nbytes: int) -> int:
        with self._lock:
            rate = self._current_rate()
            if not rate:
                self._debt = 0
                return nbytes
            self._debt += nbytes
            if self._debt < min(CHUNK_MAX, max(CHUNK_MIN, rate // 8)):
                return nbytes
            seconds = self._debt / rate
            until = self._on_db(self._reserve, seconds)
            if until is _AWAY:
                until = time.time() + seconds
            self._debt = 0
            wait = until - time.time()
            if wait > 0:
                time.sleep(wait)
        return nbytes

    def __enter__(self) -> SharedBucket:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Reserve what is still owed (the next batch waits for it) and let go of the
        database thread."""
        with self._lock:
            if self._debt and self._rate:
                self._on_db(self._reserve, self._debt / self._rate)
            self._debt = 0
        self._db.submit(_forget_connection).result()  # the thread's own connection
        self._db.shutdown()


_AWAY = object()  # the database did not answer


def _forget_connection() -> None:
    """Close this thread's connection, broken or not: the next query opens a new one."""
    try:
        connection.close()
    except DatabaseError:
        pass


def shared_bucket_for(*, job: MigrationJob) -> SharedBucket | None:
    """The bucket a worker's batch takes its bandwidth from; None when the job has no
    limit and no window (nothing to share)."""
    if not job.bwlimit and not job_has_window(job_id=job.pk):
        return None
    return SharedBucket(job.pk, job.bwlimit)
