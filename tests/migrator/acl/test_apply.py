"""Plans for destinations, without servers: what each kind of destination gets of one
descriptor, and what is reported instead of dropped."""

from __future__ import annotations

import base64
import io
import json

from migrator.acl import sd
from migrator.acl.apply import (
    AclPlan,
    AclSurvey,
    LinesReader,
    manifest_lines,
    mapped_descriptor,
    plan_acl,
    same_descriptor,
)
from migrator.acl.mapping import Identity, IdentityMap, MappingRules
from migrator.acl.model import FULL_CONTROL, MODIFY, READ_EXECUTE, Principal

DOM = "S-1-5-21-1-2-3"
ALICE, BOB, FINANCE, ADMIN, GONE = (f"{DOM}-{rid}" for rid in (1102, 1103, 1105, 500, 1108))
PRINCIPALS = {
    ALICE: Principal(ALICE, "user", "EX\\alice", account="alice", upn="alice@ex.test"),
    BOB: Principal(BOB, "user", "EX\\bob", account="bob", upn="bob@ex.test"),
    FINANCE: Principal(FINANCE, "group", "EX\\Finance", account="Finance"),
    ADMIN: Principal(ADMIN, "user", "EX\\Administrator", account="Administrator"),
    GONE: Principal(GONE, "orphaned", GONE, detail="deleted?"),
    f"{DOM}-513": Principal(f"{DOM}-513", "group", "EX\\Domain Users", account="Domain Users"),
}
OICI = sd.OBJECT_INHERIT_ACE | sd.CONTAINER_INHERIT_ACE
IDENTITIES = IdentityMap(MappingRules(domain="ex.test", group_domain="ex.test"))


def folder(*aces: sd.Ace, protected: bool = False) -> sd.SecurityDescriptor:
    control = sd.SE_SELF_RELATIVE | sd.SE_DACL_AUTO_INHERITED
    if protected:
        control |= sd.SE_DACL_PROTECTED
    return sd.SecurityDescriptor(ADMIN, f"{DOM}-513", aces, control=control)


CASE = folder(
    sd.Ace("deny", BOB, FULL_CONTROL, OICI),
    sd.Ace("allow", FINANCE, MODIFY, OICI),
    sd.Ace("allow", ALICE, FULL_CONTROL, OICI | sd.INHERITED_ACE),
    sd.Ace("allow", GONE, READ_EXECUTE, OICI),
)


def test_gcs_plan_object_roles_narrowed_denied_unmapped():
    plan = plan_acl(CASE, kind="file", target="gs", principals=PRINCIPALS, identities=IDENTITIES)
    assert plan.destination == {"acl": [
        {"entity": "group-finance@ex.test", "role": "READER"},
        {"entity": "user-alice@ex.test", "role": "OWNER"},
    ]}  # fmt: skip
    assert [n["entry"] for n in plan.narrowed] == ["EX\\Finance: modify"]
    assert [d["entry"] for d in plan.denied] == ["EX\\bob: deny full control"]
    assert [(u["sid"], u["kind"]) for u in plan.unmapped] == [(GONE, "orphaned")]
    assert plan.owner_identity == "administrator@ex.test"
    # a folder is no object: the same entries, nothing to write
    assert not plan_acl(
        CASE, kind="dir", target="gs", principals=PRINCIPALS, identities=IDENTITIES
    ).applies


def test_smb_plan_keeps_every_entry_and_maps_csv_identities_to_sids():
    overrides = {FINANCE: Identity("fin@new.test", "group", "csv")}
    plan = plan_acl(
        CASE,
        kind="dir",
        target="smb",
        principals=PRINCIPALS,
        identities=IdentityMap(MappingRules(), overrides),
        sid_of=lambda identity: f"{DOM}-9999" if identity.target == "fin@new.test" else None,
    )
    written = sd.parse(base64.b64decode(plan.destination["sd"]))
    assert [(a.type, a.sid, a.mask, a.flags) for a in written.dacl] == [
        ("deny", BOB, FULL_CONTROL, OICI),
        ("allow", f"{DOM}-9999", MODIFY, OICI),
        ("allow", ALICE, FULL_CONTROL, OICI | sd.INHERITED_ACE),
        ("allow", GONE, READ_EXECUTE, OICI),
    ]
    assert written.owner == ADMIN
    assert written.control & sd.SE_DACL_AUTO_INHERIT_REQ  # else Samba drops AUTO_INHERITED
    assert plan.narrowed == [] and plan.denied[0]["kept"]
    assert [u["sid"] for u in plan.unmapped] == [GONE]


def test_refuse_policy_plans_nothing():
    plan = plan_acl(
        CASE,
        kind="file",
        target="gs",
        principals=PRINCIPALS,
        identities=IDENTITIES,
        deny_policy="refuse",
    )
    assert plan.refused and not plan.applies and plan.denied


def test_manifest_plan_explicit_entries_with_scope_and_a_stored_round_trip():
    plan = plan_acl(
        folder(sd.Ace("allow", FINANCE, READ_EXECUTE, OICI), protected=True),
        kind="dir",
        target="file",
        principals=PRINCIPALS,
        identities=IDENTITIES,
    )
    assert not plan.applies
    entry = plan.manifest_entry(path="a", source_path="a")
    assert entry["protected"] and entry["owner"] == "administrator@ex.test"
    assert entry["grants"][0]["scope"] == "this_subfolders_files"
    again = AclPlan.from_stored(plan.stored(), "file")
    assert again.manifest_entry(path="a", source_path="a") == entry


def test_same_descriptor_ignores_request_bits_only():
    written = mapped_descriptor(CASE, {})
    assert same_descriptor(CASE, written)
    assert not same_descriptor(CASE, CASE.with_protected(True))


def test_lines_reader_streams_json_lines():
    reader = LinesReader(manifest_lines({"path": f"p{i}", "n": "é"} for i in range(1000)))
    data = io.BufferedReader(reader, 4096).read()
    lines = data.decode().splitlines()
    assert len(lines) == 1000 and json.loads(lines[999]) == {"path": "p999", "n": "é"}
    assert reader.bytes == len(data)


def test_survey_figures():
    survey = AclSurvey()
    survey.add("a", CASE, "dir")
    survey.add("b", CASE, "file")
    figures = survey.figures(PRINCIPALS, IDENTITIES)
    assert (figures["distinct_acls"], figures["orphaned"], figures["with_deny"]) == (1, 1, 2)
    assert [sid for _, sid, _ in figures["unmapped_identities"]] == [GONE]
    assert figures["distinct_sids"] == 6  # the entries', the owner's and the group's
