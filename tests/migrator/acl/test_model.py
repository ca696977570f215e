"""SIDs, access masks, ACE views and the NTFS → grants translation (no server needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from migrator.acl import sd
from migrator.acl.model import (
    DELETE,
    FILE_EXECUTE,
    FULL_CONTROL,
    GENERIC_ALL,
    GENERIC_EXECUTE,
    GENERIC_READ,
    GENERIC_WRITE,
    MODIFY,
    READ,
    READ_EXECUTE,
    REASON_DENY_ACE,
    WRITE,
    WRITE_OWNER,
    AceView,
    DenyPolicy,
    Grant,
    Level,
    Principal,
    Scope,
    Sid,
    canonical_sid,
    describe_acl,
    is_sid,
    level_of,
    local_principal,
    map_generic,
    mask_words,
    rights_names,
    translate,
    well_known_name,
)
from migrator.acl.sd import Ace, SecurityDescriptor
from tests.migrator.samples import SAMBA_FILE_ACL

DOMAIN = "S-1-5-21-1004336348-1177238915-682003330"
ALICE, BOB, FINANCE, ADMINS = (f"{DOMAIN}-{rid}" for rid in (1102, 1103, 1105, 512))
OICI = sd.OBJECT_INHERIT_ACE | sd.CONTAINER_INHERIT_ACE
IO = sd.INHERIT_ONLY_ACE
ID = sd.INHERITED_ACE
NAMES = {ALICE: "EXAMPLE\\alice", BOB: "EXAMPLE\\bob", FINANCE: "EXAMPLE\\Finance"}


def dacl(*aces: Ace, protected: bool = False, owner: str | None = ADMINS) -> SecurityDescriptor:
    control = sd.SE_SELF_RELATIVE | (sd.SE_DACL_PROTECTED if protected else 0)
    return SecurityDescriptor(owner=owner, group=None, dacl=tuple(aces), control=control)


# --- SIDs -------------------------------------------------------------------------------


def test_sid_parse_format_and_binary_round_trip():
    sid = Sid.parse("s-1-5-21-1004336348-1177238915-682003330-512")
    assert str(sid) == ADMINS
    assert sid.rid == 512
    assert str(sid.domain) == DOMAIN
    assert sid.is_domain_account
    raw = bytes(sid)
    assert raw[:2] == b"\x01\x05" and len(raw) == 8 + 4 * 5
    assert Sid.from_bytes(raw) == sid
    assert Sid.from_bytes(b"junk" + raw, offset=4) == sid
    # the same bytes the descriptor parser reads
    assert sd.sid_from_bytes(raw)[0] == ADMINS


def test_sid_well_known_forms():
    assert str(Sid.parse("S-1-1-0")) == "S-1-1-0"
    assert Sid.parse("S-1-5-32-544").domain is None
    assert not Sid.parse("S-1-5-18").is_domain_account
    big = Sid.parse("S-1-0x000100000000-1")  # authorities ≥ 2**32 are written in hex
    assert str(big) == "S-1-0x000100000000-1"
    assert str(Sid.parse("S-1-0xFF-1")) == "S-1-255-1"
    assert Sid.from_bytes(bytes(big)) == big
    assert canonical_sid(" s-1-5-11 ") == "S-1-5-11"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "S-1",
        "S-1-5-",
        "X-1-5-21",
        "S-2-5-21",
        "S-1-5-4294967296",
        "S-1-5-a",
        "S-1-5--21",
        "S-1-" + "-1" * 16,
    ],
)
def test_not_a_sid(text):
    assert not is_sid(text)
    with pytest.raises(ValueError, match="not a SID"):
        Sid.parse(text)


def test_sid_ldap_filter_value_escapes_every_byte():
    assert Sid.parse("S-1-5-32-544").ldap_value() == (
        "\\01\\02\\00\\00\\00\\00\\00\\05\\20\\00\\00\\00\\20\\02\\00\\00"
    )


@pytest.mark.parametrize(
    ("sid", "kind", "name"),
    [
        ("S-1-1-0", "well_known", "Everyone"),
        ("S-1-3-0", "well_known", "CREATOR OWNER"),
        ("S-1-5-18", "well_known", "NT AUTHORITY\\SYSTEM"),
        ("S-1-5-11", "well_known", "NT AUTHORITY\\Authenticated Users"),
        ("S-1-5-32-544", "builtin", "BUILTIN\\Administrators"),
        ("S-1-5-32-545", "builtin", "BUILTIN\\Users"),
        ("S-1-5-32-999", "builtin", "BUILTIN\\S-1-5-32-999"),  # unknown alias: not guessed
        ("S-1-22-1-1000", "well_known", "Unix User\\1000"),
    ],
)
def test_well_known_and_builtin_names(sid, kind, name):
    principal = local_principal(sid)
    assert (principal.kind, principal.name) == (kind, name)
    assert principal.resolved


def test_domain_relative_names_need_the_domain():
    assert local_principal(ADMINS) is None
    assert well_known_name(ADMINS) is None
    assert well_known_name(ADMINS, domain_sid=DOMAIN, domain_name="EXAMPLE") == (
        "EXAMPLE\\Domain Admins"
    )
    assert well_known_name(ALICE, domain_sid=DOMAIN, domain_name="EXAMPLE") is None
    assert well_known_name("S-1-5-21-1-2-3-512", domain_sid=DOMAIN) is None  # other domain


def test_principal_labels():
    assert Principal(ALICE, "user", "EXAMPLE\\alice").label == "EXAMPLE\\alice"
    orphan = Principal(ALICE, "orphaned", ALICE)
    assert orphan.label == f"{ALICE} (orphaned)" and not orphan.resolved


# --- masks and levels -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "level", "lost"),
    [
        (FULL_CONTROL, Level.FULL, 0),
        (MODIFY, Level.WRITE, 0),
        (READ_EXECUTE, Level.READ, 0),
        (READ, Level.READ, 0),  # Windows' "Read" leaves execute out: still read
        (GENERIC_ALL, Level.FULL, 0),
        (GENERIC_READ | GENERIC_EXECUTE, Level.READ, 0),
        (GENERIC_READ | GENERIC_WRITE | GENERIC_EXECUTE | DELETE, Level.WRITE, 0),
        (MODIFY & ~0x20, Level.WRITE, 0),  # modify without execute
        (MODIFY & ~0x100000, Level.WRITE, 0),  # tools that leave SYNCHRONIZE out
    ],
)
def test_standard_groupings_map_exactly(mask, level, lost):
    assert level_of(mask) == (level, lost)


def test_generic_rights_are_mapped_first():
    assert map_generic(GENERIC_READ) == READ
    assert map_generic(GENERIC_ALL) == FULL_CONTROL
    assert map_generic(GENERIC_EXECUTE) == 0x1200A0
    assert map_generic(GENERIC_WRITE) == 0x120116
    assert mask_words(GENERIC_ALL) == "full control"
    assert mask_words(GENERIC_READ | GENERIC_EXECUTE) == "read & execute"


def test_anything_else_goes_to_the_nearest_lower_level_with_what_is_lost():
    # read + write checkboxes, no delete: not modify
    level, lost = level_of(READ | WRITE)
    assert level is Level.READ
    assert rights_names(lost) == (
        "write data",
        "append data",
        "write extended attributes",
        "write attributes",
    )
    # full control minus take ownership: modify, and more than modify is lost
    level, lost = level_of(FULL_CONTROL & ~WRITE_OWNER)
    assert level is Level.WRITE
    assert set(rights_names(lost)) == {"delete subfolders and files", "change permissions"}
    # write without read: nothing expressible
    assert level_of(WRITE) == (None, WRITE)
    assert level_of(0) == (None, 0)


def test_mask_words():
    assert mask_words(MODIFY) == "modify"
    assert mask_words(READ_EXECUTE) == "read & execute"
    assert mask_words(READ | WRITE) == "read, write"
    assert mask_words(0x6) == "special: write data, append data"
    assert mask_words(0) == "no rights"


# --- ACE views and scopes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "scope"),
    [
        (0, Scope.THIS),
        (OICI, Scope.THIS_SUBFOLDERS_FILES),
        (sd.CONTAINER_INHERIT_ACE, Scope.THIS_SUBFOLDERS),
        (sd.OBJECT_INHERIT_ACE, Scope.THIS_FILES),
        (OICI | IO, Scope.SUBFOLDERS_FILES),
        (sd.CONTAINER_INHERIT_ACE | IO, Scope.SUBFOLDERS),
        (sd.OBJECT_INHERIT_ACE | IO, Scope.FILES),
        (OICI | ID, Scope.THIS_SUBFOLDERS_FILES),
    ],
)
def test_scopes_from_flags_and_back(flags, scope):
    assert Scope.from_flags(flags) is scope
    assert scope.flags == flags & ~ID


def test_ace_view_flags():
    view = AceView.of(
        Ace("allow", ALICE, GENERIC_ALL, OICI | IO | ID | sd.NO_PROPAGATE_INHERIT_ACE)
    )
    assert view.mask == FULL_CONTROL and view.raw_mask == GENERIC_ALL
    assert view.allow and not view.deny
    assert view.inherited and view.inherit_only and view.no_propagate
    assert view.container_inherit and view.object_inherit
    assert view.level is Level.FULL


@pytest.mark.parametrize(
    ("ace", "is_dir", "words"),
    [
        (Ace("allow", FINANCE, MODIFY, OICI | ID), True, "EXAMPLE\\Finance: modify, inherited"),
        (Ace("allow", FINANCE, MODIFY, ID), False, "EXAMPLE\\Finance: modify, inherited"),
        (Ace("deny", BOB, FULL_CONTROL, OICI), True, "EXAMPLE\\bob: deny full control"),
        (
            Ace("allow", ALICE, READ_EXECUTE, 0),
            True,
            "EXAMPLE\\alice: read & execute, this folder only",
        ),
        (
            Ace("allow", "S-1-3-0", GENERIC_ALL, OICI | IO),
            True,
            "CREATOR OWNER: full control, subfolders and files only",
        ),
        (
            Ace("allow", "S-1-5-32-545", 0x6, sd.CONTAINER_INHERIT_ACE),
            True,
            "BUILTIN\\Users: special: write data, append data, this folder and subfolders",
        ),
    ],
)
def test_ace_words(ace, is_dir, words):
    view = AceView.of(ace)
    assert view.words(NAMES.get(ace.sid), is_dir=is_dir) == words


def test_describe_acl_names_every_entry_in_order():
    acl = dacl(Ace("deny", BOB, FULL_CONTROL, OICI), Ace("allow", FINANCE, READ_EXECUTE, OICI | ID))
    assert describe_acl(acl, NAMES) == [
        "EXAMPLE\\bob: deny full control",
        "EXAMPLE\\Finance: read & execute, inherited",
    ]
    assert describe_acl(acl, NAMES.get)[0] == "EXAMPLE\\bob: deny full control"
    assert describe_acl(acl)[0] == f"{BOB}: deny full control"  # unnamed: the SID
    no_dacl = SecurityDescriptor(owner=ADMINS, dacl=None)
    assert describe_acl(no_dacl) == ["no DACL: everyone has full control"]


# --- translation ---------------------------------------------------------------------------------


def test_group_read_folder():
    result = translate(
        dacl(Ace("allow", FINANCE, READ_EXECUTE, OICI), Ace("allow", ADMINS, FULL_CONTROL, OICI))
    )
    assert result.grants == (
        Grant(FINANCE, Level.READ, Scope.THIS_SUBFOLDERS_FILES),
        Grant(ADMINS, Level.FULL, Scope.THIS_SUBFOLDERS_FILES),
    )
    assert not result.narrowed and not result.denied and not result.protected
    assert result.owner == ADMINS
    assert result.principals == {FINANCE, ADMINS}


def test_only_explicit_aces_become_grants_where_the_destination_inherits():
    acl = dacl(
        Ace("allow", ALICE, MODIFY, OICI),
        Ace("allow", FINANCE, READ_EXECUTE, OICI | ID),
        Ace("deny", BOB, FULL_CONTROL, OICI | ID),
    )
    result = translate(acl)
    assert result.grants == (Grant(ALICE, Level.WRITE, Scope.THIS_SUBFOLDERS_FILES),)
    assert result.inherited_skipped == 2
    assert not result.denied  # reported where it is explicit, on the parent


def test_every_object_gets_its_effective_aces_where_nothing_inherits():
    acl = dacl(
        Ace("allow", ALICE, MODIFY, OICI),
        Ace("allow", "S-1-3-0", GENERIC_ALL, OICI | IO),  # not for this object: children's
        Ace("allow", FINANCE, READ_EXECUTE, ID),
    )
    result = translate(acl, inheritance=False)
    assert result.grants == (
        Grant(ALICE, Level.WRITE, Scope.THIS),
        Grant(FINANCE, Level.READ, Scope.THIS, inherited=True),
    )


def test_broken_inheritance_is_recorded():
    result = translate(dacl(Ace("allow", ALICE, FULL_CONTROL, OICI), protected=True))
    assert result.protected
    assert result.grants == (Grant(ALICE, Level.FULL, Scope.THIS_SUBFOLDERS_FILES),)


def test_narrowed_allow_is_reported_with_what_is_lost():
    result = translate(dacl(Ace("allow", ALICE, READ | WRITE, OICI), Ace("allow", BOB, WRITE, 0)))
    assert result.grants == (Grant(ALICE, Level.READ, Scope.THIS_SUBFOLDERS_FILES),)
    alice, bob = result.narrowed
    assert alice.level is Level.READ
    assert "write data" in alice.lost and "read data" not in alice.lost
    assert alice.words("EXAMPLE\\alice") == (
        "EXAMPLE\\alice: read, write → read (lost: write data, append data, write extended "
        "attributes, write attributes)"
    )
    assert bob.level is None  # nothing of it can be granted: reported, not dropped
    assert bob.words("EXAMPLE\\bob").endswith(
        "→ nothing (lost: write data, append data, write extended attributes, write attributes)"
    )


def test_split_aces_of_one_principal_add_up_and_scopes_merge():
    # Windows writes "full control for SYSTEM" as this-folder FA plus children GA
    acl = dacl(
        Ace("allow", "S-1-5-18", FULL_CONTROL, 0),
        Ace("allow", "S-1-5-18", GENERIC_ALL, OICI | IO),
        # read & execute split over two ACEs on one scope
        Ace("allow", FINANCE, READ, OICI),
        Ace("allow", FINANCE, FILE_EXECUTE, OICI),
    )
    result = translate(acl)
    assert result.grants == (
        Grant("S-1-5-18", Level.FULL, Scope.THIS_SUBFOLDERS_FILES),
        Grant(FINANCE, Level.READ, Scope.THIS_SUBFOLDERS_FILES),
    )
    assert not result.narrowed


def test_lower_grant_implied_by_a_higher_one_is_dropped():
    acl = dacl(Ace("allow", ALICE, FULL_CONTROL, OICI), Ace("allow", ALICE, READ_EXECUTE, 0))
    assert translate(acl).grants == (Grant(ALICE, Level.FULL, Scope.THIS_SUBFOLDERS_FILES),)


def test_deny_is_listed_under_report():
    acl = dacl(Ace("deny", BOB, FULL_CONTROL, OICI), Ace("allow", "S-1-5-11", MODIFY, OICI))
    result = translate(acl, deny_policy="report")
    assert [v.principal for v in result.denied] == [BOB]
    assert result.denied[0].words("EXAMPLE\\bob") == "EXAMPLE\\bob: deny full control"
    assert result.grants == (Grant("S-1-5-11", Level.WRITE, Scope.THIS_SUBFOLDERS_FILES),)
    assert not result.refused


def test_deny_refuses_the_item_under_refuse_inherited_too():
    explicit = dacl(Ace("deny", BOB, FULL_CONTROL, OICI), Ace("allow", ALICE, MODIFY, OICI))
    result = translate(explicit, deny_policy=DenyPolicy.REFUSE)
    assert result.refused_reason == REASON_DENY_ACE == "deny_ace"
    assert result.grants == ()
    assert [v.principal for v in result.denied] == [BOB]
    # a child of that folder carries the deny inherited: refused as well
    child = dacl(Ace("deny", BOB, FULL_CONTROL, ID), Ace("allow", ALICE, MODIFY, ID))
    assert translate(child, deny_policy="refuse").refused_reason == "deny_ace"
    assert translate(child, deny_policy="report").denied == ()  # reported on the parent
    # a deny only for children does not refuse the folder itself
    parent_only = dacl(Ace("deny", BOB, FULL_CONTROL, OICI | IO), Ace("allow", ALICE, MODIFY, OICI))
    assert not translate(parent_only, deny_policy="refuse").refused
    with pytest.raises(ValueError):
        translate(explicit, deny_policy="ignore")


def test_unsupported_ace_types_are_listed_not_dropped():
    guid = bytes(range(16))
    acl = dacl(
        Ace("allow_object", ALICE, READ_EXECUTE, 0, object_type=guid),
        Ace("allow_callback", BOB, READ_EXECUTE, 0, application_data=b"artx\x00\x00\x00\x00"),
        Ace("0x7f", "", 0x1, 0, raw=b"\x7f\x00\x08\x00\x01\x00\x00\x00"),
    )
    result = translate(acl)
    assert [v.type for v in result.unsupported] == ["allow_object", "allow_callback", "0x7f"]
    assert result.grants == ()


def test_no_dacl_means_everyone_full_and_empty_dacl_nobody():
    result = translate(SecurityDescriptor(owner=ADMINS, dacl=None))
    assert result.grants == (Grant("S-1-1-0", Level.FULL, Scope.THIS_SUBFOLDERS_FILES),)
    assert result.notes
    empty = translate(dacl())
    assert empty.grants == () and empty.notes == ("empty DACL: nobody has access",)


def test_translations_are_cached_per_distinct_descriptor():
    acl = dacl(Ace("allow", ALICE, MODIFY, OICI))
    same = dacl(Ace("allow", ALICE, MODIFY, OICI))
    assert translate(acl) is translate(same)
    assert translate(acl) is not translate(acl, inheritance=False)


def test_translates_samba_bytes():
    # "O:LAG:DUD:P(A;OICI;FA;;;…-1103)(D;OICI;FA;;;…-1104)(A;OICIID;0x1200a9;;;DU)"
    result = translate(sd.parse(SAMBA_FILE_ACL))
    assert result.protected
    assert result.grants == (Grant("S-1-5-21-1-2-3-1103", Level.FULL, Scope.THIS_SUBFOLDERS_FILES),)
    assert [v.principal for v in result.denied] == ["S-1-5-21-1-2-3-1104"]
    assert result.inherited_skipped == 1


def test_acl_engine_imports_no_django():
    code = (
        "import sys\n"
        "import migrator.acl.model, migrator.acl.directory, migrator.acl.mapping\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'django_q', 'jobs', 'accounts', 'reports'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
