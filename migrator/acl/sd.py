"""Windows security descriptors (MS-DTYP 2.4.6): a small, tolerant parser and builder.

Only the self-relative binary form travels over SMB. Parsing accepts ACL revisions 2, 3
and 4 and any ACE type: ACEs it does not understand are kept as raw bytes and written back
unchanged, so a descriptor survives a read/modify/write round trip. Pure Python, no Django.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

# Control bits (MS-DTYP 2.4.6)
SE_OWNER_DEFAULTED = 0x0001
SE_GROUP_DEFAULTED = 0x0002
SE_DACL_PRESENT = 0x0004
SE_DACL_DEFAULTED = 0x0008
SE_SACL_PRESENT = 0x0010
SE_DACL_AUTO_INHERIT_REQ = 0x0100
SE_SACL_AUTO_INHERIT_REQ = 0x0200
SE_DACL_AUTO_INHERITED = 0x0400
SE_SACL_AUTO_INHERITED = 0x0800
SE_DACL_PROTECTED = 0x1000
SE_SACL_PROTECTED = 0x2000
SE_SELF_RELATIVE = 0x8000

# ACE flags (MS-DTYP 2.4.4.1)
OBJECT_INHERIT_ACE = 0x01
CONTAINER_INHERIT_ACE = 0x02
NO_PROPAGATE_INHERIT_ACE = 0x04
INHERIT_ONLY_ACE = 0x08
INHERITED_ACE = 0x10
SUCCESSFUL_ACCESS_ACE = 0x40
FAILED_ACCESS_ACE = 0x80

# Security information bits, used when reading or writing parts of a descriptor
OWNER_SECURITY_INFORMATION = 0x01
GROUP_SECURITY_INFORMATION = 0x02
DACL_SECURITY_INFORMATION = 0x04
SACL_SECURITY_INFORMATION = 0x08

# Common access masks on files and folders
FILE_ALL_ACCESS = 0x001F01FF
FILE_MODIFY = 0x001301BF
FILE_READ_EXECUTE = 0x001200A9

ACL_REVISION = 2
ACL_REVISION_DS = 4  # needed as soon as an object ACE is present

ACE_TYPES = {
    0x00: "allow",
    0x01: "deny",
    0x02: "audit",
    0x03: "alarm",
    0x04: "allow_compound",
    0x05: "allow_object",
    0x06: "deny_object",
    0x07: "audit_object",
    0x08: "alarm_object",
    0x09: "allow_callback",
    0x0A: "deny_callback",
    0x0B: "allow_callback_object",
    0x0C: "deny_callback_object",
    0x0D: "audit_callback",
    0x0E: "alarm_callback",
    0x0F: "audit_callback_object",
    0x10: "alarm_callback_object",
    0x11: "mandatory_label",
    0x12: "resource_attribute",
    0x13: "scoped_policy_id",
}
ACE_TYPE_CODES = {name: code for code, name in ACE_TYPES.items()}
# Types laid out as header, mask, SID (and, for callbacks, application data after the SID)
_SIMPLE_TYPES = {0x00, 0x01, 0x02, 0x03, 0x09, 0x0A, 0x0D, 0x0E, 0x11, 0x12, 0x13}
# Types laid out as header, mask, flags, [object GUID], [inherited object GUID], SID, [data]
_OBJECT_TYPES = {0x05, 0x06, 0x07, 0x08, 0x0B, 0x0C, 0x0F, 0x10}
_OBJECT_TYPE_PRESENT = 0x1
_INHERITED_OBJECT_TYPE_PRESENT = 0x2


class SDParseError(ValueError):
    """The bytes are not a self-relative security descriptor we can read."""


def sid_from_bytes(data: bytes, offset: int = 0) -> tuple[str, int]:
    """Read a binary SID at `offset`; return ("S-1-…", bytes consumed)."""
    if len(data) < offset + 8:
        raise SDParseError(f"SID at {offset} is truncated")
    revision, count = data[offset], data[offset + 1]
    authority = int.from_bytes(data[offset + 2 : offset + 8], "big")
    end = offset + 8 + 4 * count
    if len(data) < end:
        raise SDParseError(f"SID at {offset} is truncated ({count} sub-authorities)")
    subs = struct.unpack_from(f"<{count}I", data, offset + 8)
    # MS-DTYP 2.4.2.1: authorities of 2**32 and above are written in hex
    shown = str(authority) if authority < 1 << 32 else f"0x{authority:012X}"
    return "-".join([f"S-{revision}-{shown}", *map(str, subs)]), end - offset


def sid_to_bytes(sid: str) -> bytes:
    """Binary form of a SID string such as "S-1-5-21-1-2-3-500"."""
    parts = sid.strip().upper().split("-")
    if len(parts) < 3 or parts[0] != "S":
        raise ValueError(f"not a SID: {sid!r}")
    try:
        revision = int(parts[1])
        authority = int(parts[2], 16) if parts[2].startswith("0X") else int(parts[2])
        subs = [int(p) for p in parts[3:]]
    except ValueError:
        raise ValueError(f"not a SID: {sid!r}") from None
    if len(subs) > 15 or not all(0 <= s < 1 << 32 for s in subs) or authority >= 1 << 48:
        raise ValueError(f"not a SID: {sid!r}")
    return (
        bytes([revision, len(subs)])
        + authority.to_bytes(6, "big")
        + struct.pack(f"<{len(subs)}I", *subs)
    )


@dataclass(frozen=True, slots=True)
class Ace:
    """One access control entry. `type` is "allow", "deny", "audit", … (see ACE_TYPES)."""

    type: str
    sid: str
    mask: int
    flags: int = 0
    object_type: bytes | None = None  # GUID (16 bytes, little-endian form) of object ACEs
    inherited_object_type: bytes | None = None
    application_data: bytes = b""  # callback ACE conditions, kept as they came
    raw: bytes | None = None  # the whole ACE, when its layout is unknown: written back as is

    @property
    def is_allow(self) -> bool:
        return self.type.startswith("allow")

    @property
    def is_deny(self) -> bool:
        return self.type.startswith("deny")

    @property
    def inherited(self) -> bool:
        return bool(self.flags & INHERITED_ACE)

    @property
    def type_code(self) -> int:
        if self.type in ACE_TYPE_CODES:
            return ACE_TYPE_CODES[self.type]
        if self.type.startswith("0x"):
            return int(self.type, 16)
        raise ValueError(f"unknown ACE type {self.type!r}")


@dataclass(frozen=True, slots=True)
class SecurityDescriptor:
    """Owner, group and access lists of a file or folder.

    `dacl is None` means "no DACL" (everyone has full access), which is not the same as an
    empty DACL (nobody has access). `protected` is the "inheritance disabled" checkbox.
    """

    owner: str | None = None
    group: str | None = None
    dacl: tuple[Ace, ...] | None = None
    sacl: tuple[Ace, ...] | None = None
    control: int = SE_SELF_RELATIVE
    dacl_revision: int = ACL_REVISION
    sacl_revision: int = ACL_REVISION
    revision: int = field(default=1, repr=False)

    @property
    def protected(self) -> bool:
        return bool(self.control & SE_DACL_PROTECTED)

    @property
    def security_information(self) -> int:
        """Which parts this descriptor carries, as SMB's AdditionalInformation bits."""
        info = 0
        if self.owner:
            info |= OWNER_SECURITY_INFORMATION
        if self.group:
            info |= GROUP_SECURITY_INFORMATION
        if self.control & SE_DACL_PRESENT or self.dacl is not None:
            info |= DACL_SECURITY_INFORMATION
        if self.control & SE_SACL_PRESENT or self.sacl is not None:
            info |= SACL_SECURITY_INFORMATION
        return info

    def with_protected(self, protected: bool) -> SecurityDescriptor:
        control = (
            self.control | SE_DACL_PROTECTED if protected else self.control & ~SE_DACL_PROTECTED
        )
        return replace(self, control=control)


def _parse_ace(data: bytes, offset: int) -> tuple[Ace, int]:
    if len(data) < offset + 4:
        raise SDParseError(f"ACE header at {offset} is truncated")
    code, flags, size = struct.unpack_from("<BBH", data, offset)
    if size < 4 or len(data) < offset + size:
        raise SDParseError(f"ACE at {offset} has a bad size {size}")
    body = data[offset : offset + size]
    name = ACE_TYPES.get(code, f"0x{code:02x}")
    try:
        if code in _SIMPLE_TYPES:
            (mask,) = struct.unpack_from("<I", body, 4)
            sid, used = sid_from_bytes(body, 8)
            # callback ACEs carry conditions after the SID; others may just be padded
            extra = body[8 + used :] if "callback" in name else b""
            return Ace(name, sid, mask, flags, application_data=extra), size
        if code in _OBJECT_TYPES:
            mask, obj_flags = struct.unpack_from("<II", body, 4)
            pos = 12
            object_type = inherited_object_type = None
            if obj_flags & _OBJECT_TYPE_PRESENT:
                object_type, pos = bytes(body[pos : pos + 16]), pos + 16
            if obj_flags & _INHERITED_OBJECT_TYPE_PRESENT:
                inherited_object_type, pos = bytes(body[pos : pos + 16]), pos + 16
            sid, used = sid_from_bytes(body, pos)
            extra = body[pos + used :] if "callback" in name else b""
            ace = Ace(name, sid, mask, flags, object_type, inherited_object_type, extra)
            return ace, size
    except (struct.error, SDParseError):
        pass  # malformed body: keep the bytes rather than fail the whole descriptor
    mask = struct.unpack_from("<I", body, 4)[0] if size >= 8 else 0
    return Ace(name, "", mask, flags, raw=bytes(body)), size


def _parse_acl(data: bytes, offset: int) -> tuple[tuple[Ace, ...], int]:
    if len(data) < offset + 8:
        raise SDParseError(f"ACL header at {offset} is truncated")
    revision, _sbz1, size, count, _sbz2 = struct.unpack_from("<BBHHH", data, offset)
    if revision not in (2, 3, 4):
        raise SDParseError(f"unknown ACL revision {revision}")
    end = min(offset + size, len(data)) if size >= 8 else len(data)
    aces = []
    pos = offset + 8
    for _ in range(count):
        if pos >= end:
            raise SDParseError(f"ACL at {offset} holds fewer than {count} ACEs")
        ace, used = _parse_ace(data[:end], pos)
        aces.append(ace)
        pos += used
    return tuple(aces), revision


def parse(data: bytes) -> SecurityDescriptor:
    """Parse a self-relative security descriptor; raise SDParseError when it is not one."""
    data = bytes(data)
    if len(data) < 20:
        raise SDParseError(f"security descriptor of {len(data)} bytes is too short")
    revision, _sbz1, control, o_owner, o_group, o_sacl, o_dacl = struct.unpack_from(
        "<BBHIIII", data, 0
    )
    if revision != 1:
        raise SDParseError(f"unknown security descriptor revision {revision}")
    owner = sid_from_bytes(data, o_owner)[0] if o_owner else None
    group = sid_from_bytes(data, o_group)[0] if o_group else None
    dacl = sacl = None
    dacl_revision = sacl_revision = ACL_REVISION
    if control & SE_DACL_PRESENT and o_dacl:
        dacl, dacl_revision = _parse_acl(data, o_dacl)
    if control & SE_SACL_PRESENT and o_sacl:
        sacl, sacl_revision = _parse_acl(data, o_sacl)
    return SecurityDescriptor(
        owner, group, dacl, sacl, control | SE_SELF_RELATIVE, dacl_revision, sacl_revision
    )


def _ace_bytes(ace: Ace) -> bytes:
    if ace.raw is not None:
        return ace.raw
    code = ace.type_code
    sid = sid_to_bytes(ace.sid)
    if code in _OBJECT_TYPES:
        obj_flags = (_OBJECT_TYPE_PRESENT if ace.object_type else 0) | (
            _INHERITED_OBJECT_TYPE_PRESENT if ace.inherited_object_type else 0
        )
        body = (
            struct.pack("<II", ace.mask, obj_flags)
            + (ace.object_type or b"")
            + (ace.inherited_object_type or b"")
            + sid
            + ace.application_data
        )
    else:
        body = struct.pack("<I", ace.mask) + sid + ace.application_data
    body += b"\x00" * (-(len(body) + 4) % 4)  # ACE sizes are multiples of 4
    return struct.pack("<BBH", code, ace.flags, len(body) + 4) + body


def _acl_bytes(aces: tuple[Ace, ...], revision: int) -> bytes:
    body = b"".join(_ace_bytes(ace) for ace in aces)
    if any(ACE_TYPE_CODES.get(ace.type, 0) in _OBJECT_TYPES for ace in aces):
        revision = max(revision, ACL_REVISION_DS)
    return struct.pack("<BBHHH", revision, 0, len(body) + 8, len(aces), 0) + body


def serialize(sd: SecurityDescriptor) -> bytes:
    """The self-relative binary form (owner, group, SACL, DACL in that order)."""
    control = sd.control | SE_SELF_RELATIVE
    control = control | SE_DACL_PRESENT if sd.dacl is not None else control & ~SE_DACL_PRESENT
    control = control | SE_SACL_PRESENT if sd.sacl is not None else control & ~SE_SACL_PRESENT
    parts: list[bytes] = []
    offsets = {"owner": 0, "group": 0, "sacl": 0, "dacl": 0}
    pos = 20
    for key, blob in (
        ("owner", sid_to_bytes(sd.owner) if sd.owner else None),
        ("group", sid_to_bytes(sd.group) if sd.group else None),
        ("sacl", _acl_bytes(sd.sacl, sd.sacl_revision) if sd.sacl is not None else None),
        ("dacl", _acl_bytes(sd.dacl, sd.dacl_revision) if sd.dacl is not None else None),
    ):
        if blob is None:
            continue
        offsets[key] = pos
        parts.append(blob)
        pos += len(blob)
    header = struct.pack(
        "<BBHIIII",
        sd.revision,
        0,
        control,
        offsets["owner"],
        offsets["group"],
        offsets["sacl"],
        offsets["dacl"],
    )
    return header + b"".join(parts)
