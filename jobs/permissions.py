"""Permissions in a job (issue 8): options, the directory that resolves SIDs, ACLs read,
translated and applied around each batch's copy, the records and counters, the
permissions manifest, the assessment's SID figures, identity CSVs, permissions-only
passes and the customer's directory export.

The engine side is migrator.acl (no Django). This module is reached through small seams:
execution.batch_copy / _batch_record / pass_maybe_finish / pass_scan, services
(job options, dispatch), selectors.job_summary, the CLI and the reports.

Per batch: (1) read every item's security descriptor, (2) find the ACL record of each
distinct one in this pass, or resolve its SIDs (one batched directory call for all new
ones), map identities and store a new record, (3) fail the items a deny refuses, (4) copy
the rest (a permissions-only pass checks they are at the destination instead), (5) apply
each record's plan to the items that reached the destination and verify it. The item ->
record links and the counters are written with the batch's outcomes, in its transaction.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from migrator.acl import sd as sdmod
from migrator.acl.apply import (
    STORED_FIELDS,
    AclNotApplied,
    AclPlan,
    AclSurvey,
    LinesReader,
    apply_gcs,
    apply_smb,
    is_uniform_access_error,
    manifest_lines,
    manifest_path,
    plan_acl,
    sids_of,
    target_of,
    unresolved,
)
from migrator.acl.directory import DirectoryError, LdapDirectory
from migrator.acl.mapping import (
    USER_RULES,
    Identity,
    IdentityMap,
    MappingCSVError,
    MappingRules,
    parse_mapping_csv,
)
from migrator.acl.model import DenyPolicy, Principal, canonical_sid, is_sid
from migrator.engine.copy import CopyOptions, CopyTask, Outcome, State
from migrator.storage import Connector, Entry, NotFound, StorageError, capabilities_of

from .choices import EventLevel, ItemState, PassKind, Reason
from .connectors import open_endpoint
from .models import (
    AclRecord,
    DirectoryIdentity,
    Endpoint,
    Event,
    FileItem,
    IdentityOverride,
    MigrationJob,
    Pass,
)

log = logging.getLogger(__name__)

OPTION = "permissions"
UNIFORM_ACCESS_MESSAGE = (
    "The bucket has uniform bucket-level access: object ACLs cannot be set, so permissions "
    "are written to the permissions manifest only."
)
NO_ACL_SOURCE_MESSAGE = "The source has no ACLs to migrate: permissions are left out."
NO_DIRECTORY_MESSAGE = (
    "No directory is set for this job's source (neither on the endpoint nor the customer): "
    "domain SIDs cannot be resolved and are reported unresolved."
)


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PermissionOptions:
    """job.options["permissions"]: {"enabled": true, "deny_policy": "report"|"refuse",
    "user_rule": "upn"|"mail"|"sam", "domain": …, "group_domain": …, "everyone_domain": …}"""

    deny_policy: DenyPolicy = DenyPolicy.REPORT
    rules: MappingRules = field(default_factory=MappingRules)

    @classmethod
    def parse(cls, raw: Any) -> PermissionOptions | None:
        """None when permissions are off; ValueError, in words, for bad values."""
        if raw in (None, False, {}):
            return None
        if raw is True:
            raw = {}
        if not isinstance(raw, dict):
            raise ValueError('permissions must be an object such as {"enabled": true}')
        if not raw.get("enabled", True):
            return None
        known = {"enabled", "deny_policy", "user_rule", "domain", "group_domain",
                 "everyone_domain"}  # fmt: skip
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"unknown permissions option(s): {', '.join(unknown)}")
        policy = raw.get("deny_policy") or DenyPolicy.REPORT
        if policy not in DenyPolicy.__members__.values():
            raise ValueError(f"deny_policy must be report or refuse, not {policy!r}")
        user_rule = raw.get("user_rule") or "upn"
        if user_rule not in USER_RULES:
            raise ValueError(f"user_rule must be one of {', '.join(USER_RULES)}")
        rules = MappingRules(
            user_rule=user_rule,
            domain=raw.get("domain") or None,
            group_domain=raw.get("group_domain") or None,
            everyone_domain=raw.get("everyone_domain") or None,
        )
        return cls(DenyPolicy(policy), rules)


def options_of(job: MigrationJob) -> PermissionOptions | None:
    return PermissionOptions.parse((job.options or {}).get(OPTION))


def options_check(options: dict) -> None:
    """Raise ValueError, in words, for permissions options a job could not run with."""
    PermissionOptions.parse(options.get(OPTION))


def enabled(job: MigrationJob) -> bool:
    try:
        return options_of(job) is not None
    except ValueError:
        return False


def identity_map_for(job: MigrationJob, opts: PermissionOptions) -> IdentityMap:
    overrides = {o.source: Identity(o.target, o.type, "csv") for o in job.identity_overrides.all()}
    return IdentityMap(opts.rules, overrides)


# --- the directory ----------------------------------------------------------------------------


def directory_settings(job: MigrationJob) -> dict[str, Any] | None:
    """The source endpoint's own directory, else the customer's AD, else None."""
    source = job.source
    if source.directory_uri:
        return {
            "uri": source.directory_uri,
            "bind_dn": source.directory_bind_dn,
            "bind_password": source.get_directory_bind_password(),
            "base_dn": source.directory_base_dn,
        }
    customer = job.customer
    if customer.directory_uri and customer.directory_kind in ("", "ad"):
        return {
            "uri": customer.directory_uri,
            "bind_dn": customer.directory_bind_dn,
            "bind_password": customer.get_directory_bind_password()
            if customer.has_directory_bind_password
            else "",
            "base_dn": customer.directory_user_search_base,
            "start_tls": customer.directory_start_tls,
            "ca_file": customer.directory_ca_file,
        }
    return None


class NoDirectory:
    """The resolver of a job without a directory: well-known SIDs only."""

    searches = 0

    def resolve(self, sids: Iterable[str]) -> dict[str, Principal]:
        return {canonical_sid(s): unresolved(canonical_sid(s)) for s in sids}

    def find_account(self, name: str) -> None:
        return None

    def close(self) -> None:
        pass


_directories: OrderedDict[tuple[int, int], LdapDirectory | NoDirectory] = OrderedDict()
_directories_lock = threading.Lock()


def directory_for(job: MigrationJob, pass_id: int) -> LdapDirectory | NoDirectory:
    """One directory per pass and process: SIDs resolved by one batch are cached for the
    next (a pass sees the directory as it is when the pass runs)."""
    key = (job.pk, pass_id)
    with _directories_lock:
        found = _directories.get(key)
        if found is not None:
            _directories.move_to_end(key)
            return found
        conf = directory_settings(job)
        directory = LdapDirectory(**conf) if conf else NoDirectory()
        _directories[key] = directory
        while len(_directories) > 8:
            _, old = _directories.popitem(last=False)
            old.close()
        return directory


def directory_check(conf: dict[str, Any]) -> str:
    """Bind and read the domain's name; raise DirectoryError in words. For the CLI."""
    with LdapDirectory(**conf) as directory:
        return directory.domain_name


# --- helpers --------------------------------------------------------------------------------


def event_once(*, job_id: int, since, message: str, level: str = EventLevel.WARNING) -> None:
    """An event said once per pass (per job since `since`), however many batches meet it."""
    if not Event.objects.filter(job_id=job_id, message=message, created_at__gte=since).exists():
        Event.objects.create(job_id=job_id, level=level, message=message)


def _pool(
    items: list,
    opener: Callable[[], Connector],
    work: Callable[[Connector, Any], Any],
    threads: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[tuple[Any, Any]]:
    """(item, work(connector, item)) for each item, on a few threads that each open their
    own connector. Items not reached because should_stop() turned true are left out."""
    if not items:
        return []
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    results: list[tuple[Any, Any]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run() -> None:
        conn = None
        try:
            conn = opener()
            while not should_stop():
                try:
                    item = todo.get_nowait()
                except queue.Empty:
                    return
                result = work(conn, item)
                with lock:
                    results.append((item, result))
        except BaseException as exc:
            errors.append(exc)
        finally:
            if conn is not None:
                conn.close()

    count = max(1, min(threads, len(items)))
    if count == 1:
        run()
    else:
        pool = [threading.Thread(target=run, daemon=True) for _ in range(count)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    if errors and not results:
        raise errors[0]
    if errors:
        log.warning("permissions: a thread stopped early: %s", errors[0])
    return results


def _stream_pool(
    items: Iterable,
    opener: Callable[[], Connector],
    work: Callable[[Connector, Any], Any],
    threads: int,
) -> Iterator[tuple[Any, Any]]:
    """(item, work(connector, item)) as they come, for a stream of items too long to hold
    (a database iterator, read in this thread): a few threads with a connector each take
    items from a bounded queue; results are handed on as the items are fed."""
    todo: queue.Queue = queue.Queue(maxsize=threads * 64)
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop = object()
    cannot_open: list[BaseException] = []
    broke: list[BaseException] = []

    def run() -> None:
        try:
            conn = opener()
        except BaseException as exc:  # the others carry on; all failing is an error
            cannot_open.append(exc)
            return
        try:
            while (item := todo.get()) is not stop:
                done.put((item, work(conn, item)))
        except BaseException as exc:
            broke.append(exc)
        finally:
            conn.close()

    pool = [threading.Thread(target=run, daemon=True) for _ in range(max(1, threads))]
    for t in pool:
        t.start()

    def alive() -> bool:
        return len(cannot_open) + len(broke) < len(pool)

    try:
        for item in items:
            while True:
                while not done.empty():
                    yield done.get()
                if not alive():
                    raise (broke or cannot_open)[0]
                try:
                    todo.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
    finally:
        for t in pool:
            while t.is_alive():
                try:
                    todo.put(stop, timeout=0.2)
                    break
                except queue.Full:
                    continue
        for t in pool:
            t.join()
    while not done.empty():
        yield done.get()
    if broke:
        raise broke[0]


def _retrying(options: CopyOptions, op: Callable[[], Any]) -> Any:
    """op(), retried with backoff while it raises a transient StorageError."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return op()
        except StorageError as exc:
            if not exc.transient or attempt >= options.retry_attempts:
                raise
        time.sleep(options.backoff * (2 ** (attempt - 1)))


def acl_key(sd: sdmod.SecurityDescriptor, kind: str) -> str:
    """The ACL record's key: the descriptor's bytes and the kind of item."""
    return hashlib.sha256(sdmod.serialize(sd) + b"|" + kind.encode()).hexdigest()[:40]


def _source_has_acls(endpoint: Endpoint) -> bool:
    """What the connector of the endpoint's scheme declares (none is opened)."""
    try:
        return bool(capabilities_of(endpoint.url).acl)
    except ValueError:
        return False


# --- the batch ----------------------------------------------------------------------------


@dataclass
class BatchAcl:
    """What the permissions part of one batch did, recorded with its outcomes."""

    pass_id: int
    item_acl: dict[int, int] = field(default_factory=dict)  # item id -> AclRecord id
    flags: dict[int, tuple[bool, bool, bool]] = field(default_factory=dict)  # record id ->
    #                                         (narrowed, denied, unmapped)
    applied: set[int] = field(default_factory=set)  # item ids

    def record(self, outcomes: Iterable[Outcome]) -> None:
        """Link items to their records and add the counters: call inside the batch's
        recording transaction, after its lease was checked."""
        rows = []
        counts = {"acl_applied": 0, "acl_narrowed": 0, "acl_denied": 0, "acl_unmapped": 0}
        per_record: dict[int, int] = {}
        for outcome in outcomes:
            record_id = self.item_acl.get(outcome.item_id)
            if record_id is None:
                continue
            rows.append((record_id, outcome.item_id))
            per_record[record_id] = per_record.get(record_id, 0) + 1
            narrowed, denied, unmapped = self.flags[record_id]
            if outcome.state in (State.COPIED, State.UNCHANGED):
                counts["acl_applied"] += outcome.item_id in self.applied
                counts["acl_narrowed"] += narrowed
                counts["acl_denied"] += denied
                counts["acl_unmapped"] += unmapped
            elif outcome.reason == Reason.DENY_ACE:
                counts["acl_denied"] += 1
        if not rows:
            return
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {FileItem._meta.db_table} SET acl_id = %s WHERE id = %s", rows
            )
        Pass.objects.filter(pk=self.pass_id).update(
            **{name: F(name) + n for name, n in counts.items() if n}
        )
        for record_id, n in per_record.items():
            AclRecord.objects.filter(pk=record_id).update(items=F("items") + n)


CopyFn = Callable[..., list[Outcome]]


def batch_copy(
    *,
    job: MigrationJob,
    job_pass_id: int,
    tasks: list[CopyTask],
    source: Callable[[], Connector],
    destination: Callable[[], Connector],
    options: CopyOptions,
    copy: CopyFn,
) -> tuple[list[Outcome], BatchAcl | None]:
    """The batch's outcomes (see the module doc), and what to record for permissions
    (None when the job does not migrate them)."""
    pass_kind = Pass.objects.filter(pk=job_pass_id).values_list("kind", flat=True).first()
    only = pass_kind == PassKind.PERMISSIONS
    opts = options_of(job)
    if opts is None:
        if only:  # nothing to apply: leave the data as it is
            return [Outcome(t.item_id, State.UNCHANGED) for t in tasks], None
        return copy(tasks, source, destination, options), None
    started = Pass.objects.values_list("started_at", flat=True).get(pk=job_pass_id)
    if not _source_has_acls(job.source):
        event_once(job_id=job.pk, since=started, message=NO_ACL_SOURCE_MESSAGE)
        if only:
            return [Outcome(t.item_id, State.UNCHANGED) for t in tasks], None
        return copy(tasks, source, destination, options), None
    return _BatchRun(job, job_pass_id, started, opts, options, only).run(
        tasks, source, destination, copy
    )


_uniform: dict[tuple[int, int], bool] = {}
PLAN_FIELDS = (*STORED_FIELDS, "destination")


class _BatchRun:
    def __init__(self, job, pass_id, started, opts, options, only) -> None:
        self.job, self.pass_id, self.started = job, pass_id, started
        self.opts, self.options, self.only = opts, options, only
        self.target = target_of(job.destination.kind)
        self.acl = BatchAcl(pass_id)
        self.outcomes: dict[int, Outcome] = {}

    def fail(self, task: CopyTask, reason: str, message: str) -> None:
        self.outcomes[task.item_id] = Outcome(task.item_id, State.FAILED, reason, message[:2000])

    def run(self, tasks, source, destination, copy) -> tuple[list[Outcome], BatchAcl]:
        should_stop = self.options.should_stop
        threads = self.options.threads
        # 1. every item's descriptor
        read = _pool(tasks, source, self._read, threads, should_stop)
        if should_stop():
            return [], self.acl
        descriptors: dict[int, tuple[str, sdmod.SecurityDescriptor]] = {}
        for task, result in read:
            if isinstance(result, sdmod.SecurityDescriptor):
                descriptors[task.item_id] = (acl_key(result, task.kind), result)
            elif isinstance(result, StorageError):
                reason = "source_unavailable" if result.transient else Reason.ACL_FAILED
                self.fail(task, reason, f"cannot read its permissions: {result}")
            # None: vanished; the copy reports it
        # 2. the records of the distinct descriptors
        plans = self._plans(tasks, descriptors)
        # 3. refused by a deny entry
        for task in tasks:
            got = plans.get(task.item_id)
            if got is not None and got[1].refused:
                denies = "; ".join(d["entry"] for d in got[1].denied)
                self.fail(task, Reason.DENY_ACE, f"deny entries apply: {denies}")
        # 4. the data (or, permissions only: is it there?)
        todo = [t for t in tasks if t.item_id not in self.outcomes]
        if self.only:
            copied = [o for _, o in _pool(todo, destination, self._present, threads, should_stop)]
        else:
            copied = copy(todo, source, destination, self.options)
        for outcome in copied:
            self.outcomes[outcome.item_id] = outcome
        # 5. apply where the destination takes permissions, and check
        uniform = self._uniform_access(destination) if self.target == "gs" else False
        work = []
        for task in todo:
            outcome = self.outcomes.get(task.item_id)
            got = plans.get(task.item_id)
            if outcome is None or got is None:
                continue
            if outcome.state in (State.COPIED, State.UNCHANGED) and got[1].applies and not uniform:
                work.append((task, outcome, got[1]))
        for (task, outcome, _), result in _pool(work, destination, self._apply, threads):
            if result is True:
                self.acl.applied.add(task.item_id)
            elif result == "uniform":
                self._report_uniform()
            elif isinstance(result, Exception):
                outcome.state = State.FAILED
                outcome.reason = Reason.ACL_FAILED
                outcome.message = f"data copied, permissions not applied: {result}"[:2000]
            elif result is False:
                self.acl.applied.add(task.item_id)  # already as planned
        for task in tasks:
            got = plans.get(task.item_id)
            if got is not None and task.item_id in self.outcomes:
                self.acl.item_acl[task.item_id] = got[0]
        return list(self.outcomes.values()), self.acl

    # step 1

    def _read(self, conn: Connector, task: CopyTask):
        try:
            return _retrying(self.options, lambda: conn.read_acl(task.source_path))
        except NotFound:
            return None
        except StorageError as exc:
            return exc

    # step 2

    def _plans(
        self, tasks: list[CopyTask], descriptors: dict[int, tuple[str, sdmod.SecurityDescriptor]]
    ) -> dict[int, tuple[int, AclPlan]]:
        """{item id: (record id, plan)} for every item whose descriptor was read."""
        kinds = {t.item_id: t.kind for t in tasks}
        wanted: dict[str, tuple[sdmod.SecurityDescriptor, str]] = {}
        for item_id, (key, sd) in descriptors.items():
            wanted.setdefault(key, (sd, kinds[item_id]))
        records = self._records(wanted.keys())
        missing = {k: v for k, v in wanted.items() if k not in records}
        if missing:
            try:
                self._create(missing)
            except DirectoryError as exc:
                for task in tasks:
                    if task.item_id in descriptors and descriptors[task.item_id][0] in missing:
                        self.fail(task, Reason.DIRECTORY_UNAVAILABLE, f"SIDs not resolved: {exc}")
            records = self._records(wanted.keys())
        plans = {}
        for item_id, (key, _) in descriptors.items():
            if key in records:
                plans[item_id] = records[key]
        return plans

    def _records(self, keys: Iterable[str]) -> dict[str, tuple[int, AclPlan]]:
        found = {}
        rows = AclRecord.objects.filter(job_pass_id=self.pass_id, key__in=list(keys)).values(
            "pk", "key", *PLAN_FIELDS
        )
        for row in rows:
            plan = AclPlan.from_stored(row, self.target)
            found[row["key"]] = (row["pk"], plan)
            self.acl.flags[row["pk"]] = (
                bool(plan.narrowed),
                bool(plan.denied),
                bool(plan.unmapped),
            )
        return found

    def _create(self, missing: dict[str, tuple[sdmod.SecurityDescriptor, str]]) -> None:
        directory = directory_for(self.job, self.pass_id)
        if isinstance(directory, NoDirectory):
            event_once(job_id=self.job.pk, since=self.started, message=NO_DIRECTORY_MESSAGE)
        sids: set[str] = set()
        for sd, _ in missing.values():
            sids |= sids_of(sd)
        principals = directory.resolve(sids)  # one batched call for every new descriptor
        identities = identity_map_for(self.job, self.opts)
        sid_of = None
        if self.target == "smb" and identities.overrides:

            def sid_of(identity: Identity) -> str | None:
                found = directory.find_account(identity.target)
                return found.sid if found is not None else None

        rows = []
        for key, (sd, kind) in missing.items():
            plan = plan_acl(
                sd,
                kind=kind,
                target=self.target,
                principals=principals,
                identities=identities,
                deny_policy=self.opts.deny_policy,
                sid_of=sid_of,
            )
            rows.append(
                AclRecord(
                    job_id=self.job.pk,
                    job_pass_id=self.pass_id,
                    key=key,
                    source_sd=sdmod.serialize(sd),
                    **plan.stored(),
                )
            )
        # another worker may have made the same record meanwhile: theirs is as good
        AclRecord.objects.bulk_create(rows, ignore_conflicts=True)

    # step 4 (permissions-only pass)

    def _present(self, conn: Connector, task: CopyTask) -> Outcome:
        if task.kind == "dir" and not conn.capabilities.directories:
            return Outcome(task.item_id, State.UNCHANGED)
        try:
            _retrying(self.options, lambda: conn.stat(task.dest_path))
        except NotFound:
            return Outcome(
                task.item_id,
                State.FAILED,
                Reason.NOT_FOUND,
                "not at the destination: run a copy pass first",
            )
        except StorageError as exc:
            return Outcome(task.item_id, State.FAILED, exc.reason, str(exc))
        return Outcome(task.item_id, State.UNCHANGED)

    # step 5

    def _uniform_access(self, opener: Callable[[], Connector]) -> bool:
        key = (self.job.pk, self.pass_id)
        if key not in _uniform:
            conn = opener()
            try:
                _uniform[key] = bool(conn.uniform_access())  # type: ignore[attr-defined]
            except StorageError as exc:
                log.warning("cannot tell whether the bucket has uniform access: %s", exc)
                return False
            finally:
                conn.close()
        if _uniform[key]:
            self._report_uniform()
        return _uniform[key]

    def _report_uniform(self) -> None:
        _uniform[(self.job.pk, self.pass_id)] = True
        event_once(job_id=self.job.pk, since=self.started, message=UNIFORM_ACCESS_MESSAGE)

    def _apply(self, conn: Connector, work: tuple[CopyTask, Outcome, AclPlan]):
        task, outcome, plan = work
        path = outcome.dest_path or task.dest_path
        apply = apply_smb if self.target == "smb" else apply_gcs
        try:
            return _retrying(self.options, lambda: apply(conn, path, plan))
        except AclNotApplied as exc:
            return exc
        except StorageError as exc:
            if self.target == "gs" and is_uniform_access_error(exc):
                return "uniform"
            return exc


# --- the end of a pass: the manifest --------------------------------------------------------


def manifest_due(job_pass: Pass) -> bool:
    """True while a pass of a job that migrates permissions to GCS or a local folder has
    copied batches its manifest does not cover yet."""
    if job_pass.kind == PassKind.ASSESS or job_pass.acl_manifest_batches == job_pass.batches_done:
        return False
    job = MigrationJob.objects.select_related("source", "destination").get(pk=job_pass.job_id)
    if not enabled(job) or target_of(job.destination.kind) == "smb":
        return False
    return _source_has_acls(job.source)


def pass_ok(job_pass: Pass) -> bool:
    return not job_pass.acl_manifest.startswith("failed")


def manifest_write(*, pass_id: int) -> None:
    """Write the pass's permissions manifest next to the data (JSON Lines, one object per
    path that reached the destination), streamed from the database; then finish the pass."""
    from .execution import event_add, pass_maybe_finish

    job_pass = Pass.objects.select_related("job__destination").get(pk=pass_id)
    job = job_pass.job
    path = manifest_path(job.pk)
    where = f"{job.destination.url.rstrip('/')}/{path}"
    reader = LinesReader(manifest_lines(_manifest_entries(job_pass)))
    try:
        with open_endpoint(job.destination) as destination:
            destination.write(path, reader, Entry(path, "file", 0, time.time_ns()))  # type: ignore[arg-type]
    except (StorageError, ValueError) as exc:
        where = f"failed: {exc}"
        event_add(job_id=job.pk, level=EventLevel.ERROR,
                  message=f"The permissions manifest could not be written: {exc}")  # fmt: skip
    else:
        written = f"Permissions manifest written ({reader.bytes} bytes): {where}"
        event_add(job_id=job.pk, message=written)
    Pass.objects.filter(pk=pass_id).update(
        acl_manifest=where[:2000], acl_manifest_batches=job_pass.batches_done
    )
    pass_maybe_finish(pass_id=pass_id)


def _manifest_entries(job_pass: Pass) -> Iterator[dict[str, Any]]:
    rows = (
        FileItem.objects.filter(
            job_pass=job_pass,
            acl_id__isnull=False,
            state__in=(ItemState.COPIED, ItemState.UNCHANGED),
        )
        .order_by("id")
        .values_list("source_path", "dest_path", "acl_id")
        .iterator(chunk_size=5000)
    )
    cache = RecordCache()
    for source_path, dest_path, acl_id in rows:
        plan = cache.get(acl_id)
        if plan is not None:
            yield plan.manifest_entry(path=dest_path, source_path=source_path)


class RecordCache:
    """AclRecords by id, loaded on demand, a bounded number kept (few distinct per pass)."""

    def __init__(self, size: int = 20000) -> None:
        self.size = size
        self._plans: OrderedDict[int, AclPlan | None] = OrderedDict()

    def get(self, record_id: int) -> AclPlan | None:
        if record_id in self._plans:
            self._plans.move_to_end(record_id)
            return self._plans[record_id]
        record = AclRecord.objects.filter(pk=record_id).first()
        plan = record_plan(record) if record else None
        self._plans[record_id] = plan
        if len(self._plans) > self.size:
            self._plans.popitem(last=False)
        return plan


def record_plan(record: AclRecord) -> AclPlan:
    return AclPlan.from_stored({f: getattr(record, f) for f in PLAN_FIELDS})


# --- the assessment -------------------------------------------------------------------------


def assessment_add(*, job: MigrationJob, job_pass: Pass, figures: dict, token: str = "") -> None:
    """Add the SID figures to an assessment: every item's descriptor read (a few threads
    with a connection each, rows streamed from the manifest), the distinct SIDs resolved
    in a few batched directory calls, mapped by the job's rules. The scan's lease (held
    by `token`) is renewed meanwhile: it must outlive a long read."""
    opts = options_of(job)
    if opts is None:
        return
    if not _source_has_acls(job.source):
        figures[OPTION] = {"error": "the source has no ACLs"}
        return
    survey = AclSurvey()
    rows = (
        FileItem.objects.filter(job_pass=job_pass, reason="assessment_only")
        .order_by("id")
        .values_list("source_path", "kind")
        .iterator(chunk_size=2000)
    )

    def read(conn: Connector, item: tuple[str, str]):
        try:
            return conn.read_acl(item[0])
        except StorageError as exc:
            return exc

    last = time.monotonic()
    for (path, kind), result in _stream_pool(
        rows, lambda: open_endpoint(job.source), read, settings.MIGRATOR_COPY_THREADS
    ):
        if isinstance(result, sdmod.SecurityDescriptor):
            survey.add(path, result, kind)
        else:
            survey.failed(path, str(result))
        if token and time.monotonic() - last > 30:
            expires = timezone.now() + timedelta(seconds=settings.MIGRATOR_LEASE_SECONDS)
            Pass.objects.filter(pk=job_pass.pk, scan_lease_owner=token).update(
                scan_lease_expires=expires
            )
            last = time.monotonic()
    directory = directory_for(job, job_pass.pk)
    try:
        principals = directory.resolve(survey.sids())
        error = ""
    except DirectoryError as exc:
        principals, error = {}, str(exc)
    result = survey.figures(
        principals, identity_map_for(job, opts), target=target_of(job.destination.kind)
    )
    if isinstance(directory, NoDirectory):
        error = error or NO_DIRECTORY_MESSAGE
    if error:
        result["directory_error"] = error
    result["deny_policy"] = opts.deny_policy.value
    figures[OPTION] = result


# --- reads for the summary ----------------------------------------------------------------


def summary_fields(*, job: MigrationJob, job_pass: Pass | None) -> dict[str, Any]:
    """The CLI summary's permissions counts (only for jobs that migrate permissions)."""
    if not enabled(job):
        return {}
    p = job_pass
    fields = ("acl_applied", "acl_narrowed", "acl_denied", "acl_unmapped")
    out: dict[str, Any] = {f: getattr(p, f) if p else 0 for f in fields}
    out["acl_distinct"] = AclRecord.objects.filter(job_pass=p).count() if p else 0
    out["acl_manifest"] = p.acl_manifest if p else ""
    return out


# --- services -------------------------------------------------------------------------------


def job_start_permissions(*, job: MigrationJob, user=None) -> MigrationJob:
    """Queue a pass that re-applies permissions without copying data (for cutover)."""
    from .services import JobStateError, job_start

    if not enabled(job):
        raise JobStateError(f"Job “{job.name}” does not migrate permissions.")
    with transaction.atomic():
        MigrationJob.objects.filter(pk=job.pk).update(next_pass_kind=PassKind.PERMISSIONS)
        try:
            return job_start(job=job, user=user)
        except JobStateError:
            MigrationJob.objects.filter(pk=job.pk).update(next_pass_kind="")
            raise


def identity_overrides_import(*, job: MigrationJob, data: bytes | str, user=None) -> int:
    """Replace the job's identity overrides with an uploaded CSV (source,target,type).
    Raises MappingCSVError listing every problem with its line; nothing is half-imported."""
    from .execution import event_add

    parsed = parse_mapping_csv(data)
    lines = _csv_lines(data)
    with transaction.atomic():
        IdentityOverride.objects.filter(job=job).delete()
        IdentityOverride.objects.bulk_create(
            IdentityOverride(job=job, source=key, target=identity.target, type=identity.type,
                             line=lines.get(key, 0))
            for key, identity in parsed.items()
        )  # fmt: skip
        who = getattr(user, "username", None) or "the system"
        event_add(job_id=job.pk, message=f"Identity CSV imported by {who}: {len(parsed)} line(s).")
    return len(parsed)


def _csv_lines(data: bytes | str) -> dict[str, int]:
    """{normalised source: line} of a CSV parse_mapping_csv accepted."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""))
    index = None
    lines = {}
    for row in reader:
        if index is None:
            if any(c.strip() for c in row):
                index = [c.strip().lower() for c in row].index("source")
            continue
        if len(row) > index and row[index].strip():
            source = row[index].strip()
            key = canonical_sid(source) if is_sid(source) else source.lower()
            lines.setdefault(key, reader.line_num)
    return lines


def directory_export(*, customer) -> dict[str, int]:
    """Read the customer's users and groups from their directory into the identity table
    (rows of accounts no longer there are removed). Raises DirectoryError in words."""
    from migrator.acl.directory import to_scim

    if not customer.directory_uri:
        raise DirectoryError(f"customer {customer.name} has no directory")
    conf = {
        "uri": customer.directory_uri,
        "bind_dn": customer.directory_bind_dn,
        "bind_password": customer.get_directory_bind_password()
        if customer.has_directory_bind_password
        else "",
        "base_dn": customer.directory_user_search_base,
        "start_tls": customer.directory_start_tls,
        "ca_file": customer.directory_ca_file,
    }
    now = timezone.now()
    counts = {"user": 0, "group": 0}
    columns = ["kind", "account", "upn", "mail", "display_name", "enabled", "groups",
               "nested_groups", "members", "dn", "scim", "refreshed_at"]  # fmt: skip
    with LdapDirectory(**conf) as directory:
        chunk: list[DirectoryIdentity] = []

        def flush() -> None:
            DirectoryIdentity.objects.bulk_create(
                chunk, update_conflicts=True, unique_fields=["customer", "sid"],
                update_fields=columns,
            )  # fmt: skip
            chunk.clear()

        for entry in directory.export():
            names = ", ".join
            chunk.append(
                DirectoryIdentity(
                    customer=customer, sid=entry.sid, kind=entry.kind, account=entry.account,
                    upn=getattr(entry, "upn", None) or "", mail=entry.mail or "",
                    display_name=entry.display_name or "",
                    enabled=getattr(entry, "enabled", None),
                    groups=names(g.name for g in entry.groups),
                    nested_groups=names(g.name for g in entry.nested_groups),
                    members=names(m.name for m in getattr(entry, "members", ())),
                    dn=entry.dn, scim=to_scim(entry), refreshed_at=now,
                )
            )  # fmt: skip
            counts[entry.kind] += 1
            if len(chunk) >= 1000:
                flush()
        if chunk:
            flush()
    DirectoryIdentity.objects.filter(customer=customer, refreshed_at__lt=now).delete()
    return counts


IDENTITY_COLUMNS = ("kind", "sid", "account", "upn", "mail", "display_name", "enabled",
                    "groups", "nested_groups", "members", "dn")  # fmt: skip


def identity_rows(customer) -> Iterator[tuple]:
    rows = (
        DirectoryIdentity.objects.filter(customer=customer)
        .order_by("kind", "account", "id")
        .values_list(*IDENTITY_COLUMNS)
        .iterator(chunk_size=2000)
    )
    yield from rows


def scim_chunks(customer) -> Iterator[str]:
    """A SCIM 2.0 ListResponse of the customer's users, then groups, streamed."""
    qs = DirectoryIdentity.objects.filter(customer=customer)
    total = qs.count()
    yield (
        '{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],'
        f'"totalResults":{total},"startIndex":1,"itemsPerPage":{total},"Resources":['
    )
    first = True
    rows = qs.order_by("-kind", "account", "id").values_list("scim", flat=True)
    for resource in rows.iterator(chunk_size=2000):
        yield ("" if first else ",") + json.dumps(resource, ensure_ascii=False)
        first = False
    yield "]}"


# --- the one-shot CLI (migrator_run) --------------------------------------------------------

LDAP_PASSWORD_ENV = "MIGRATOR_LDAP_PASSWORD"
CLI_RULES = {
    "deny_policy": "deny_policy",
    "map_domain": "domain",
    "group_domain": "group_domain",
    "everyone_domain": "everyone_domain",
}
# any of these turns permissions on
CLI_FLAGS = ("permissions", "permissions_only", "identity_map", "directory", *CLI_RULES)


def parse_directory_url(url: str) -> dict[str, str]:
    """ldap[s]://[BIND_DN@]host[:port][/BASE_DN] -> {uri, bind_dn, base_dn}; the bind DN
    (or user@realm, DOMAIN\\user) percent-encoded in the user part, never a password."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(f"--directory must be ldap[s]://[BIND_DN@]host[:port][/BASE_DN]: {url!r}")
    if parts.password is not None:
        raise ValueError(f"put the directory password in {LDAP_PASSWORD_ENV}, not in the URL")
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError as exc:
        raise ValueError(f"bad port in {url!r}") from exc
    return {
        "uri": f"{parts.scheme}://{parts.hostname}{port}",
        "bind_dn": unquote(parts.username or ""),
        "base_dn": unquote(parts.path.lstrip("/")),
    }


@dataclass
class CliPermissions:
    options: dict[str, Any]
    only: bool
    identity_csv: bytes | None
    directory: dict[str, str] | None


def cli_arguments(parser) -> None:
    group = parser.add_argument_group("permissions")
    group.add_argument("--permissions", action="store_true",
                       help="migrate NTFS permissions (automatic identity mapping)")  # fmt: skip
    group.add_argument("--permissions-only", action="store_true",
                       help="re-apply permissions without copying data")  # fmt: skip
    group.add_argument("--deny-policy", choices=[p.value for p in DenyPolicy], default=None)
    group.add_argument("--identity-map", metavar="FILE.csv", default=None,
                       help="identity overrides: source,target,type")  # fmt: skip
    group.add_argument("--directory", metavar="ldap://BIND_DN@host/BASE_DN", default=None,
                       help=f"resolve SIDs here (password from {LDAP_PASSWORD_ENV})")  # fmt: skip
    group.add_argument("--map-domain", default=None, help="users: name@DOMAIN")
    group.add_argument("--group-domain", default=None, help="groups: name@DOMAIN")
    group.add_argument("--everyone-domain", default=None, help="Everyone: the whole DOMAIN")


def cli_prepare(opts: dict, env: dict[str, str]) -> CliPermissions | None:
    """Check the permission flags before anything is created; ValueError in words."""
    import os

    if not any(opts.get(k) for k in CLI_FLAGS):
        return None
    raw: dict[str, Any] = {"enabled": True}
    for key, name in CLI_RULES.items():
        if opts.get(key):
            raw[name] = opts[key]
    PermissionOptions.parse(raw)
    data = None
    if opts.get("identity_map"):
        path = opts["identity_map"]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            parse_mapping_csv(data)
        except MappingCSVError as exc:
            raise ValueError(f"{os.path.basename(path)}: {exc}") from exc
    directory = None
    if opts.get("directory"):
        directory = parse_directory_url(opts["directory"])
        password = env.get(LDAP_PASSWORD_ENV, "")
        if directory["bind_dn"] and not password:
            raise ValueError(
                f"--directory binds as {directory['bind_dn']}: set {LDAP_PASSWORD_ENV}"
            )
        directory["bind_password"] = password
        try:
            directory_check(dict(directory))
        except DirectoryError as exc:
            raise ValueError(f"directory {directory['uri']}: {exc}") from exc
    return CliPermissions(raw, bool(opts.get("permissions_only")), data, directory)


def cli_apply(prepared: CliPermissions, *, job: MigrationJob, source: Endpoint) -> None:
    """Store what cli_prepare checked: the job's options, the source's directory, the CSV."""
    job.options = {**(job.options or {}), OPTION: prepared.options}
    job.save(update_fields=["options"])
    if prepared.directory is not None:
        source.directory_uri = prepared.directory["uri"]
        source.directory_bind_dn = prepared.directory["bind_dn"]
        source.directory_base_dn = prepared.directory["base_dn"]
        source.set_directory_bind_password(prepared.directory["bind_password"])
        source.save()
    if prepared.identity_csv is not None:
        identity_overrides_import(job=job, data=prepared.identity_csv)
