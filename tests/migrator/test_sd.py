"""The security descriptor parser and builder, against bytes produced by Samba's own NDR code."""

from __future__ import annotations

import struct

import pytest

from migrator.acl import sd
from migrator.acl.sd import Ace, SecurityDescriptor
from tests.migrator.samples import SAMBA_FILE_ACL

DOMAIN = "S-1-5-21-1-2-3"

# the same with ACL revision 2, as Windows writes it
REVISION_2 = SAMBA_FILE_ACL[:76] + b"\x02" + SAMBA_FILE_ACL[77:]
# "O:BAG:SYD:AI(OA;CI;0x100;bf967aba-0de6-11d0-a285-00aa003049e2;;AU)(A;;0x1f01ff;;;SY)"
REVISION_4 = bytes.fromhex(
    "0100048414000000240000000000000030000000010200000000000520000000200200000101000000000005"
    "120000000400440002000000050228000001000001000000ba7a96bfe60dd011a28500aa003049e201010000"
    "000000050b00000000001400ff011f00010100000000000512000000"
)
EMPTY_DACL = bytes.fromhex(
    "0100048014000000000000000000000024000000010200000000000520000000200200000400080000000000"
)
OWNER_ONLY = bytes.fromhex(
    "010000801400000000000000000000000000000001020000000000052000000020020000"
)


def test_parses_revision_2_with_deny_inherited_and_protected():
    parsed = sd.parse(REVISION_2)
    assert parsed.owner == f"{DOMAIN}-500"
    assert parsed.group == f"{DOMAIN}-513"
    assert parsed.protected
    assert parsed.dacl_revision == 2
    assert parsed.dacl == (
        Ace("allow", f"{DOMAIN}-1103", 0x1F01FF, 0x03),
        Ace("deny", f"{DOMAIN}-1104", 0x1F01FF, 0x03),
        Ace("allow", f"{DOMAIN}-513", 0x1200A9, 0x13),
    )
    assert [a.inherited for a in parsed.dacl] == [False, False, True]
    assert parsed.dacl[1].is_deny and not parsed.dacl[1].is_allow
    assert parsed.sacl is None


def test_parses_revision_4_object_ace():
    parsed = sd.parse(REVISION_4)
    assert parsed.owner == "S-1-5-32-544"
    assert parsed.group == "S-1-5-18"
    assert not parsed.protected
    assert parsed.control & sd.SE_DACL_AUTO_INHERITED
    assert parsed.dacl_revision == 4
    obj, system = parsed.dacl
    assert obj.type == "allow_object"
    assert obj.sid == "S-1-5-11"
    assert obj.mask == 0x100
    assert obj.flags == sd.CONTAINER_INHERIT_ACE
    assert obj.object_type == bytes.fromhex("ba7a96bfe60dd011a28500aa003049e2")
    assert obj.inherited_object_type is None
    assert system == Ace("allow", "S-1-5-18", 0x1F01FF, 0)


def test_samba_revision_4_without_object_aces():
    parsed = sd.parse(SAMBA_FILE_ACL)
    assert parsed.dacl_revision == 4
    assert parsed.dacl == sd.parse(REVISION_2).dacl


@pytest.mark.parametrize("blob", [SAMBA_FILE_ACL, REVISION_2, REVISION_4, EMPTY_DACL, OWNER_ONLY])
def test_round_trip_is_byte_exact(blob):
    assert sd.serialize(sd.parse(blob)) == blob


def test_empty_dacl_is_not_a_missing_dacl():
    assert sd.parse(EMPTY_DACL).dacl == ()
    assert sd.parse(OWNER_ONLY).dacl is None
    assert sd.parse(EMPTY_DACL).security_information == (
        sd.OWNER_SECURITY_INFORMATION | sd.DACL_SECURITY_INFORMATION
    )


def test_revision_3_and_unknown_ace_types_are_kept():
    # ACL revision 3 (written by some tools, refused by smbprotocol) holding an ACE type that
    # has no layout we know (0x42) followed by an ordinary allow ACE
    unknown = struct.pack("<BBH", 0x42, 0x10, 12) + b"\x01\x02\x03\x04\x05\x06\x07\x08"
    allow = sd._ace_bytes(Ace("allow", "S-1-1-0", 0x1200A9))
    acl = struct.pack("<BBHHH", 3, 0, 8 + len(unknown) + len(allow), 2, 0) + unknown + allow
    blob = struct.pack("<BBHIIII", 1, 0, 0x8004, 0, 0, 0, 20) + acl
    parsed = sd.parse(blob)
    assert parsed.dacl_revision == 3
    assert parsed.dacl[0].type == "0x42"
    assert parsed.dacl[0].raw == unknown
    assert parsed.dacl[0].inherited
    assert parsed.dacl[1] == Ace("allow", "S-1-1-0", 0x1200A9)
    assert sd.serialize(parsed) == blob


def test_callback_ace_keeps_its_conditions():
    ace = Ace("allow_callback", "S-1-5-11", 0x1200A9, 0, application_data=b"artx\x00\x00\x00\x00")
    built = SecurityDescriptor(dacl=(ace,), control=sd.SE_SELF_RELATIVE | sd.SE_DACL_PRESENT)
    assert sd.parse(sd.serialize(built)).dacl == (ace,)


def test_build_then_parse():
    built = SecurityDescriptor(
        owner=f"{DOMAIN}-500",
        group=f"{DOMAIN}-513",
        dacl=(
            Ace("deny", f"{DOMAIN}-1104", sd.FILE_ALL_ACCESS, 0x03),
            Ace("allow", "S-1-5-11", sd.FILE_MODIFY, 0x03),
        ),
    ).with_protected(True)
    blob = sd.serialize(built)
    parsed = sd.parse(blob)
    assert parsed.protected
    assert parsed.dacl == built.dacl
    assert (parsed.owner, parsed.group) == (built.owner, built.group)
    assert len(blob) % 4 == 0
    assert not parsed.with_protected(False).protected


def test_object_ace_forces_revision_4():
    ace = Ace("deny_object", "S-1-1-0", 0x10, 0, object_type=b"\x11" * 16)
    blob = sd.serialize(SecurityDescriptor(dacl=(ace,)))
    assert sd.parse(blob).dacl_revision == 4
    assert sd.parse(blob).dacl == (ace,)


@pytest.mark.parametrize(
    "sid",
    [
        "S-1-1-0",
        "S-1-5-18",
        "S-1-5-21-3913837954-1529293945-2395782010-1103",
        "S-1-0x123456789ABC-7",
    ],
)
def test_sid_strings_round_trip(sid):
    text, used = sd.sid_from_bytes(sd.sid_to_bytes(sid))
    assert text == sid
    assert used == len(sd.sid_to_bytes(sid))


@pytest.mark.parametrize("bad", ["", "S-1", "X-1-5", "S-1-5-abc", "S-1-5-" + "-".join(["1"] * 16)])
def test_bad_sid_strings_are_refused(bad):
    with pytest.raises(ValueError):
        sd.sid_to_bytes(bad)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x01\x00" * 5,
        REVISION_2[:60],  # owner/group fine, DACL cut off
        b"\x02" + REVISION_2[1:],  # descriptor revision 2 does not exist
        REVISION_2[:76] + b"\x09" + REVISION_2[77:],  # ACL revision 9
    ],
)
def test_garbage_raises_parse_error(blob):
    with pytest.raises(sd.SDParseError):
        sd.parse(blob)
