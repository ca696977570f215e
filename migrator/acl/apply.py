"""Permissions at the destination: one plan per distinct descriptor, applied per item.

`plan_acl` turns a source security descriptor, the principals its SIDs resolve to and a
job's identity map into an `AclPlan` for one kind of destination:

- "smb": the descriptor itself with mapped SIDs: owner, group and every entry with its
  flags, deny entries and inheritance included. SMB expresses all of it, so nothing is
  narrowed; `apply_smb` writes it and reads it back.
- "gs": object ACL entries (user-/group-/domain-…, READER or OWNER) for what applies to
  the object (GCS has no inheritance, and folders are not objects). What a role cannot
  hold is listed as narrowed, deny entries as denied; `apply_gcs` sets and checks them.
- anything else ("file"): nothing applied; the plan feeds the permissions manifest.

Every plan lists, in words, what it could not carry (narrowed entries, deny entries,
identities that map to nobody), so the report and the manifest say it. A plan is plain
data (`to_dict`), computed once per distinct descriptor and stored. Pure Python, no Django.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from migrator.storage import Connector, StorageError

from . import sd as sdmod
from .mapping import Identity, IdentityMap, map_grants, unmapped_reason
from .model import (
    PSEUDO_PRINCIPALS,
    AceView,
    DenyPolicy,
    Grant,
    Level,
    Principal,
    Scope,
    describe_acl,
    local_principal,
    rights_names,
    translate,
)
from .sd import SecurityDescriptor

GCS_ROLES = {Level.READ: "READER", Level.WRITE: "READER", Level.FULL: "OWNER"}
LEVEL_WORDS = {Level.READ: "read", Level.WRITE: "modify", Level.FULL: "full control"}
_ROLE_RANK = {"READER": 0, "WRITER": 1, "OWNER": 2}
ENTITY_PREFIX = {"user": "user-", "group": "group-", "domain": "domain-"}
MANIFEST_NAME = ".migrator/permissions-job-{job}.jsonl"
# what an ACL record stores of a plan (with "destination")
STORED_FIELDS = ("kind", "source_aces", "owner", "protected", "grants", "narrowed", "denied",
                 "unmapped", "refused")  # fmt: skip


class AclNotApplied(StorageError):
    """The destination did not keep the permissions written to it."""

    reason = "acl_failed"


def target_of(scheme: str) -> str:
    """The kind of plan a destination of this scheme gets: "smb", "gs" or "file"."""
    return scheme if scheme in ("smb", "gs") else "file"


def unresolved(sid: str, detail: str = "no directory to resolve it") -> Principal:
    return local_principal(sid) or Principal(sid, "unresolved", sid, detail=detail)


def sids_of(sd: SecurityDescriptor) -> set[str]:
    """Every SID a descriptor names: owner, group and each entry's."""
    sids = {ace.sid for ace in sd.dacl or () if ace.sid}
    sids.update(s for s in (sd.owner, sd.group) if s)
    return sids


@dataclass
class AclPlan:
    """What one descriptor becomes at one kind of destination."""

    target: str  # "smb", "gs", "file"
    kind: str  # "file", "dir"
    source_aces: list[str]
    owner: str = ""
    owner_identity: str = ""
    protected: bool = False
    grants: list[dict] = field(default_factory=list)
    narrowed: list[dict] = field(default_factory=list)
    denied: list[dict] = field(default_factory=list)
    unmapped: list[dict] = field(default_factory=list)
    refused: bool = False
    destination: dict = field(default_factory=dict)  # {"sd": base64} or {"acl": [...]}

    @property
    def applies(self) -> bool:
        """True when the destination gets something written for this item."""
        return "sd" in self.destination or "acl" in self.destination

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AclPlan:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def stored(self) -> dict[str, Any]:
        """The fields an ACL record keeps (the owner's identity goes with the destination)."""
        destination = dict(self.destination)
        if self.owner_identity:
            destination["owner"] = self.owner_identity
        data = {k: getattr(self, k) for k in STORED_FIELDS}
        data["destination"] = destination
        return data

    @classmethod
    def from_stored(cls, data: Mapping[str, Any], target: str = "") -> AclPlan:
        destination = dict(data.get("destination") or {})
        owner_identity = destination.pop("owner", "")
        fields = {k: data[k] for k in STORED_FIELDS if k in data}
        return cls(target=target, **fields, destination=destination, owner_identity=owner_identity)

    def manifest_entry(self, *, path: str, source_path: str) -> dict[str, Any]:
        """One line of the permissions manifest (for platforms that ingest permissions)."""
        return {
            "path": path,
            "source_path": source_path,
            "kind": self.kind,
            "owner": self.owner_identity or self.owner,
            "protected": self.protected,
            "grants": [
                {k: g[k] for k in ("identity", "type", "level", "scope", "sid", "name") if k in g}
                for g in self.grants
            ],
            "narrowed": self.narrowed,
            "denied": self.denied,
            "unmapped": self.unmapped,
        }


def plan_acl(
    sd: SecurityDescriptor,
    *,
    kind: str,
    target: str,
    principals: Mapping[str, Principal],
    identities: IdentityMap,
    deny_policy: DenyPolicy | str = DenyPolicy.REPORT,
    sid_of: Callable[[Identity], str | None] | None = None,
) -> AclPlan:
    """The plan for one descriptor (see the module doc). `principals` holds what the
    descriptor's SIDs resolved to (missing ones count as unresolved); `sid_of` finds the
    SID of an identity the CSV maps a principal to (SMB destinations only)."""
    policy = DenyPolicy(deny_policy)

    def who(sid: str) -> Principal:
        return principals.get(sid) or unresolved(sid, "not resolved")

    is_dir = kind == "dir"
    plan = AclPlan(
        target=target,
        kind=kind,
        source_aces=describe_acl(sd, lambda s: who(s).label, is_dir=is_dir),
        protected=sd.protected,
    )
    if sd.owner:
        plan.owner = who(sd.owner).label
        owner_identity = identities.map(who(sd.owner))
        plan.owner_identity = owner_identity.target if owner_identity else ""
    plan.denied = [
        {"sid": view.principal, "name": who(view.principal).label, "entry": view.words(
            who(view.principal).label, is_dir=is_dir), "kept": target == "smb"}
        for view in map(AceView.of, sd.dacl or ())
        if view.deny
    ]  # fmt: skip

    inheritance = target != "gs"  # GCS objects each carry their own ACL
    translation = translate(sd, deny_policy=policy, inheritance=inheritance)
    if translation.refused:
        plan.refused = True
        return plan

    if target == "smb":
        return _plan_smb(plan, sd, translation, who, identities, sid_of)

    mapped, unmapped = map_grants(translation, principals_for(translation, who), identities)
    for view in translation.unsupported:
        plan.narrowed.append(
            {"sid": view.principal, "name": who(view.principal).label,
             "entry": view.words(who(view.principal).label, is_dir=is_dir), "level": None,
             "lost": list(rights_names(view.mask)),
             "why": f"{view.type} entries have no meaning at the destination"}
        )  # fmt: skip
    for item in translation.narrowed:
        name = who(item.ace.principal).label
        plan.narrowed.append(
            {"sid": item.ace.principal, "name": name, "entry": item.ace.words(name, is_dir=is_dir),
             "level": item.level.value if item.level else None, "lost": list(item.lost),
             "why": "no level holds these rights"}
        )  # fmt: skip
    for item in unmapped:
        principal = item.principal
        reason = (
            f"unresolved SID ({principal.detail})"
            if principal.kind == "unresolved"
            else unmapped_reason(principal)
        )
        plan.unmapped.append(
            {"sid": principal.sid, "name": principal.label, "kind": principal.kind,
             "level": item.grant.level.value, "reason": reason}
        )  # fmt: skip
    entities: dict[str, str] = {}
    for item in mapped:
        grant, identity = item.grant, item.identity
        entry = {"sid": grant.principal, "name": who(grant.principal).label,
                 "identity": identity.target, "type": identity.type,
                 "level": grant.level.value, "scope": grant.scope.value,
                 "words": grant_words(grant, who(grant.principal).label)}  # fmt: skip
        if target == "gs":
            role = GCS_ROLES[grant.level]
            entry["role"] = role
            entity = ENTITY_PREFIX[identity.type] + identity.target
            if _ROLE_RANK[role] > _ROLE_RANK.get(entities.get(entity, ""), -1):
                entities[entity] = role
            if grant.level is Level.WRITE:
                plan.narrowed.append(
                    {"sid": grant.principal, "name": who(grant.principal).label,
                     "entry": entry["words"], "level": Level.READ.value,
                     "lost": ["write", "delete"],
                     "why": "GCS object ACLs have READER and OWNER only: modify is given "
                            "as READER"}
                )  # fmt: skip
        plan.grants.append(entry)
    if target == "gs" and not is_dir:
        plan.destination = {"acl": acl_entries(entities)}
    return plan


def grant_words(grant: Grant, name: str) -> str:
    """ "EXAMPLE\\Finance: read", "EXAMPLE\\alice: full control, subfolders only"."""
    parts = [f"{name}: {LEVEL_WORDS[grant.level]}"]
    if grant.scope is not Scope.THIS_SUBFOLDERS_FILES and grant.scope is not Scope.THIS:
        parts.append(grant.scope.words)
    if grant.inherited:
        parts.append("inherited")
    return ", ".join(parts)


def principals_for(translation, who: Callable[[str], Principal]) -> dict[str, Principal]:
    return {g.principal: who(g.principal) for g in translation.grants}


def acl_entries(entities: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"entity": e, "role": r} for e, r in sorted(entities.items())]


def _plan_smb(plan, sd, translation, who, identities, sid_of) -> AclPlan:
    """SIDs stay what they are (same domain or a trusted one), unless the identity CSV maps
    a principal to an account the directory knows: then that account's SID. Orphaned SIDs
    are written as they are (they give nobody access) and listed as unmapped."""
    mapping: dict[str, str] = {}
    for sid in sids_of(sd):
        principal = who(sid)
        new = sid
        if sid_of is not None and sid not in PSEUDO_PRINCIPALS:
            identity = identities.map(principal)
            if identity is not None and identity.rule == "csv":
                new = sid_of(identity) or sid
        mapping[sid] = new
        if principal.kind in ("orphaned", "unresolved") and new == sid:
            plan.unmapped.append(
                {"sid": sid, "name": principal.label, "kind": principal.kind, "level": None,
                 "reason": f"{principal.kind} SID ({principal.detail}): kept as it is; it "
                           "gives nobody access"}
            )  # fmt: skip
    plan.unmapped.sort(key=lambda u: u["sid"])
    for grant in translation.grants:
        name = who(grant.principal).label
        plan.grants.append(
            {"sid": mapping.get(grant.principal, grant.principal), "name": name,
             "identity": name, "type": who(grant.principal).kind, "level": grant.level.value,
             "scope": grant.scope.value, "words": grant_words(grant, name)}
        )  # fmt: skip
    written = mapped_descriptor(sd, mapping)
    plan.destination = {"sd": base64.b64encode(sdmod.serialize(written)).decode("ascii")}
    return plan


def mapped_descriptor(sd: SecurityDescriptor, mapping: Mapping[str, str]) -> SecurityDescriptor:
    """`sd` with its SIDs replaced, ready to write over SMB: no SACL (it needs a privilege
    we do not ask for), and SE_DACL_AUTO_INHERIT_REQ beside AUTO_INHERITED, without which
    Samba drops the bit and children's entries are not flagged inherited."""
    dacl = None
    if sd.dacl is not None:
        dacl = tuple(
            replace(ace, sid=mapping.get(ace.sid, ace.sid)) if ace.raw is None else ace
            for ace in sd.dacl
        )
    control = sd.control & ~sdmod.SE_SACL_PRESENT
    if control & sdmod.SE_DACL_AUTO_INHERITED:
        control |= sdmod.SE_DACL_AUTO_INHERIT_REQ
    return replace(
        sd,
        owner=mapping.get(sd.owner, sd.owner) if sd.owner else None,
        group=mapping.get(sd.group, sd.group) if sd.group else None,
        dacl=dacl,
        sacl=None,
        control=control,
    )


def same_descriptor(a: SecurityDescriptor, b: SecurityDescriptor) -> bool:
    """Equal as far as access goes: owner, group, entries, protection, auto-inheritance
    (servers keep or drop the request bits, so those are not compared)."""
    bits = sdmod.SE_DACL_PROTECTED | sdmod.SE_DACL_AUTO_INHERITED
    return (
        a.owner == b.owner
        and a.group == b.group
        and a.dacl == b.dacl
        and (a.control & bits) == (b.control & bits)
    )


# --- applying ---------------------------------------------------------------------------


def apply_smb(dst: Connector, path: str, plan: AclPlan) -> bool:
    """Write the plan's descriptor unless the destination already holds it; read it back.
    True when written, False when it was already so. Raises AclNotApplied or StorageError."""
    want = sdmod.parse(base64.b64decode(plan.destination["sd"]))
    if same_descriptor(dst.read_acl(path), want):  # type: ignore[arg-type]
        return False
    dst.write_acl(path, want)
    back = dst.read_acl(path)
    if not same_descriptor(back, want):  # type: ignore[arg-type]
        raise AclNotApplied(path, "the descriptor read back is not the one written")
    return True


def _normal(entries: Iterable[Mapping[str, str]]) -> list[tuple[str, str]]:
    return sorted({(e["entity"], e["role"]) for e in entries})


def apply_gcs(dst: Any, path: str, plan: AclPlan) -> bool:
    """Set the object's ACL to the plan's entries (the project's own entries kept), unless
    it already is; check what the server stored. True when written."""
    current = dst.object_acl(path)
    keep = [e for e in current if e["entity"].startswith("project-")]
    want = _normal([*keep, *plan.destination["acl"]])
    if _normal(current) == want:
        return False
    stored = dst.set_object_acl(path, [{"entity": e, "role": r} for e, r in want])
    missing = set(want) - set(_normal(stored))
    if missing:
        shown = ", ".join(f"{e} {r}" for e, r in sorted(missing))
        raise AclNotApplied(path, f"the object ACL stored lacks {shown}")
    return True


def is_uniform_access_error(exc: BaseException) -> bool:
    """GCS refuses ACL calls on a bucket with uniform bucket-level access like this."""
    text = str(exc).lower()
    return "uniform bucket-level access" in text or "uniform_bucket_level_access" in text


# --- the manifest ---------------------------------------------------------------------------


def manifest_path(job_id: int) -> str:
    return MANIFEST_NAME.format(job=job_id)


class LinesReader(io.RawIOBase):
    """A binary stream over lines of text made on demand: the manifest is streamed to the
    destination's write(), never held whole in memory."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._buffer = b""
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        while len(self._buffer) < len(buffer):
            line = next(self._lines, None)
            if line is None:
                break
            self._buffer += line.encode("utf-8")
        count = min(len(buffer), len(self._buffer))
        buffer[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        self.bytes += count
        return count


def manifest_lines(entries: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    for entry in entries:
        yield json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"


# --- the assessment's figures -----------------------------------------------------------------


@dataclass
class AclSurvey:
    """SID figures of a source before migrating: distinct ACLs and SIDs, orphaned SIDs,
    identities the rules map to nobody, deny entries, broken inheritance."""

    descriptors: dict[SecurityDescriptor, int] = field(default_factory=dict)
    items: int = 0
    unreadable: int = 0
    protected_folders: int = 0
    with_deny: int = 0
    unreadable_examples: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, sd: SecurityDescriptor, kind: str) -> None:
        self.items += 1
        self.descriptors[sd] = self.descriptors.get(sd, 0) + 1
        if kind == "dir" and sd.protected:
            self.protected_folders += 1
        if any(ace.is_deny for ace in sd.dacl or ()):
            self.with_deny += 1

    def failed(self, path: str, message: str) -> None:
        self.unreadable += 1
        if len(self.unreadable_examples) < 20:
            self.unreadable_examples.append((path, message))

    def sids(self) -> set[str]:
        found: set[str] = set()
        for sd in self.descriptors:
            found |= sids_of(sd)
        return found

    def figures(
        self,
        principals: Mapping[str, Principal],
        identities: IdentityMap,
        *,
        target: str = "gs",
        limit: int = 200,
    ) -> dict[str, Any]:
        """The figures, with the principals the SIDs resolved to (see LdapDirectory). An
        SMB destination keeps SIDs: only orphaned ones count as unmapped there."""
        sids = self.sids()
        kinds: dict[str, int] = {}
        orphaned, unmapped = [], []
        granted = set()
        for sd in self.descriptors:
            granted |= {ace.sid for ace in sd.dacl or () if ace.sid and ace.is_allow}
        for sid in sorted(sids):
            principal = principals.get(sid) or unresolved(sid, "not resolved")
            kinds[principal.kind] = kinds.get(principal.kind, 0) + 1
            if principal.kind in ("orphaned", "unresolved"):
                orphaned.append((sid, principal.detail))
            if target == "smb":
                lost = principal.kind in ("orphaned", "unresolved")
            else:
                lost = sid in granted and identities.map(principal) is None
            if lost:
                reason = (
                    f"unresolved SID ({principal.detail})"
                    if principal.kind == "unresolved"
                    else unmapped_reason(principal)
                )
                unmapped.append((principal.label, sid, reason))
        return {
            "items": self.items,
            "distinct_acls": len(self.descriptors),
            "distinct_sids": len(sids),
            "sids_by_kind": dict(sorted(kinds.items())),
            "orphaned": len(orphaned),
            "unmapped": len(unmapped),
            "with_deny": self.with_deny,
            "protected_folders": self.protected_folders,
            "unreadable": self.unreadable,
            "orphaned_sids": orphaned[:limit],
            "unmapped_identities": unmapped[:limit],
            "unreadable_examples": self.unreadable_examples,
        }
