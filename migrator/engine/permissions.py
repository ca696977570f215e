"""Permissions around one batch's copy, and the assessment's survey of them.

Per batch: (1) read every item's security descriptor, (2) find the ACL record of each
distinct one in this pass (asked of the sink), or resolve its SIDs (one batched directory
call for all new ones), map identities and hand the new records to the sink, (3) fail the
items a deny refuses, (4) copy the rest (a permissions-only pass checks they are at the
destination instead), (5) apply each record's plan to the items that reached the
destination and verify it. What was done per item (`BatchAcl`) goes to the sink with the
batch's outcomes. Plain Python: the directory and identity map are handed in.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from migrator.acl import sd as sdmod
from migrator.acl.apply import (
    AclNotApplied,
    AclPlan,
    AclSurvey,
    apply_gcs,
    apply_smb,
    is_uniform_access_error,
    plan_acl,
    sids_of,
    unresolved,
)
from migrator.acl.directory import DirectoryError
from migrator.acl.mapping import USER_RULES, Identity, IdentityMap, MappingRules
from migrator.acl.model import DenyPolicy, Principal, canonical_sid
from migrator.storage import Connector, NotFound, StorageError

from .copy import CopyOptions, CopyTask, Outcome, State
from .pool import connector_pool
from .sink import BatchSink, NewAclRecord

log = logging.getLogger(__name__)

UNIFORM_ACCESS_MESSAGE = (
    "The bucket has uniform bucket-level access: object ACLs cannot be set, so permissions "
    "are written to the permissions manifest only."
)
NO_ACL_SOURCE_MESSAGE = "The source has no ACLs to migrate: permissions are left out."
NO_DIRECTORY_MESSAGE = (
    "No directory is set for this job's source (neither on the endpoint nor the customer): "
    "domain SIDs cannot be resolved and are reported unresolved."
)
# reason codes (jobs.choices.Reason holds them with their labels)
DENY_ACE, ACL_FAILED, DIRECTORY_UNAVAILABLE = "deny_ace", "acl_failed", "directory_unavailable"
NOT_FOUND, SOURCE_UNAVAILABLE = "not_found", "source_unavailable"


@dataclass(frozen=True)
class PermissionOptions:
    """A job's options["permissions"]: {"enabled": true, "deny_policy": "report"|"refuse",
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


class Resolver(Protocol):
    """What resolves SIDs: migrator.acl.directory.LdapDirectory, or NoDirectory."""

    searches: int

    def resolve(self, sids: Iterable[str]) -> dict[str, Principal]: ...

    def find_account(self, name: str) -> Any: ...

    def close(self) -> None: ...


class NoDirectory:
    """The resolver of a job without a directory: well-known SIDs only."""

    searches = 0

    def resolve(self, sids: Iterable[str]) -> dict[str, Principal]:
        return {canonical_sid(s): unresolved(canonical_sid(s)) for s in sids}

    def find_account(self, name: str) -> None:
        return None

    def close(self) -> None:
        pass


def acl_key(sd: sdmod.SecurityDescriptor, kind: str) -> str:
    """The ACL record's key: the descriptor's bytes and the kind of item."""
    return hashlib.sha256(sdmod.serialize(sd) + b"|" + kind.encode()).hexdigest()[:40]


def retrying(options: CopyOptions, op: Callable[[], Any]) -> Any:
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


@dataclass
class BatchAcl:
    """What the permissions part of one batch did, recorded with its outcomes."""

    pass_id: int
    item_acl: dict[int, int] = field(default_factory=dict)  # item id -> ACL record id
    flags: dict[int, tuple[bool, bool, bool]] = field(default_factory=dict)  # record id ->
    #                                         (narrowed, denied, unmapped)
    applied: set[int] = field(default_factory=set)  # item ids

    def counts(self, outcomes: Iterable[Outcome]) -> tuple[list[tuple[int, int]], dict, dict]:
        """(record id, item id) links, the pass's permission counters, items per record."""
        links = []
        counts = {"acl_applied": 0, "acl_narrowed": 0, "acl_denied": 0, "acl_unmapped": 0}
        per_record: dict[int, int] = {}
        for outcome in outcomes:
            record_id = self.item_acl.get(outcome.item_id)
            if record_id is None:
                continue
            links.append((record_id, outcome.item_id))
            per_record[record_id] = per_record.get(record_id, 0) + 1
            narrowed, denied, unmapped = self.flags[record_id]
            if outcome.state in (State.COPIED, State.UNCHANGED):
                counts["acl_applied"] += outcome.item_id in self.applied
                counts["acl_narrowed"] += narrowed
                counts["acl_denied"] += denied
                counts["acl_unmapped"] += unmapped
            elif outcome.reason == DENY_ACE:
                counts["acl_denied"] += 1
        return links, counts, per_record


CopyFn = Callable[..., list[Outcome]]
# per pass (and process): does the destination bucket refuse object ACLs?
_uniform: dict[Any, bool] = {}


@dataclass
class BatchPermissions:
    """How one batch migrates permissions: the job's options, the destination's model
    (`target`: "smb", "gs", "file"), and the directory and identity map, opened only
    when a new descriptor needs them. `pass_key` names the pass for caches."""

    options: PermissionOptions
    target: str
    pass_id: int
    directory: Callable[[], Resolver]
    identities: Callable[[], IdentityMap]
    only: bool = False  # a permissions-only pass: no data is copied
    # False: plans only, applied by whoever holds the destination's key (an agent's plans
    # for a bucket go to the server with the batch's records: see apply_planned)
    apply: bool = True
    # outcomes decided before the batch (by the server, for an agent's bucket: already
    # there, or newer there): not copied, their permissions migrated as a copy's
    given: dict[int, Outcome] = field(default_factory=dict)


class _Run:
    def __init__(self, perms: BatchPermissions, options: CopyOptions, sink: BatchSink) -> None:
        self.perms, self.options, self.sink = perms, options, sink
        self.target = perms.target
        self.acl = BatchAcl(perms.pass_id)
        self.outcomes: dict[int, Outcome] = {}

    def fail(self, task: CopyTask, reason: str, message: str) -> None:
        self.outcomes[task.item_id] = Outcome(task.item_id, State.FAILED, reason, message[:2000])

    def run(self, tasks: Sequence[CopyTask], source, destination, copy: CopyFn):
        should_stop = self.options.should_stop
        threads = self.options.threads
        # 1. every item's descriptor
        read = list(connector_pool(tasks, source, self._read, threads, should_stop))
        if should_stop():
            return [], self.acl
        descriptors: dict[int, tuple[str, sdmod.SecurityDescriptor]] = {}
        for task, result in read:
            if isinstance(result, sdmod.SecurityDescriptor):
                descriptors[task.item_id] = (acl_key(result, task.kind), result)
            elif isinstance(result, StorageError):
                reason = SOURCE_UNAVAILABLE if result.transient else ACL_FAILED
                self.fail(task, reason, f"cannot read its permissions: {result}")
            # None: vanished; the copy reports it
        # 2. the records of the distinct descriptors
        plans = self._plans(tasks, descriptors)
        # 3. refused by a deny entry
        for task in tasks:
            got = plans.get(task.item_id)
            if got is not None and got[1].refused:
                denies = "; ".join(d["entry"] for d in got[1].denied)
                self.fail(task, DENY_ACE, f"deny entries apply: {denies}")
        # 4. the data (or, permissions only: is it there?)
        todo = [t for t in tasks if t.item_id not in self.outcomes]
        given = self.perms.given
        rest = [t for t in todo if t.item_id not in given]
        if self.perms.only:
            present = connector_pool(rest, destination, self._present, threads, should_stop)
            copied = [o for _, o in present]
        else:
            copied = copy(rest, source, destination, self.options)
        copied.extend(given[t.item_id] for t in todo if t.item_id in given)
        for outcome in copied:
            self.outcomes[outcome.item_id] = outcome
        # 5. apply where the destination takes permissions, and check
        if self.perms.apply:
            work = []
            for task in todo:
                outcome = self.outcomes.get(task.item_id)
                got = plans.get(task.item_id)
                if outcome is not None and got is not None:
                    work.append((task, outcome, got[1]))
            apply_planned(work, self.target, self.perms.pass_id, destination, self.options,
                          self.sink, self.acl)  # fmt: skip
        for task in tasks:
            got = plans.get(task.item_id)
            if got is not None and task.item_id in self.outcomes:
                self.acl.item_acl[task.item_id] = got[0]
        return list(self.outcomes.values()), self.acl

    # step 1

    def _read(self, conn: Connector, task: CopyTask):
        try:
            return retrying(self.options, lambda: conn.read_acl(task.source_path))
        except NotFound:
            return None
        except StorageError as exc:
            return exc

    # step 2

    def _plans(
        self,
        tasks: Sequence[CopyTask],
        descriptors: dict[int, tuple[str, sdmod.SecurityDescriptor]],
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
                        self.fail(task, DIRECTORY_UNAVAILABLE, f"SIDs not resolved: {exc}")
            records = self._records(wanted.keys())
        plans = {}
        for item_id, (key, _) in descriptors.items():
            if key in records:
                plans[item_id] = records[key]
        return plans

    def _records(self, keys: Iterable[str]) -> dict[str, tuple[int, AclPlan]]:
        found = {}
        for key, (pk, stored) in self.sink.acl_records(list(keys)).items():
            plan = AclPlan.from_stored(stored, self.target)
            found[key] = (pk, plan)
            self.acl.flags[pk] = (bool(plan.narrowed), bool(plan.denied), bool(plan.unmapped))
        return found

    def _create(self, missing: dict[str, tuple[sdmod.SecurityDescriptor, str]]) -> None:
        directory = self.perms.directory()
        if isinstance(directory, NoDirectory):
            self.sink.event(NO_DIRECTORY_MESSAGE, level="warning", once=True)
        sids: set[str] = set()
        for sd, _ in missing.values():
            sids |= sids_of(sd)
        principals = directory.resolve(sids)  # one batched call for every new descriptor
        identities = self.perms.identities()
        sid_of = None
        if self.target == "smb" and identities.overrides:

            def sid_of(identity: Identity) -> str | None:
                found = directory.find_account(identity.target)
                return found.sid if found is not None else None

        records = []
        for key, (sd, kind) in missing.items():
            plan = plan_acl(
                sd,
                kind=kind,
                target=self.target,
                principals=principals,
                identities=identities,
                deny_policy=self.perms.options.deny_policy,
                sid_of=sid_of,
            )
            records.append(NewAclRecord(key, sdmod.serialize(sd), plan.stored()))
        self.sink.acl_records_add(records)

    # step 4 (permissions-only pass)

    def _present(self, conn: Connector, task: CopyTask) -> Outcome:
        if task.kind == "dir" and not conn.capabilities.directories:
            return Outcome(task.item_id, State.UNCHANGED)
        try:
            retrying(self.options, lambda: conn.stat(task.dest_path))
        except NotFound:
            return Outcome(
                task.item_id,
                State.FAILED,
                NOT_FOUND,
                "not at the destination: run a copy pass first",
            )
        except StorageError as exc:
            return Outcome(task.item_id, State.FAILED, exc.reason, str(exc))
        return Outcome(task.item_id, State.UNCHANGED)


def apply_planned(
    work: Sequence[tuple[CopyTask, Outcome, AclPlan]],
    target: str,
    pass_id: int,
    destination: Callable[[], Connector],
    options: CopyOptions,
    sink: BatchSink,
    acl: BatchAcl,
) -> None:
    """Step 5 of a batch: each (task, outcome, plan) whose item reached the destination and
    whose plan writes something gets it applied and checked. An item applied (or already
    so) joins `acl.applied`; one whose permissions cannot be set turns failed (acl_failed).
    A bucket with uniform bucket-level access gets nothing, said once. The cluster's
    batches and the server, for an agent's plans to a bucket, both apply through here."""
    todo = [(task, outcome, plan) for task, outcome, plan in work
            if outcome.state in (State.COPIED, State.UNCHANGED) and plan.applies]  # fmt: skip
    if target == "gs" and _uniform_access(pass_id, destination, sink):
        return
    apply = apply_smb if target == "smb" else apply_gcs

    def one(conn: Connector, item: tuple[CopyTask, Outcome, AclPlan]):
        task, outcome, plan = item
        path = outcome.dest_path or task.dest_path
        try:
            return retrying(options, lambda: apply(conn, path, plan))
        except AclNotApplied as exc:
            return exc
        except StorageError as exc:
            if target == "gs" and is_uniform_access_error(exc):
                return "uniform"
            return exc

    for (task, outcome, _), result in connector_pool(todo, destination, one, options.threads):
        if result is True or result is False:  # False: already as planned
            acl.applied.add(task.item_id)
        elif result == "uniform":
            _report_uniform(pass_id, sink)
        elif isinstance(result, Exception):
            outcome.state = State.FAILED
            outcome.reason = ACL_FAILED
            outcome.message = f"data copied, permissions not applied: {result}"[:2000]


def _uniform_access(pass_id: int, opener: Callable[[], Connector], sink: BatchSink) -> bool:
    if pass_id not in _uniform:
        conn = opener()
        try:
            _uniform[pass_id] = bool(conn.uniform_access())  # type: ignore[attr-defined]
        except StorageError as exc:
            log.warning("cannot tell whether the bucket has uniform access: %s", exc)
            return False
        finally:
            conn.close()
    if _uniform[pass_id]:
        _report_uniform(pass_id, sink)
    return _uniform[pass_id]


def _report_uniform(pass_id: int, sink: BatchSink) -> None:
    _uniform[pass_id] = True
    sink.event(UNIFORM_ACCESS_MESSAGE, level="warning", once=True)


def copy_with_permissions(
    perms: BatchPermissions,
    tasks: Sequence[CopyTask],
    source: Callable[[], Connector],
    destination: Callable[[], Connector],
    options: CopyOptions,
    sink: BatchSink,
    copy: CopyFn,
) -> tuple[list[Outcome], BatchAcl]:
    """The batch's outcomes (see the module doc) and what permissions did per item."""
    return _Run(perms, options, sink).run(tasks, source, destination, copy)


def acl_survey(
    paths: Iterable[tuple[str, str]],
    opener: Callable[[], Connector],
    threads: int,
    *,
    renew: Callable[[], Any] = lambda: None,
) -> AclSurvey:
    """Every (path, kind)'s descriptor read into a survey, a few threads with a
    connector each; `renew()` is called every 30 s meanwhile (the caller's lease)."""
    survey = AclSurvey()

    def read(conn: Connector, item: tuple[str, str]):
        try:
            return conn.read_acl(item[0])
        except StorageError as exc:
            return exc

    last = time.monotonic()
    for (path, kind), result in connector_pool(paths, opener, read, threads):
        if isinstance(result, sdmod.SecurityDescriptor):
            survey.add(path, result, kind)
        else:
            survey.failed(path, str(result))
        if time.monotonic() - last > 30:
            renew()
            last = time.monotonic()
    return survey
