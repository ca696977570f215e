"""Permissions in a job, the Django side (the engine side is migrator.engine.permissions
and migrator.acl): whether a job migrates them, the directory that resolves its SIDs
(one per pass and process), its identity map, whether a pass owes a permissions manifest
and what goes in it. Writes are services (job_start_permissions,
identity_overrides_import, directory_export); the batch's records are written by the
database sink."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from migrator.acl.apply import STORED_FIELDS, AclPlan, target_of
from migrator.acl.directory import LdapDirectory
from migrator.acl.mapping import Identity, IdentityMap
from migrator.acl.model import canonical_sid, is_sid
from migrator.engine.permissions import NoDirectory, PermissionOptions, Resolver
from migrator.storage import capabilities_of

from .choices import ItemState, PassKind
from .models import AclRecord, DirectoryIdentity, Endpoint, FileItem, MigrationJob, Pass
from .options import permission_options as options_of

PLAN_FIELDS = (*STORED_FIELDS, "destination")
MANIFEST_WRITING = "writing"  # Pass.acl_manifest while its task runs: finishing waits


def enabled(job: MigrationJob) -> bool:
    try:
        return options_of(job) is not None
    except ValueError:
        return False


def identity_map_for(job: MigrationJob, opts: PermissionOptions) -> IdentityMap:
    overrides = {o.source: Identity(o.target, o.type, "csv") for o in job.identity_overrides.all()}
    return IdentityMap(opts.rules, overrides)


def source_has_acls(endpoint: Endpoint) -> bool:
    """What the connector of the endpoint's scheme declares (none is opened)."""
    try:
        return bool(capabilities_of(endpoint.url).acl)
    except ValueError:
        return False


# --- the directory ----------------------------------------------------------------------------


def customer_directory_settings(customer) -> dict[str, Any] | None:
    """LdapDirectory's arguments for the customer's AD, or None without one."""
    if not customer.directory_uri or customer.directory_kind not in ("", "ad"):
        return None
    conf = customer.directory_connection()
    return {
        "uri": conf["uri"],
        "bind_dn": conf["bind_dn"],
        "bind_password": conf["bind_password"],
        "base_dn": conf["user_search_base"],
        "start_tls": conf["start_tls"],
        "ca_file": conf["ca_file"],
    }


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
    return customer_directory_settings(job.customer)


_directories: OrderedDict[tuple[int, int], Resolver] = OrderedDict()
_directories_lock = threading.Lock()


def directory_for(job: MigrationJob, pass_id: int) -> Resolver:
    """One directory per pass and process: SIDs resolved by one batch are cached for the
    next (a pass sees the directory as it is when the pass runs)."""
    key = (job.pk, pass_id)
    with _directories_lock:
        found = _directories.get(key)
        if found is not None:
            _directories.move_to_end(key)
            return found
        conf = directory_settings(job)
        directory: Resolver = LdapDirectory(**conf) if conf else NoDirectory()
        _directories[key] = directory
        while len(_directories) > 8:
            _, old = _directories.popitem(last=False)
            old.close()
        return directory


def directory_check(conf: dict[str, Any]) -> str:
    """Bind and read the domain's name; raise DirectoryError in words."""
    with LdapDirectory(**conf) as directory:
        return directory.domain_name


def csv_lines(data: bytes | str) -> dict[str, int]:
    """{normalised source: line} of an identity CSV parse_mapping_csv accepted."""
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


# --- the end of a pass: the manifest --------------------------------------------------------


def manifest_due(job_pass: Pass) -> bool:
    """True while a pass of a job that migrates permissions to GCS or a local folder has
    copied batches its manifest does not cover yet."""
    if job_pass.kind in (PassKind.ASSESS, PassKind.VERIFY):  # a verify pass writes nothing
        return False
    if job_pass.acl_manifest_batches == job_pass.batches_done:
        return False
    job = MigrationJob.objects.select_related("source", "destination").get(pk=job_pass.job_id)
    if not enabled(job) or target_of(job.destination.kind) == "smb":
        return False
    return source_has_acls(job.source)


def pass_ok(job_pass: Pass) -> bool:
    return not job_pass.acl_manifest.startswith("failed")


def manifest_entries(job_pass: Pass) -> Iterator[dict[str, Any]]:
    """What the permissions manifest says per path that reached the destination."""
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


def agent_refusal(job: MigrationJob) -> str | None:
    """Why the job's permissions cannot go through its agent pool, in words; None when
    they can (or it migrates none). An SMB destination is written by the agent itself, a
    bucket's object ACLs by the server with its key, from the plans the agent posts; the
    manifest of a local folder is written by the server, which cannot reach the agent's
    folders."""
    if job.agent_pool_id is None or not enabled(job):
        return None
    if (job.options or {}).get("assess_only"):
        return None  # an assessment reads descriptors at the agent and applies nothing
    if not source_has_acls(job.source):
        return None  # nothing to migrate: the batches say so once, as on the cluster
    if target_of(job.destination.kind) == "file":
        return (
            "permissions to a local folder cannot go through an agent yet: the permissions "
            "manifest is written by the server, which cannot reach the agent's folders. "
            "Migrate the permissions to an SMB share, or run this job without an agent pool."
        )
    return None
