"""Real NT ACLs read over SMB from the Samba AD DC, translated, resolved and mapped."""

from __future__ import annotations

import io

import pytest

from migrator.acl import sd
from migrator.acl.directory import LdapDirectory
from migrator.acl.mapping import IdentityMap, MappingRules, map_grants
from migrator.acl.model import (
    FULL_CONTROL,
    MODIFY,
    READ_EXECUTE,
    Grant,
    Level,
    Scope,
    describe_acl,
    distinct_sids,
    translate,
)
from migrator.acl.sd import Ace, SecurityDescriptor
from migrator.storage import Entry, connector_for

TREE = Scope.THIS_SUBFOLDERS_FILES


@pytest.fixture(scope="module")
def share(samba_dc):
    connector = connector_for(samba_dc.smb_url("data"), samba_dc.admin_password)
    yield connector
    connector.close()


@pytest.fixture
def directory(samba_dc):
    with LdapDirectory(
        samba_dc.ldap_uri,
        bind_dn=f"{samba_dc.admin_user}@{samba_dc.realm}",
        bind_password=samba_dc.admin_password,
        base_dn=samba_dc.base_dn,
    ) as directory:
        yield directory


def words(share, directory, path: str) -> list[str]:
    acl = share.read_acl(path)
    principals = directory.resolve(ace.sid for ace in acl.dacl)
    return describe_acl(acl, lambda sid: principals[sid].label, is_dir="." not in path)


def test_group_read_folder(samba_dc, share, directory):
    result = translate(share.read_acl("finance"))
    assert Grant(samba_dc.sids["Finance"], Level.READ, TREE) in result.grants
    assert Grant(samba_dc.sids["Administrator"], Level.FULL, TREE) in result.grants
    assert not (result.narrowed or result.denied or result.protected)
    assert result.owner == samba_dc.sids["Administrator"]
    assert "EXAMPLE\\Finance: read & execute" in words(share, directory, "finance")
    # a file below: everything inherited, so nothing of its own to apply where the
    # destination inherits; its own copy of the ACL where it does not
    report = share.read_acl("finance/report.txt")
    assert translate(report).grants == ()
    assert translate(report).inherited_skipped == 2
    flat = translate(report, inheritance=False)
    assert Grant(samba_dc.sids["Finance"], Level.READ, Scope.THIS, inherited=True) in flat.grants
    assert "EXAMPLE\\Finance: read & execute, inherited" in words(
        share, directory, "finance/report.txt"
    )


def test_user_full_with_inheritance_broken(samba_dc, share):
    result = translate(share.read_acl("alice-only"))
    assert result.protected
    assert Grant(samba_dc.sids["alice"], Level.FULL, TREE) in result.grants
    assert samba_dc.sids["Domain Users"] not in {g.principal for g in result.grants}


def test_explicit_deny(samba_dc, share, directory):
    acl = share.read_acl("denied")
    reported = translate(acl, deny_policy="report")
    assert [a.principal for a in reported.denied] == [samba_dc.sids["bob"]]
    assert Grant(samba_dc.sids["Domain Users"], Level.WRITE, TREE) in reported.grants
    assert "EXAMPLE\\bob: deny full control" in words(share, directory, "denied")
    refused = translate(acl, deny_policy="refuse")
    assert refused.refused_reason == "deny_ace" and refused.grants == ()
    # the file below inherits the deny: refused too, and its words say so
    secret = share.read_acl("denied/secret.txt")
    assert translate(secret, deny_policy="refuse").refused_reason == "deny_ace"
    assert "EXAMPLE\\bob: deny full control, inherited" in words(
        share, directory, "denied/secret.txt"
    )


def test_nested_group_folder(samba_dc, share, directory):
    result = translate(share.read_acl("engineering"))
    assert Grant(samba_dc.sids["Engineering"], Level.WRITE, TREE) in result.grants
    # who that reaches, through Platform
    assert "EXAMPLE\\bob" in {p.name for p in directory.members_of(samba_dc.sids["Engineering"])}


def test_orphaned_and_foreign_sids_are_reported_unmapped(samba_dc, share, directory):
    result = translate(share.read_acl("orphaned"))
    principals = directory.resolve(result.principals)
    deleted, foreign = samba_dc.sids["deleted"], samba_dc.sids["foreign"]
    assert principals[deleted].kind == "orphaned"
    assert principals[foreign].kind == "foreign"
    mapped, unmapped = map_grants(
        result,
        principals,
        IdentityMap(MappingRules(domain="example.com", group_domain="example.com")),
    )
    assert {u.principal.sid: u.reason.split(" ")[0] for u in unmapped} == {
        deleted: "orphaned",
        foreign: "foreign",
    }
    assert ("domain-users@example.com", Level.READ) in {
        (m.identity.target, m.grant.level) for m in mapped
    }
    lines = words(share, directory, "orphaned")
    assert f"{deleted} (orphaned): modify" in lines
    assert f"{foreign} (foreign): read & execute" in lines


def test_many_files_few_acls_cost_few_lookups(samba_dc, share, directory):
    """A tree of 3 folders with distinct ACLs and 15 files each: every item's ACL is read and
    translated, every SID resolved as the walk meets it; the directory is asked a few times."""
    sids = samba_dc.sids
    base = samba_dc.make_folder("data")
    oici = sd.OBJECT_INHERIT_ACE | sd.CONTAINER_INHERIT_ACE
    control = sd.SE_SELF_RELATIVE | sd.SE_DACL_AUTO_INHERITED | sd.SE_DACL_AUTO_INHERIT_REQ
    admin = Ace("allow", sids["Administrator"], FULL_CONTROL, oici)
    cases = {
        "a": (Ace("allow", sids["Finance"], READ_EXECUTE, oici), admin),
        "b": (Ace("allow", sids["alice"], FULL_CONTROL, oici), admin),
        "c": (
            Ace("deny", sids["carol"], FULL_CONTROL, oici),
            Ace("allow", sids["Engineering"], MODIFY, oici),
            admin,
        ),
    }
    connector = connector_for(samba_dc.smb_url("data", base), samba_dc.admin_password)
    try:
        for name, dacl in cases.items():
            connector.mkdir(name)
            connector.write_acl(
                name,
                SecurityDescriptor(
                    sids["Administrator"], sids["Domain Users"], dacl, control=control
                ),
            )
            for i in range(15):
                path = f"{name}/f{i:02}.txt"
                connector.write(path, io.BytesIO(b"x"), Entry(path, "file", 1, 0))

        assert directory.domain_sid
        start = directory.searches
        items = [e.path for e in connector.scan("") if isinstance(e, Entry)]
        assert len(items) == 48
        descriptors = set()
        for path in items:
            acl = connector.read_acl(path)
            descriptors.add(acl)
            translation = translate(acl, inheritance=False)
            principals = directory.resolve(translation.principals)
            assert all(p.resolved for p in principals.values())
        # each folder and its files differ only in flags: 6 distinct descriptors
        assert len(descriptors) == 6
        assert directory.searches - start <= 3  # one batch per new set of SIDs met
        # collecting the distinct SIDs first makes it one search, on a fresh cache
        with LdapDirectory(
            samba_dc.ldap_uri,
            bind_dn=f"{samba_dc.admin_user}@{samba_dc.realm}",
            bind_password=samba_dc.admin_password,
        ) as fresh:
            assert fresh.domain_sid
            start = fresh.searches
            everyone = distinct_sids(translate(acl, inheritance=False) for acl in descriptors)
            assert len(fresh.resolve(everyone)) == len(everyone) >= 6
            assert fresh.searches - start == 1
    finally:
        connector.close()
