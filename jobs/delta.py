"""Catch-up passes in the database: the source side at scan (each chunk's rows against
the last pass's manifest, one query per chunk) and the destination side after the scan
(a flat listing of the destination against this pass's rows). The decisions themselves
are the engine's (migrator.engine.delta); this module reads and writes rows for it."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from itertools import chain
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Min
from django.utils import timezone

from migrator.engine import delta as engine_delta
from migrator.engine.deletes import Gone
from migrator.engine.delta import Decision, Mine, Prior
from migrator.storage import Capabilities, StorageError, capabilities_of

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
from .manifest import unchanged_marked
from .models import Deletion, FileItem, MigrationJob, Pass, Tally
from .options import sanitizer_for

log = logging.getLogger(__name__)

TABLE = FileItem._meta.db_table  # queries below put in only this and placeholders (S608)
DEFAULT_POLICY = engine_delta.SOURCE_WINS
_PRIOR_COLUMNS = (
    "source_path, kind, dest_path, dest_key, size, mtime_ns, md5, crc32c, state, reason"
)
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
        # the destination is listed after the scan: no batch is made before that check
        # (a changed file copied first would overwrite a change made at the destination
        # unseen); destination_check makes them all
        self.later = False
        if self.prior is not None:
            job = MigrationJob.objects.select_related("source", "destination").get(
                pk=job_pass.job_id
            )
            self.later = listed_by_server(job)
            self.src_caps = capabilities_of(job.source.url)
            self.dst_caps = capabilities_of(job.destination.url)
            # a file the job wrote beside a destination's own under a keep-both name
            self.beside = job.on_exists == OnExists.KEEP_BOTH or (
                conflicts_policy(job.options) == engine_delta.KEEP_BOTH
            )

    def classify(self, rows: Sequence) -> tuple[int, int]:
        """Mark the chunk's pending rows new, changed or unchanged (an unchanged row
        takes the last pass's destination and hashes: what we wrote), before they are
        inserted. Returns (new files, changed files)."""
        if self.prior is None:
            return 0, 0
        pending = [r for r in rows if r.state == ItemState.PENDING]
        if pending:
            # the database finds the unchanged rows (in C, without the GIL); the rest,
            # new, changed, kept or written beside, are looked up by path below
            precision = max(self.src_caps.mtime_precision_ns, self.dst_caps.mtime_precision_ns, 1)
            pending = unchanged_marked(pending, self.prior.pk, precision)
        if not pending:
            return 0, 0
        priors = _priors(self.prior, [r.source_path for r in pending])
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

    def __init__(
        self,
        job_pass: Pass,
        prior: Pass,
        token: str,
        agent: bool,
        key: Callable[[str], str] = str,
        beside: bool = False,
    ) -> None:
        self.job_pass, self.prior, self.token, self.agent = job_pass, prior, token, agent
        self.key, self.beside = key, beside
        self.counts: Counter[str] = Counter()
        self._renewed = float("-inf")

    # "NOT (dest_key = '')" as the partial index item_dest_unique_per_pass says it:
    # SQLite uses that index only for the very same term ("!=" scanned the whole pass)
    def rows_by_key(self, keys: Sequence[str]) -> dict[str, Mine]:
        keys = [k for k in keys if k]
        if not keys:
            return {}
        columns = "dest_key, id, state, dest_path, size, mtime_ns, md5, crc32c"
        where = "job_pass_id = %s AND NOT (dest_key = '') AND kind = 'file'"
        if connection.vendor == "sqlite":
            # one JSON text for the chunk, on the raw connection ("?" marks): fetching
            # 1,000 rows one by one cost ~3 µs a row (bench/RESULTS.md, catch-up)
            raw = connection.connection.cursor()
            try:
                raw.execute(
                    f"SELECT json_group_array(json_array({columns})) FROM {TABLE} "  # noqa: S608
                    f"WHERE {where.replace('%s', '?')} "
                    f"AND dest_key IN ({','.join('?' * len(keys))})",
                    [self.job_pass.pk, *keys],
                )
                found = json.loads(raw.fetchone()[0] or "[]")
            finally:
                raw.close()
            make = tuple.__new__  # a Mine from its fields, without Mine()'s call
            return {r[0]: make(Mine, r[1:]) for r in found}
        key_in, params = _in("dest_key", keys)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {columns} FROM {TABLE} WHERE {where} AND {key_in}",  # noqa: S608
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
            with connection.cursor() as cursor:  # still unchanged, or still as scanned:
                cursor.execute(  # decided once
                    f"SELECT id, size, state FROM {TABLE} WHERE (state = 'unchanged' OR "  # noqa: S608
                    f"(state = 'pending' AND change IN ('new', 'changed'))) AND {where}",
                    params,
                )
                found = cursor.fetchall()
            sizes = {pk: size for pk, size, _ in found}
            was_pending = {pk for pk, _, state in found if state == ItemState.PENDING}
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
            # unchanged -> pending or excluded; pending (changed at the source, judged
            # against what we wrote) -> excluded, or still pending. No batch here: the
            # check makes every batch of the pass when it is done (batches_after_check)
            to_pending = [d for d in decisions if d.state == ItemState.PENDING]
            excluded = len(decisions) - len(to_pending)
            unchanged = sum(d.pk not in was_pending for d in decisions)
            pending = sum(d.pk not in was_pending for d in to_pending) - sum(
                d.pk in was_pending for d in decisions if d.state == ItemState.EXCLUDED
            )
            conflicts = sum(d.change == Change.CONFLICT for d in decisions)
            # bytes_done counts what needs no copy: a row to copy again leaves it, a row
            # no longer copied (the destination won) joins it
            to_copy = sum(sizes[d.pk] for d in to_pending if d.pk not in was_pending)
            not_copied = sum(
                sizes[d.pk] for d in decisions if d.pk in was_pending and d.state != "pending"
            )
            moved_bytes = to_copy - not_copied
            updates: dict[str, Any] = {
                "unchanged": F("unchanged") - unchanged,
                "pending": F("pending") + pending,
                "excluded": F("excluded") + excluded,
                "conflicts": F("conflicts") + conflicts,
                "bytes_done": F("bytes_done") - moved_bytes,
            }
            # a keep-both name recorded as gone earlier in this check (the last version
            # of the source, written beside in the same second) is written again: not gone
            beside = [d.dest_path for d in decisions if d.dest_path]
            if beside:
                gone = Deletion.objects.filter(job_pass_id=job_pass.pk, dest_path__in=beside)
                ours = gone.filter(ours=True, kind=ItemKind.FILE).count()
                gone.delete()
                if ours:
                    updates["deleted_at_source"] = F("deleted_at_source") - ours
            Pass.objects.filter(pk=job_pass.pk).update(**updates)
            Tally.objects.create(  # for the pass-end accounting check (issue 16)
                job_pass_id=job_pass.pk, unchanged=-unchanged, pending=pending,
                excluded=excluded, unit="catch-up",
            )  # fmt: skip
            self.counts["conflicts"] += conflicts
            self.counts["missing"] += sum(d.change == Change.MISSING for d in decisions)
            self.counts["excluded"] += excluded

    def prior_written(self, keys: Sequence[str]) -> dict[str, Mine]:
        keys = [k for k in keys if k]
        if not keys:
            return {}
        where, params = _in("dest_key", keys)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT dest_key, id, state, dest_path, size, mtime_ns, md5, crc32c "  # noqa: S608
                f"FROM {TABLE} WHERE job_pass_id = %s AND NOT (dest_key = '') AND kind = 'file' "
                "AND (state IN ('copied', 'unchanged') OR (state = 'excluded' AND reason = %s)) "
                f"AND {where}",
                [self.prior.pk, Reason.DESTINATION_CHANGED.value, *params],
            )
            return {k: Mine(*rest) for k, *rest in cursor.fetchall()}

    def kept_versions(self) -> dict[str, str]:
        """The destination's own versions kept by keep_both: the planned paths of the
        files this pass or the last wrote under a keep-both name, and what the last pass
        recorded as kept so (so they stay kept after the source file is gone)."""
        key = self.key
        kept = {
            key(path): ""
            for path in Deletion.objects.filter(
                job_pass_id=self.prior.pk, reason=engine_delta.CONFLICT_KEPT
            ).values_list("dest_path", flat=True)
        }
        # only a job that keeps both writes such names; LIKE reads the two passes' rows
        if self.beside:
            rows = FileItem.objects.filter(
                job_pass_id__in=(self.prior.pk, self.job_pass.pk),
                kind=ItemKind.FILE,
                dest_path__contains=" (source ",
            ).values_list("dest_path", "mtime_ns")
            for beside, mtime_ns in rows.iterator(chunk_size=2000):
                if planned := engine_delta.planned_of(beside, mtime_ns):
                    kept[key(planned)] = beside
        return kept

    def gone(self, items: Sequence[Gone], kept: Mapping[str, str]) -> None:
        self.counts["gone"] += len(items) - len(kept)
        self.counts["kept"] += len(kept)
        deletions.gone_record(job_pass=self.job_pass, items=items, kept=kept)

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


def batches_after_check(job_pass: Pass, agent: bool) -> int:
    """The batches of a pass whose destination was checked: every pending row, in keyset
    pages (the scan made none, so that nothing was copied before the check). Called in
    the transaction that marks the pass checked; returns how many."""
    made, after = [], 0
    while True:
        page = list(
            FileItem.objects.filter(job_pass_id=job_pass.pk, state=ItemState.PENDING, id__gt=after)
            .order_by("id")
            .values_list("id", "size")[:5000]
        )
        if not page:
            break
        made += services.batches_create(
            job_pass=job_pass, pending=[_Pending(pk, size) for pk, size in page]
        )
        after = page[-1][0]
    if made:
        Pass.objects.filter(pk=job_pass.pk).update(batches_total=F("batches_total") + len(made))
        state = MigrationJob.objects.values_list("state", flat=True).get(pk=job_pass.job_id)
        if state != JobState.PAUSED and not agent:  # agents poll for batches
            for batch in made:
                enqueue("jobs.tasks.copy_batch", batch.pk)
    return len(made)


def listed_by_server(job: MigrationJob) -> bool:
    """A catch-up pass of `job` lists its destination from the server (a destination
    behind an agent, other than a bucket, is not listed)."""
    return job.agent_pool_id is None or job.destination.kind == "gs"


def check_due(job_pass: Pass) -> bool:
    """True when `job_pass` is a catch-up pass whose destination is still to be listed
    (by destination_check)."""
    from .selectors import pass_prior

    if job_pass.kind != PassKind.COPY or job_pass.delta_checked:
        return False
    if pass_prior(job_pass) is None:
        return False
    job = MigrationJob.objects.select_related("destination").get(pk=job_pass.job_id)
    return listed_by_server(job)


CHECK_TOKEN = "check:"  # noqa: S105 - a lease's prefix


def check_lease(*, job_pass: Pass, lease: str) -> str | None:
    """Hand an agent's scan lease to the server's destination check (jobs.tasks.
    delta_check): the new lease's token, "" when the check holds it already (the agent
    posted its scan done again), None when the agent's lease was lost."""
    token = f"{CHECK_TOKEN}{secrets.token_hex(8)}"
    expires = timezone.now() + timedelta(seconds=settings.MIGRATOR_LEASE_SECONDS)
    if lease and Pass.objects.filter(
        pk=job_pass.pk, scan_lease_owner=lease, state=PassState.RUNNING, scan_finished=False
    ).update(scan_lease_owner=token, scan_lease_expires=expires):
        return token
    held = Pass.objects.filter(
        pk=job_pass.pk,
        scan_lease_owner__startswith=CHECK_TOKEN,
        scan_lease_expires__gt=timezone.now(),
    ).exists()
    return "" if held else None


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
    if not listed_by_server(job):
        _checked(
            job_pass,
            f"Pass {job_pass.number}: the destination was not re-listed (it is behind the "
            "agent): objects changed or deleted there since the last pass are not detected.",
            EventLevel.WARNING,
        )
        return True
    policy = conflicts_policy(job.options)
    bounds = FileItem.objects.filter(job_pass_id=job_pass.pk).aggregate(lo=Min("id"), hi=Max("id"))
    key = sanitizer_for(job).collision_key
    beside = job.on_exists == OnExists.KEEP_BOTH or policy == engine_delta.KEEP_BOTH
    sink = _DbDeltaSink(job_pass, prior, token, agent, key, beside)
    try:
        with open_endpoint(job.destination) as destination:
            result = engine_delta.destination_check(
                chain.from_iterable(destination.listing(p) for p in _prefixes(job)),
                sink,
                ids=(bounds["lo"] or 0, bounds["hi"] or 0),
                policy=policy,
                key=key,
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
    kept = f", {c['kept']} kept beside the source's version (keep both)" if c["kept"] else ""
    with transaction.atomic():
        # still ours: the batches are made once, with the pass marked checked
        if (
            not Pass.objects.select_for_update()
            .filter(pk=job_pass.pk, scan_lease_owner=token, state=PassState.RUNNING)
            .exists()
        ):
            return False
        batches_after_check(job_pass, agent)
        _checked(
            job_pass,
            f"Pass {job_pass.number}: destination checked against the last pass: "
            f"{result.listed} object(s) listed, {c['conflicts']} changed at the destination "
            f"(conflicts, policy {policy.replace('_', ' ')}), {c['missing']} missing and "
            f"copied again, {c['gone']} with no source file in this pass{kept}.",
            EventLevel.WARNING if c["conflicts"] or c["missing"] else EventLevel.INFO,
        )
    return True
