"""The permissions report of a pass: per path, the source's entries in words, the grants
applied, narrowed, denied and unmapped entries; summary counts; every distinct deny,
narrowing and unmapped SID with the number of items it concerns. Rows come from the
manifest (keyset by id) joined in Python to the few ACL records of the pass."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Q

from jobs.choices import ItemState, Reason
from jobs.models import AclRecord, FileItem, Pass
from jobs.permissions import RecordCache, record_plan
from migrator.web.query import query_int

PAGE_SIZE = 100
COLUMNS = ("path", "destination_path", "kind", "state", "source_entries", "grants",
           "narrowed", "denied", "unmapped", "inheritance", "owner")  # fmt: skip
LISTS = {
    "summary": ("item", "value"),
    "issues": ("what", "entry", "reason", "items"),
}


def _issue_records(job_pass: Pass) -> list[int]:
    """Ids of the pass's records with a deny, a narrowing or an unmapped identity."""
    empty = Q(narrowed=[]) & Q(denied=[]) & Q(unmapped=[])
    records = AclRecord.objects.filter(job_pass=job_pass)
    return list(records.exclude(empty).values_list("pk", flat=True)[:50000])


def _items(job_pass: Pass, issues_only: bool):
    qs = FileItem.objects.filter(job_pass=job_pass, acl_id__isnull=False)
    if issues_only:
        qs = qs.filter(acl_id__in=_issue_records(job_pass))
    return qs


def _grant(g: dict) -> str:
    words = g.get("words") or f"{g.get('name')}: {g.get('level')}"
    target = g.get("identity")
    if g.get("role"):
        return f"{words} → {target} ({g['role']})"
    return f"{words} → {target}" if target and target != g.get("name") else words


def _narrowed(n: dict) -> str:
    given = n.get("level") or "nothing"
    lost = ", ".join(n.get("lost") or ())
    return f"{n.get('entry')} → {given} (lost: {lost}; {n.get('why')})"


def _denied(d: dict) -> str:
    return d["entry"] + (" (kept)" if d.get("kept") else " (not expressible: reported)")


def _unmapped(u: dict) -> str:
    return f"{u.get('name')}: {u.get('reason')}"


def row_of(item: dict, plan) -> dict[str, Any]:
    """One report row: lists of words per column."""
    refused = item["reason"] == Reason.DENY_ACE
    if refused:
        grants = ["refused: deny entries apply (deny policy: refuse)"]
    else:
        grants = [_grant(g) for g in plan.grants]
    return {
        "id": item["id"],
        "path": item["source_path"],
        "destination_path": item["dest_path"],
        "kind": item["kind"],
        "state": item["state"],
        "reason": item["reason"],
        "source_entries": plan.source_aces,
        "grants": grants,
        "narrowed": [_narrowed(n) for n in plan.narrowed],
        "denied": [_denied(d) for d in plan.denied],
        "unmapped": [_unmapped(u) for u in plan.unmapped],
        "inheritance": "broken (protected)" if plan.protected else "inherits",
        "owner": plan.owner,
    }


_FIELDS = ("id", "source_path", "dest_path", "kind", "state", "reason", "acl_id")


def page(job_pass: Pass, cursor: str = "", issues_only: bool = False):
    """(rows, next cursor) by manifest id; two queries plus one per new ACL record."""
    qs = _items(job_pass, issues_only)
    if (after := query_int(cursor)) is not None:
        qs = qs.filter(id__gt=after)
    items = list(qs.order_by("id").values(*_FIELDS)[: PAGE_SIZE + 1])
    more = len(items) > PAGE_SIZE
    items = items[:PAGE_SIZE]
    ids = {i["acl_id"] for i in items}
    plans = {r.pk: r for r in AclRecord.objects.filter(pk__in=ids)}
    rows = [row_of(i, record_plan(plans[i["acl_id"]])) for i in items if i["acl_id"] in plans]
    return rows, (str(items[-1]["id"]) if more and items else "")


def rows(job_pass: Pass | None, issues_only: bool = False) -> Iterator[tuple]:
    """The CSV rows, streamed; list cells joined with ' | '."""
    if job_pass is None:
        return
    cache = RecordCache()
    items = _items(job_pass, issues_only).order_by("id").values(*_FIELDS).iterator(chunk_size=5000)
    for item in items:
        plan = cache.get(item["acl_id"])
        if plan is None:
            continue
        row = row_of(item, plan)
        yield tuple(" | ".join(row[c]) if isinstance(row[c], list) else row[c] for c in COLUMNS)


def summary(job_pass: Pass | None) -> dict[str, Any]:
    """Counts from the pass counters and its ACL records (few), never over the manifest."""
    if job_pass is None:
        return {}
    records = AclRecord.objects.filter(job_pass=job_pass)
    figures = {
        "distinct_acls": records.count(),
        "applied": job_pass.acl_applied,
        "narrowed": job_pass.acl_narrowed,
        "denied": job_pass.acl_denied,
        "unmapped": job_pass.acl_unmapped,
        "refused": 0,
        "protected_folders": 0,
        "manifest": job_pass.acl_manifest,
    }
    issues: dict[tuple[str, str, str], int] = {}
    fields = ("kind", "protected", "refused", "narrowed", "denied", "unmapped", "items")
    for kind, protected, refused, narrowed, denied, unmapped, n in records.values_list(
        *fields
    ).iterator(chunk_size=2000):
        if refused:
            figures["refused"] += n
        if protected and kind == "dir":
            figures["protected_folders"] += n
        for d in denied:
            key = ("deny", d["entry"].removesuffix(", inherited"), "kept" if d.get("kept") else "")
            issues[key] = issues.get(key, 0) + n
        for x in narrowed:
            key = ("narrowed", x["entry"].removesuffix(", inherited"), x.get("why") or "")
            issues[key] = issues.get(key, 0) + n
        for u in unmapped:
            key = ("unmapped", u["name"], u.get("reason") or "")
            issues[key] = issues.get(key, 0) + n
    figures["issues"] = [(*k, n) for k, n in sorted(issues.items())]
    failed = FileItem.objects.filter(job_pass=job_pass, state=ItemState.FAILED)
    figures["acl_failed"] = (
        failed.filter(reason=Reason.ACL_FAILED).count() if job_pass.failed else 0
    )
    return figures


def summary_rows(job_pass: Pass | None) -> Iterator[tuple]:
    figures = summary(job_pass)
    for key in ("distinct_acls", "applied", "narrowed", "denied", "unmapped", "refused",
                "protected_folders", "acl_failed", "manifest"):  # fmt: skip
        yield (key, figures.get(key, ""))


def issue_rows(job_pass: Pass | None) -> Iterator[tuple]:
    yield from summary(job_pass).get("issues", [])
