"""Catch-up passes in the database: the source side at scan (each chunk's rows against
the last pass's manifest, one query per chunk) and the destination side after the scan
(a flat listing of the destination against this pass's rows). The decisions themselves
are the engine's (migrator.engine.delta); this module reads and writes rows for it."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Min

from migrator.engine import delta as engine_delta
from migrator.engine.deletes import Gone
from migrator.engine.delta import Decision, Mine, Prior
from migrator.storage import Capabilities, StorageError, capabilities_of, path_key

from . import deletions, services
from .choices import (
    Change,
    EventLevel,
    ItemKind,
    ItemState,
    JobState,
    OnExists,
    PassKind,
    PassState,
    Reason,
)
from .connectors import open_endpoint
from .dispatch import enqueue
from .models import FileItem, MigrationJob, Pass
from .options import sanitizer_for

log = logging.getLogger(__name__)

TABLE = FileItem._meta.db_table  # queries below put in only this and placeholders (S608)
DEFAULT_POLICY = engine_delta.SOURCE_WINS
_PRIOR_COLUMNS = (
    "source_path, kind, dest_path, dest_key, size, mtime_ns, md5, crc32c, state, reason"
)
PRIOR_PAGE = 5000
KEPT_MESSAGE = "Changed at the destination in an earlier pass and kept there (destination wins)"


def conflicts_policy(options: dict | None) -> str:
    """The job's `options.conflicts`, checked (ValueError, in words, for a bad value)."""
    value = (options or {}).get("conflicts", DEFAULT_POLICY) or DEFAULT_POLICY
    if value not in engine_delta.POLICIES:
        allowed = ", ".join(engine_delta.POLICIES)
        raise ValueError(f"Unknown conflicts policy “{value}”: use one of {allowed}.")
    return value


class ScanDelta:
    """For one pass's scan: the last pass to compare with (None: not a catch-up pass)
    and the capabilities of both ends, found once."""

    def __init__(self, job_pass: Pass) -> None:
        from .selectors import pass_prior

        self.prior = pass_prior(job_pass) if job_pass.kind == PassKind.COPY else None
        self.src_caps = self.dst_caps = Capabilities()
        self.beside = False
        if self.prior is not None:
            job = MigrationJob.objects.select_related("source", "destination").get(
                pk=job_pass.job_id
            )
            self.src_caps = capabilities_of(job.source.url)
            self.dst_caps = capabilities_of(job.destination.url)
            # a file the job wrote beside a destination's own under a keep-both name
            self.beside = job.on_exists == OnExists.KEEP_BOTH or (
                conflicts_policy(job.options) == engine_delta.KEEP_BOTH
            )
        # the last pass's rows are read in id order (its walk order, as this scan's), a
        # page at a time, merged with the chunks; a row not met so is looked up by path
        self._after: int | None = None  # the last id read; None: where to start unknown
        self._ahead: list[tuple] = []  # read, not yet reached by the scan

    def _page(self) -> list:
        page = (
            f"SELECT id, {_PRIOR_COLUMNS} FROM {TABLE} WHERE job_pass_id = %s AND id > %s "  # noqa: S608
            "ORDER BY id LIMIT %s"
        )
        params = [self.prior.pk, self._after, PRIOR_PAGE]
        with connection.cursor() as cursor:
            if connection.vendor != "sqlite":
                cursor.execute(page, params)
                return cursor.fetchall()
            # one JSON text for the page: fetching row by row takes the GIL back for each
            # row and waits for it while the scan's planning thread holds it (measured 6x)
            columns = ", ".join(("id", *_PRIOR_COLUMNS.split(", ")))
            cursor.execute(
                f"SELECT json_group_array(json_array({columns})) FROM ({page})",  # noqa: S608
                params,
            )
            rows = json.loads(cursor.fetchone()[0] or "[]")
        rows.sort(key=itemgetter(0))  # an aggregate's order is not promised
        return rows

    def _start(self, first_path: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {TABLE} WHERE job_id = %s AND job_pass_id = %s "  # noqa: S608
                "AND source_path = %s LIMIT 1",
                [self.prior.job_id, self.prior.pk, first_path],
            )
            found = cursor.fetchone()
        if found is not None:
            self._after = found[0] - 1

    def priors(self, paths: list[str]) -> dict[str, tuple[str, Prior]]:
        """{source path: (kind, Prior)} for `paths` (a chunk's, in walk order)."""
        found: dict[str, tuple[str, Prior]] = {}
        if self._after is None:
            self._start(paths[0])
        if self._after is not None:
            last = path_key(paths[-1])
            while True:
                if not self._ahead:
                    self._ahead = self._page()
                    if not self._ahead:
                        break
                    self._after = self._ahead[-1][0]
                stop = len(self._ahead)
                if path_key(self._ahead[-1][1]) > last:  # else the whole page is reached
                    stop = next(i for i, r in enumerate(self._ahead) if path_key(r[1]) > last)
                make = tuple.__new__  # a Prior from its fields, without Prior()'s call
                for r in self._ahead[:stop]:
                    found[r[1]] = (r[2], make(Prior, r[3:]))
                if stop < len(self._ahead):
                    self._ahead = self._ahead[stop:]
                    break
                self._ahead = []
        missing = [p for p in paths if p not in found]
        if missing:  # new files, and rows the last pass wrote elsewhere in its order
            found.update(_priors(self.prior, missing))
        return found

    def classify(self, rows: Sequence) -> tuple[int, int]:
        """Mark the chunk's pending rows new, changed or unchanged (an unchanged row
        takes the last pass's destination and hashes: what we wrote), before they are
        inserted. Returns (new files, changed files)."""
        if self.prior is None:
            return 0, 0
        pending = [r for r in rows if r.state == ItemState.PENDING]
        if not pending:
            return 0, 0
        priors = self.priors([r.source_path for r in pending])
        classify, src_caps, dst_caps = engine_delta.classify, self.src_caps, self.dst_caps
        new = changed = 0
        file_kind, unchanged = ItemKind.FILE, ItemState.UNCHANGED
        for row in pending:
            found = priors.get(row.source_path)
            if found is not None and found[0] != row.kind:
                found = None  # a file where a folder was, or the other way round
            if row.kind != file_kind:  # a folder made by the last pass needs no batch
                if found is not None and found[1].state in engine_delta.WRITTEN_STATES:
                    row.state = unchanged
                else:
                    row.change = Change.NEW
                continue
            verdict = classify(row, found[1] if found else None, src_caps, dst_caps, self.beside)
            if verdict == engine_delta.UNCHANGED:
                p = found[1]
                row.state = unchanged
                row.dest_path, row.dest_key, row.md5, row.crc32c = (
                    p.dest_path, p.dest_key, p.md5, p.crc32c
                )  # fmt: skip
            elif verdict == engine_delta.KEPT:  # the destination won before: it still does
                p = found[1]
                row.state, row.reason, row.message = ItemState.EXCLUDED, p.reason, KEPT_MESSAGE
                row.dest_path, row.dest_key = p.dest_path, p.dest_key
            elif verdict == engine_delta.NEW:
                row.change = Change.NEW
                new += 1
            else:
                row.change = Change.CHANGED
                changed += 1
        return new, changed


def _priors(prior: Pass, paths: list[str]) -> dict[str, tuple[str, Prior]]:
    """{source path: (kind, Prior)} of the last pass's rows among `paths`: one query per
    chunk on item_job_path (job, source_path)."""
    out: dict[str, tuple[str, Prior]] = {}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {_PRIOR_COLUMNS} FROM {TABLE} WHERE job_id = %s AND job_pass_id = %s "  # noqa: S608
                "AND source_path = ANY(%s)",
                [prior.job_id, prior.pk, paths],
            )
            for src, kind, *rest in cursor.fetchall():
                out[src] = (kind, Prior(*rest))
        return out
    raw = connection.connection  # sqlite3: "?" marks, no query rewriting per row
    per = max(1, raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) - 2)
    cursor = raw.cursor()
    try:
        for start in range(0, len(paths), per):
            part = paths[start : start + per]
            marks = ",".join("?" * len(part))
            cursor.execute(
                f"SELECT {_PRIOR_COLUMNS} FROM {TABLE} WHERE job_id = ? AND job_pass_id = ? "  # noqa: S608
                f"AND source_path IN ({marks})",
                [prior.job_id, prior.pk, *part],
            )
            for src, kind, *rest in cursor.fetchall():
                out[src] = (kind, Prior(*rest))
    finally:
        cursor.close()
    return out


# --- the destination side ------------------------------------------------------------------


def _in(column: str, values: Sequence) -> tuple[str, list]:
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({','.join(['%s'] * len(values))})", list(values)


class _DbDeltaSink:
    """engine.delta.DeltaSink over this pass's manifest, under the scan's lease."""

    def __init__(self, job_pass: Pass, prior: Pass, token: str, agent: bool) -> None:
        self.job_pass, self.prior, self.token, self.agent = job_pass, prior, token, agent
        self.counts: Counter[str] = Counter()
        self._renewed = float("-inf")

    # "NOT (dest_key = '')" as the partial index item_dest_unique_per_pass says it:
    # SQLite uses that index only for the very same term ("!=" scanned the whole pass)
    def rows_by_key(self, keys: Sequence[str]) -> dict[str, Mine]:
        keys = [k for k in keys if k]
        if not keys:
            return {}
        where, params = _in("dest_key", keys)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT dest_key, id, state, dest_path, size, mtime_ns, md5, crc32c "  # noqa: S608
                f"FROM {TABLE} WHERE job_pass_id = %s AND NOT (dest_key = '') AND kind = 'file' "
                f"AND {where}",
                [self.job_pass.pk, *params],
            )
            return {k: Mine(*rest) for k, *rest in cursor.fetchall()}

    def prior_sources(self, keys: Sequence[str]) -> dict[str, str]:
        keys = [k for k in keys if k]
        if not keys:
            return {}
        where, params = _in("dest_key", keys)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT dest_key, source_path FROM {TABLE} WHERE job_pass_id = %s "  # noqa: S608
                f"AND NOT (dest_key = '') AND state IN ('copied', 'unchanged') AND {where}",
                [self.prior.pk, *params],
            )
            return dict(cursor.fetchall())

    def unchanged_count(self) -> int:
        return Pass.objects.values_list("unchanged", flat=True).get(pk=self.job_pass.pk)

    def unchanged_rows(self) -> Iterator[tuple[int, int]]:
        # keyset pages, each read whole: decisions are written between pages
        after = 0
        while True:
            page = list(
                FileItem.objects.filter(
                    job_pass_id=self.job_pass.pk,
                    state=ItemState.UNCHANGED,
                    kind=ItemKind.FILE,
                    id__gt=after,
                )
                .order_by("id")
                .values_list("id", "size")[:5000]
            )
            if not page:
                return
            yield from page
            after = page[-1][0]

    def decide(self, decisions: Sequence[Decision]) -> None:
        job_pass = self.job_pass
        with transaction.atomic():
            locked = (
                Pass.objects.select_for_update()
                .filter(pk=job_pass.pk, scan_lease_owner=self.token, state=PassState.RUNNING)
                .first()
            )
            if locked is None:
                return
            ids = [d.pk for d in decisions]
            where, params = _in("id", ids)
            with connection.cursor() as cursor:  # still unchanged: decided once
                cursor.execute(
                    f"SELECT id, size FROM {TABLE} WHERE state = 'unchanged' AND {where}",  # noqa: S608
                    params,
                )
                sizes = dict(cursor.fetchall())
            decisions = [d for d in decisions if d.pk in sizes]
            if not decisions:
                return
            reason = Reason.DESTINATION_CHANGED.value
            rows = [
                (
                    d.state,
                    reason if d.state == ItemState.EXCLUDED else "",
                    d.what if d.change == Change.CONFLICT else "",
                    d.change,
                    d.dest_path,
                    d.dest_key,
                    d.pk,
                )
                for d in decisions
            ]
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"UPDATE {TABLE} SET state = %s, reason = %s, message = %s, change = %s, "  # noqa: S608
                    "dest_path = COALESCE(NULLIF(%s, ''), dest_path), "
                    "dest_key = COALESCE(NULLIF(%s, ''), dest_key) WHERE id = %s",
                    rows,
                )
            pending = sorted(
                (d for d in decisions if d.state == ItemState.PENDING), key=lambda d: d.pk
            )
            excluded = len(decisions) - len(pending)
            conflicts = sum(d.change == Change.CONFLICT for d in decisions)
            moved_bytes = sum(sizes[d.pk] for d in pending)
            batches = services.batches_create(
                job_pass=job_pass, pending=[_Pending(d.pk, sizes[d.pk]) for d in pending]
            )
            updates: dict[str, Any] = {
                "unchanged": F("unchanged") - len(decisions),
                "pending": F("pending") + len(pending),
                "excluded": F("excluded") + excluded,
                "conflicts": F("conflicts") + conflicts,
                "bytes_done": F("bytes_done") - moved_bytes,
            }
            if batches:
                updates["batches_total"] = F("batches_total") + len(batches)
            Pass.objects.filter(pk=job_pass.pk).update(**updates)
            self.counts["conflicts"] += conflicts
            self.counts["missing"] += sum(d.change == Change.MISSING for d in decisions)
            self.counts["excluded"] += excluded
            state = MigrationJob.objects.values_list("state", flat=True).get(pk=job_pass.job_id)
            if state != JobState.PAUSED and not self.agent:  # agents poll for batches
                for batch in batches:
                    enqueue("jobs.tasks.copy_batch", batch.pk)

    def gone(self, items: Sequence[Gone]) -> None:
        self.counts["gone"] += len(items)
        deletions.gone_record(job_pass=self.job_pass, items=items)

    def lease_renew(self) -> bool:
        # asked per 1,000 listed objects: a write a few times per lease is enough
        now = time.monotonic()
        if now < self._renewed + min(5.0, settings.MIGRATOR_LEASE_SECONDS / 4):
            return True
        self._renewed = now
        return services.scan_lease_renew(pass_id=self.job_pass.pk, token=self.token)


class _Pending:
    __slots__ = ("pk", "size")

    def __init__(self, pk: int, size: int) -> None:
        self.pk, self.size = pk, size


def _prefixes(job: MigrationJob) -> list[str]:
    """Where the job's mappings write at the destination: only there is it listed (what
    else the destination holds is not the job's)."""
    prefixes = sorted({m.destination_prefix.strip("/") for m in job.mappings.all()} or {""})
    kept: list[str] = []
    for p in prefixes:  # sorted: a prefix comes before those under it
        if not any(p == k or p.startswith(f"{k}/") or not k for k in kept):
            kept.append(p)
    return kept


def _checked(job_pass: Pass, message: str, level: str = EventLevel.INFO) -> None:
    Pass.objects.filter(pk=job_pass.pk).update(delta_checked=True)
    services.event_add(job_id=job_pass.job_id, level=level, message=message)


def destination_check(*, job_pass: Pass, token: str) -> bool:
    """After a catch-up pass's scan, before its scan is done: list the destination and
    compare it with this pass's rows (engine.delta.destination_check). False when the
    scan's lease was lost or the destination could not be listed (the scan is then not
    done: it is handed out again). A pass that is not a catch-up pass passes at once."""
    from .selectors import pass_prior

    if job_pass.kind != PassKind.COPY:
        return True
    prior = pass_prior(job_pass)
    if prior is None:
        return True
    if Pass.objects.filter(pk=job_pass.pk, delta_checked=True).exists():
        return True  # a scan_done posted again
    job = MigrationJob.objects.select_related("source", "destination").get(pk=job_pass.job_id)
    agent = job.agent_pool_id is not None
    if agent and job.destination.kind != "gs":
        _checked(
            job_pass,
            f"Pass {job_pass.number}: the destination was not re-listed (it is behind the "
            "agent): objects changed or deleted there since the last pass are not detected.",
            EventLevel.WARNING,
        )
        return True
    policy = conflicts_policy(job.options)
    bounds = FileItem.objects.filter(job_pass_id=job_pass.pk).aggregate(lo=Min("id"), hi=Max("id"))
    sink = _DbDeltaSink(job_pass, prior, token, agent)
    try:
        with open_endpoint(job.destination) as destination:
            result = engine_delta.destination_check(
                chain.from_iterable(destination.listing(p) for p in _prefixes(job)),
                sink,
                ids=(bounds["lo"] or 0, bounds["hi"] or 0),
                policy=policy,
                key=sanitizer_for(job).collision_key,
                src_caps=capabilities_of(job.source.url),
                dst_caps=destination.capabilities,
            )
    except (StorageError, ValueError) as exc:
        services.event_add_detail(
            job_id=job.pk,
            level=EventLevel.WARNING,
            detail=f"The destination could not be listed for the catch-up check: {exc}. "
            "The check runs again when the scan is handed out again.",
            public="The destination could not be listed for the catch-up check; it is "
            "tried again shortly.",
        )
        services.scan_lease_renew(pass_id=job_pass.pk, token=token, seconds=10)
        return False
    if result.stopped:
        return False
    c = sink.counts
    _checked(
        job_pass,
        f"Pass {job_pass.number}: destination checked against the last pass: "
        f"{result.listed} object(s) listed, {c['conflicts']} changed at the destination "
        f"(conflicts, policy {policy.replace('_', ' ')}), {c['missing']} missing and copied "
        f"again, {c['gone']} with no source file in this pass.",
        EventLevel.WARNING if c["conflicts"] or c["missing"] else EventLevel.INFO,
    )
    return True
