"""SIDs, access masks, ACE views and the neutral grant model; NTFS → grants translation.

A security descriptor (migrator.acl.sd) says what Windows allows; most destinations speak
in a few levels instead. `translate` turns a descriptor into `Grant`s with one of three
levels (read, write = modify, full) and lists, never drops, what the levels cannot say:
narrowed rights, deny entries, ACE types without a meaning elsewhere. Pure Python, no Django.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from . import sd as sdmod
from .sd import Ace, SecurityDescriptor

# --- SIDs -------------------------------------------------------------------------------

_SID_RE = re.compile(r"^S-(\d+)-(0X[0-9A-F]{1,12}|\d{1,15})((?:-\d{1,10}){0,15})$")


@dataclass(frozen=True, slots=True, order=True)
class Sid:
    """A security identifier, e.g. S-1-5-21-1004336348-1177238915-682003330-512."""

    revision: int
    authority: int
    subauthorities: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Sid:
        """Parse "S-1-5-…" (any case; an authority of 2**32 or more may be 0x-hex)."""
        match = _SID_RE.match(text.strip().upper()) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"not a SID: {text!r}")
        revision = int(match[1])
        authority = int(match[2], 16) if match[2].startswith("0X") else int(match[2])
        subs = tuple(int(s) for s in match[3].split("-")[1:])
        if revision != 1 or authority >= 1 << 48 or any(s >= 1 << 32 for s in subs):
            raise ValueError(f"not a SID: {text!r}")
        return cls(revision, authority, subs)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> Sid:
        """Read the binary form (MS-DTYP 2.4.2.2), as in objectSid or a security descriptor."""
        try:
            text, _ = sdmod.sid_from_bytes(bytes(data), offset)
        except sdmod.SDParseError as exc:
            raise ValueError(str(exc)) from None
        return cls.parse(text)

    def to_bytes(self) -> bytes:
        return sdmod.sid_to_bytes(str(self))

    __bytes__ = to_bytes

    def __str__(self) -> str:
        shown = str(self.authority) if self.authority < 1 << 32 else f"0x{self.authority:012X}"
        return "-".join([f"S-{self.revision}-{shown}", *map(str, self.subauthorities)])

    @property
    def rid(self) -> int | None:
        """The last sub-authority (the relative id of a domain account)."""
        return self.subauthorities[-1] if self.subauthorities else None

    @property
    def is_domain_account(self) -> bool:
        """S-1-5-21-a-b-c-RID: an account of a domain (or of a machine's local SAM)."""
        subs = self.subauthorities
        return self.authority == 5 and len(subs) == 5 and subs[0] == 21

    @property
    def domain(self) -> Sid | None:
        """The domain part of a domain account's SID (S-1-5-21-a-b-c), else None."""
        if not self.is_domain_account:
            return None
        return Sid(self.revision, self.authority, self.subauthorities[:-1])

    def ldap_value(self) -> str:
        """The binary form escaped for an LDAP filter: (objectSid=\\01\\05…)."""
        return "".join(f"\\{b:02x}" for b in self.to_bytes())


def canonical_sid(text: str) -> str:
    """The canonical string of a SID given in any case; ValueError if it is not one."""
    return str(Sid.parse(text))


def is_sid(text: str) -> bool:
    try:
        Sid.parse(text)
    except ValueError:
        return False
    return True


def sid_domain(sid: str) -> str | None:
    """ "S-1-5-21-a-b-c" for "S-1-5-21-a-b-c-1104", else None."""
    domain = Sid.parse(sid).domain
    return str(domain) if domain else None


# Names as `icacls` and Explorer show them (MS-DTYP 2.4.2.4).
WELL_KNOWN: dict[str, str] = {
    "S-1-0-0": "NULL SID",
    "S-1-1-0": "Everyone",
    "S-1-2-0": "LOCAL",
    "S-1-2-1": "CONSOLE LOGON",
    "S-1-3-0": "CREATOR OWNER",
    "S-1-3-1": "CREATOR GROUP",
    "S-1-3-2": "CREATOR OWNER SERVER",
    "S-1-3-3": "CREATOR GROUP SERVER",
    "S-1-3-4": "OWNER RIGHTS",
    "S-1-5-1": "NT AUTHORITY\\DIALUP",
    "S-1-5-2": "NT AUTHORITY\\NETWORK",
    "S-1-5-3": "NT AUTHORITY\\BATCH",
    "S-1-5-4": "NT AUTHORITY\\INTERACTIVE",
    "S-1-5-6": "NT AUTHORITY\\SERVICE",
    "S-1-5-7": "NT AUTHORITY\\ANONYMOUS LOGON",
    "S-1-5-8": "NT AUTHORITY\\PROXY",
    "S-1-5-9": "NT AUTHORITY\\ENTERPRISE DOMAIN CONTROLLERS",
    "S-1-5-10": "NT AUTHORITY\\SELF",
    "S-1-5-11": "NT AUTHORITY\\Authenticated Users",
    "S-1-5-12": "NT AUTHORITY\\RESTRICTED",
    "S-1-5-13": "NT AUTHORITY\\TERMINAL SERVER USER",
    "S-1-5-14": "NT AUTHORITY\\REMOTE INTERACTIVE LOGON",
    "S-1-5-15": "NT AUTHORITY\\This Organization",
    "S-1-5-17": "NT AUTHORITY\\IUSR",
    "S-1-5-18": "NT AUTHORITY\\SYSTEM",
    "S-1-5-19": "NT AUTHORITY\\LOCAL SERVICE",
    "S-1-5-20": "NT AUTHORITY\\NETWORK SERVICE",
    "S-1-5-64-10": "NT AUTHORITY\\NTLM Authentication",
    "S-1-5-64-14": "NT AUTHORITY\\SChannel Authentication",
    "S-1-5-64-21": "NT AUTHORITY\\Digest Authentication",
    "S-1-5-80-0": "NT SERVICE\\ALL SERVICES",
    "S-1-5-113": "NT AUTHORITY\\Local account",
    "S-1-5-114": "NT AUTHORITY\\Local account and member of Administrators group",
    "S-1-5-1000": "NT AUTHORITY\\Other Organization",
    "S-1-15-2-1": "APPLICATION PACKAGE AUTHORITY\\ALL APPLICATION PACKAGES",
    "S-1-15-2-2": "APPLICATION PACKAGE AUTHORITY\\ALL RESTRICTED APPLICATION PACKAGES",
    "S-1-16-0": "Mandatory Label\\Untrusted Mandatory Level",
    "S-1-16-4096": "Mandatory Label\\Low Mandatory Level",
    "S-1-16-8192": "Mandatory Label\\Medium Mandatory Level",
    "S-1-16-12288": "Mandatory Label\\High Mandatory Level",
    "S-1-16-16384": "Mandatory Label\\System Mandatory Level",
    "S-1-18-1": "Authentication authority asserted identity",
    "S-1-18-2": "Service asserted identity",
}
BUILTIN: dict[str, str] = {
    f"S-1-5-32-{rid}": f"BUILTIN\\{name}"
    for rid, name in {
        544: "Administrators",
        545: "Users",
        546: "Guests",
        547: "Power Users",
        548: "Account Operators",
        549: "Server Operators",
        550: "Print Operators",
        551: "Backup Operators",
        552: "Replicator",
        554: "Pre-Windows 2000 Compatible Access",
        555: "Remote Desktop Users",
        556: "Network Configuration Operators",
        557: "Incoming Forest Trust Builders",
        558: "Performance Monitor Users",
        559: "Performance Log Users",
        560: "Windows Authorization Access Group",
        561: "Terminal Server License Servers",
        562: "Distributed COM Users",
        568: "IIS_IUSRS",
        569: "Cryptographic Operators",
        573: "Event Log Readers",
        574: "Certificate Service DCOM Access",
        575: "RDS Remote Access Servers",
        576: "RDS Endpoint Servers",
        577: "RDS Management Servers",
        578: "Hyper-V Administrators",
        579: "Access Control Assistance Operators",
        580: "Remote Management Users",
    }.items()
}
# Accounts every domain has, by relative id (named when the directory cannot be asked).
DOMAIN_RIDS: dict[int, str] = {
    500: "Administrator",
    501: "Guest",
    502: "krbtgt",
    512: "Domain Admins",
    513: "Domain Users",
    514: "Domain Guests",
    515: "Domain Computers",
    516: "Domain Controllers",
    517: "Cert Publishers",
    518: "Schema Admins",
    519: "Enterprise Admins",
    520: "Group Policy Creator Owners",
    521: "Read-only Domain Controllers",
    522: "Cloneable Domain Controllers",
    525: "Protected Users",
    526: "Key Admins",
    527: "Enterprise Key Admins",
    553: "RAS and IAS Servers",
    571: "Allowed RODC Password Replication Group",
    572: "Denied RODC Password Replication Group",
}
# Stand-ins replaced by the real owner or group when an object is created: they are not
# identities that a destination could be given.
PSEUDO_PRINCIPALS = frozenset({"S-1-3-0", "S-1-3-1", "S-1-3-2", "S-1-3-3", "S-1-3-4", "S-1-5-10"})
EVERYONE = "S-1-1-0"
AUTHENTICATED_USERS = "S-1-5-11"


def local_name(sid: str) -> tuple[str, str] | None:
    """(kind, name) of a SID that is the same everywhere, without asking a directory:
    ("well_known", "Everyone"), ("builtin", "BUILTIN\\Administrators"), … else None."""
    sid = canonical_sid(sid)
    if sid in WELL_KNOWN:
        return "well_known", WELL_KNOWN[sid]
    if sid in BUILTIN:
        return "builtin", BUILTIN[sid]
    parsed = Sid.parse(sid)
    subs = parsed.subauthorities
    if parsed.authority == 5 and subs[:1] == (32,) and len(subs) == 2:
        return "builtin", f"BUILTIN\\{sid}"  # an alias we have no name for: never guessed
    if parsed.authority == 5 and subs[:1] in ((80,), (82,), (83,)):
        return "well_known", f"NT SERVICE\\{sid}"  # service SIDs are hashes of names
    if parsed.authority == 5 and subs[:1] == (5,) and len(subs) == 3:
        return "well_known", "NT AUTHORITY\\LogonSessionId"
    if parsed.authority == 22 and len(subs) == 2 and subs[0] in (1, 2):
        kind = "Unix User" if subs[0] == 1 else "Unix Group"  # Samba's uid/gid SIDs
        return "well_known", f"{kind}\\{subs[1]}"
    if parsed.authority == 16:
        return "well_known", f"Mandatory Label\\{sid}"
    return None


def well_known_name(
    sid: str, *, domain_sid: str | None = None, domain_name: str | None = None
) -> str | None:
    """A SID's name when it needs no directory: well-known, BUILTIN, or (given the domain)
    one of the accounts every domain has ("EXAMPLE\\Domain Users")."""
    local = local_name(sid)
    if local:
        return local[1]
    parsed = Sid.parse(sid)
    if domain_sid and parsed.domain and str(parsed.domain) == canonical_sid(domain_sid):
        name = DOMAIN_RIDS.get(parsed.rid or 0)
        if name:
            return f"{domain_name}\\{name}" if domain_name else name
    return None


@dataclass(frozen=True, slots=True)
class Principal:
    """What a SID stands for, as far as we could tell.

    kind: "user", "group", "computer" (from the directory), "foreign" (a foreign security
    principal: an account of another, trusted domain), "well_known", "builtin" (resolved
    without a directory), "orphaned" (resolves nowhere: a deleted account, a local account
    of the old server, a domain we cannot see; `detail` says which).
    """

    sid: str
    kind: str
    name: str  # "EXAMPLE\\alice", "BUILTIN\\Administrators", "Everyone"; the SID if orphaned
    account: str | None = None  # sAMAccountName
    upn: str | None = None
    mail: str | None = None
    display_name: str | None = None
    enabled: bool | None = None
    dn: str | None = None
    detail: str = ""

    @property
    def resolved(self) -> bool:
        return self.kind != "orphaned"

    @property
    def label(self) -> str:
        """The name for a report: "EXAMPLE\\alice", "S-1-5-21-…-1112 (orphaned)"."""
        return f"{self.name} ({self.kind})" if self.kind in ("orphaned", "foreign") else self.name

    @property
    def is_group(self) -> bool:
        return self.kind in ("group", "builtin")


def local_principal(sid: str) -> Principal | None:
    """A Principal for a well-known or BUILTIN SID, else None."""
    local = local_name(sid)
    if local is None:
        return None
    return Principal(canonical_sid(sid), local[0], local[1])


# --- access masks -------------------------------------------------------------------------

FILE_READ_DATA = 0x00000001  # list folder, on a folder
FILE_WRITE_DATA = 0x00000002  # create files
FILE_APPEND_DATA = 0x00000004  # create folders
FILE_READ_EA = 0x00000008
FILE_WRITE_EA = 0x00000010
FILE_EXECUTE = 0x00000020  # traverse folder
FILE_DELETE_CHILD = 0x00000040
FILE_READ_ATTRIBUTES = 0x00000080
FILE_WRITE_ATTRIBUTES = 0x00000100
DELETE = 0x00010000
READ_CONTROL = 0x00020000
WRITE_DAC = 0x00040000
WRITE_OWNER = 0x00080000
SYNCHRONIZE = 0x00100000
ACCESS_SYSTEM_SECURITY = 0x01000000
MAXIMUM_ALLOWED = 0x02000000
GENERIC_ALL = 0x10000000
GENERIC_EXECUTE = 0x20000000
GENERIC_WRITE = 0x40000000
GENERIC_READ = 0x80000000

# What the generic rights mean on files and folders (the file object's GENERIC_MAPPING)
FILE_GENERIC_READ = (
    READ_CONTROL | FILE_READ_DATA | FILE_READ_ATTRIBUTES | FILE_READ_EA | SYNCHRONIZE
)
FILE_GENERIC_WRITE = (
    READ_CONTROL
    | FILE_WRITE_DATA
    | FILE_WRITE_ATTRIBUTES
    | FILE_WRITE_EA
    | FILE_APPEND_DATA
    | SYNCHRONIZE
)
FILE_GENERIC_EXECUTE = READ_CONTROL | FILE_READ_ATTRIBUTES | FILE_EXECUTE | SYNCHRONIZE
FILE_ALL_ACCESS = sdmod.FILE_ALL_ACCESS  # 0x1f01ff
GENERIC_MAPPING = {
    GENERIC_READ: FILE_GENERIC_READ,
    GENERIC_WRITE: FILE_GENERIC_WRITE,
    GENERIC_EXECUTE: FILE_GENERIC_EXECUTE,
    GENERIC_ALL: FILE_ALL_ACCESS,
}

# Windows' standard permission groupings (the Security tab's checkboxes)
FULL_CONTROL = FILE_ALL_ACCESS  # 0x1f01ff
MODIFY = sdmod.FILE_MODIFY  # 0x1301bf
READ_EXECUTE = sdmod.FILE_READ_EXECUTE  # 0x1200a9 (also "list folder contents")
READ = FILE_GENERIC_READ  # 0x120089
WRITE = FILE_WRITE_DATA | FILE_APPEND_DATA | FILE_WRITE_EA | FILE_WRITE_ATTRIBUTES | SYNCHRONIZE

RIGHT_NAMES: dict[int, str] = {
    FILE_READ_DATA: "read data",
    FILE_WRITE_DATA: "write data",
    FILE_APPEND_DATA: "append data",
    FILE_READ_EA: "read extended attributes",
    FILE_WRITE_EA: "write extended attributes",
    FILE_EXECUTE: "execute",
    FILE_DELETE_CHILD: "delete subfolders and files",
    FILE_READ_ATTRIBUTES: "read attributes",
    FILE_WRITE_ATTRIBUTES: "write attributes",
    DELETE: "delete",
    READ_CONTROL: "read permissions",
    WRITE_DAC: "change permissions",
    WRITE_OWNER: "take ownership",
    SYNCHRONIZE: "synchronize",
    ACCESS_SYSTEM_SECURITY: "access system security",
    MAXIMUM_ALLOWED: "maximum allowed",
    GENERIC_ALL: "generic all",
    GENERIC_EXECUTE: "generic execute",
    GENERIC_WRITE: "generic write",
    GENERIC_READ: "generic read",
}


def map_generic(mask: int) -> int:
    """Replace GENERIC_* bits with the specific file rights they stand for."""
    for generic, specific in GENERIC_MAPPING.items():
        if mask & generic:
            mask = (mask & ~generic) | specific
    return mask


def rights_names(mask: int) -> tuple[str, ...]:
    """Each right in `mask`, in words, lowest bit first; unknown bits as hex."""
    names = []
    for bit in range(32):
        if mask & (1 << bit):
            names.append(RIGHT_NAMES.get(1 << bit, f"0x{1 << bit:08x}"))
    return tuple(names)


_MASK_WORDS = {
    FULL_CONTROL: "full control",
    MODIFY: "modify",
    READ_EXECUTE: "read & execute",
    READ: "read",
    WRITE: "write",
    READ | WRITE: "read, write",
    READ_EXECUTE | WRITE: "read & execute, write",
}


def mask_words(mask: int) -> str:
    """A mask as the Security tab names it ("modify"), else its rights listed."""
    mask = map_generic(mask)
    if mask in _MASK_WORDS:
        return _MASK_WORDS[mask]
    if mask | SYNCHRONIZE in _MASK_WORDS:  # some tools leave SYNCHRONIZE out
        return _MASK_WORDS[mask | SYNCHRONIZE]
    return "special: " + ", ".join(rights_names(mask)) if mask else "no rights"


class Level(enum.StrEnum):
    """The three levels destinations understand, lowest first."""

    READ = "read"
    WRITE = "write"  # modify: read, write, delete
    FULL = "full"  # full control: also change permissions and take ownership

    @property
    def rank(self) -> int:
        return _LEVEL_ORDER.index(self)

    @property
    def mask(self) -> int:
        """The standard NTFS grouping this level stands for."""
        return LEVEL_MASKS[self]


_LEVEL_ORDER = (Level.READ, Level.WRITE, Level.FULL)
LEVEL_MASKS = {Level.READ: READ_EXECUTE, Level.WRITE: MODIFY, Level.FULL: FULL_CONTROL}
# Not required for a level: execute (traverse) and synchronize mean nothing to a
# destination's read/write/full, and Windows' own "Read" grouping leaves execute out.
_NOT_REQUIRED = FILE_EXECUTE | SYNCHRONIZE


def level_of(mask: int) -> tuple[Level | None, int]:
    """(the highest level that `mask` fully grants, the rights of `mask` that level lacks).

    Generic rights are mapped first. A mask that grants less than read gives (None, mask):
    nothing can be expressed. Lost rights other than execute/synchronize mean "narrowed".
    """
    mask = map_generic(mask)
    for level in reversed(_LEVEL_ORDER):
        needed = level.mask & ~_NOT_REQUIRED
        if mask & needed == needed:
            return level, mask & ~level.mask
    return None, mask


# --- ACE views ------------------------------------------------------------------------------


class Scope(enum.StrEnum):
    """Where an ACE applies (the "Applies to" column of Windows' advanced security)."""

    THIS = "this"  # this folder (or file) only
    THIS_SUBFOLDERS_FILES = "this_subfolders_files"
    THIS_SUBFOLDERS = "this_subfolders"
    THIS_FILES = "this_files"
    SUBFOLDERS_FILES = "subfolders_files"
    SUBFOLDERS = "subfolders"
    FILES = "files"

    @classmethod
    def from_flags(cls, flags: int) -> Scope:
        folders = bool(flags & sdmod.CONTAINER_INHERIT_ACE)
        files = bool(flags & sdmod.OBJECT_INHERIT_ACE)
        this = not flags & sdmod.INHERIT_ONLY_ACE or not (folders or files)
        return cls.of(this=this, folders=folders, files=files)

    @classmethod
    def of(cls, *, this: bool, folders: bool, files: bool) -> Scope:
        return _SCOPES[(this, folders, files)]

    @property
    def parts(self) -> tuple[bool, bool, bool]:
        """(applies to this object, to subfolders, to files below)."""
        return _SCOPE_PARTS[self]

    @property
    def flags(self) -> int:
        """The ACE inheritance flags for this scope."""
        this, folders, files = self.parts
        flags = (sdmod.CONTAINER_INHERIT_ACE if folders else 0) | (
            sdmod.OBJECT_INHERIT_ACE if files else 0
        )
        return flags | (sdmod.INHERIT_ONLY_ACE if not this else 0)

    def union(self, other: Scope) -> Scope:
        (a, b, c), (x, y, z) = self.parts, other.parts
        return Scope.of(this=a or x, folders=b or y, files=c or z)

    @property
    def words(self) -> str:
        return _SCOPE_WORDS[self]


_SCOPE_PARTS = {
    Scope.THIS: (True, False, False),
    Scope.THIS_SUBFOLDERS_FILES: (True, True, True),
    Scope.THIS_SUBFOLDERS: (True, True, False),
    Scope.THIS_FILES: (True, False, True),
    Scope.SUBFOLDERS_FILES: (False, True, True),
    Scope.SUBFOLDERS: (False, True, False),
    Scope.FILES: (False, False, True),
}
_SCOPES = {parts: scope for scope, parts in _SCOPE_PARTS.items()}
_SCOPE_WORDS = {
    Scope.THIS: "this folder only",
    Scope.THIS_SUBFOLDERS_FILES: "this folder, subfolders and files",
    Scope.THIS_SUBFOLDERS: "this folder and subfolders",
    Scope.THIS_FILES: "this folder and files",
    Scope.SUBFOLDERS_FILES: "subfolders and files only",
    Scope.SUBFOLDERS: "subfolders only",
    Scope.FILES: "files only",
}


@dataclass(frozen=True, slots=True)
class AceView:
    """One ACE, read for translation: generic rights mapped, flags named."""

    principal: str  # SID string ("" for an ACE we could not parse)
    type: str  # "allow", "deny", "allow_object", "allow_callback", … (sd.ACE_TYPES)
    mask: int  # with generic rights mapped to file rights
    flags: int
    raw_mask: int  # as written in the descriptor

    @classmethod
    def of(cls, ace: Ace) -> AceView:
        return cls(ace.sid, ace.type, map_generic(ace.mask), ace.flags, ace.mask)

    @property
    def allow(self) -> bool:
        return self.type == "allow"

    @property
    def deny(self) -> bool:
        return self.type.startswith("deny")

    @property
    def inherited(self) -> bool:
        return bool(self.flags & sdmod.INHERITED_ACE)

    @property
    def inherit_only(self) -> bool:
        return bool(self.flags & sdmod.INHERIT_ONLY_ACE)

    @property
    def container_inherit(self) -> bool:
        return bool(self.flags & sdmod.CONTAINER_INHERIT_ACE)

    @property
    def object_inherit(self) -> bool:
        return bool(self.flags & sdmod.OBJECT_INHERIT_ACE)

    @property
    def no_propagate(self) -> bool:
        return bool(self.flags & sdmod.NO_PROPAGATE_INHERIT_ACE)

    @property
    def scope(self) -> Scope:
        return Scope.from_flags(self.flags)

    @property
    def level(self) -> Level | None:
        return level_of(self.mask)[0]

    @property
    def rights(self) -> str:
        return mask_words(self.mask)

    def words(self, name: str | None = None, *, is_dir: bool | None = None) -> str:
        """The entry in words: "EXAMPLE\\Finance: modify, inherited", "EXAMPLE\\bob: deny
        full control". The scope is named unless it is the usual one (a folder's "this
        folder, subfolders and files", a file's own)."""
        who = name or WELL_KNOWN.get(self.principal) or BUILTIN.get(self.principal)
        who = who or self.principal or "(unreadable ACE)"
        kind = "" if self.allow else ("deny " if self.type == "deny" else f"{self.type} ")
        parts = [f"{who}: {kind}{self.rights}"]
        scope = self.scope
        if scope is not Scope.THIS_SUBFOLDERS_FILES and (scope is not Scope.THIS or is_dir):
            parts.append(scope.words)
        if self.no_propagate:
            parts.append("this level only")
        if self.inherited:
            parts.append("inherited")
        return ", ".join(parts)


def describe_acl(
    sd: SecurityDescriptor,
    names: Mapping[str, str] | Callable[[str], str | None] | None = None,
    *,
    is_dir: bool | None = None,
) -> list[str]:
    """Every DACL entry in words, in order, for the permissions report."""
    if sd.dacl is None:
        return ["no DACL: everyone has full control"]
    return [AceView.of(ace).words(_name(ace.sid, names), is_dir=is_dir) for ace in sd.dacl]


def _name(sid: str, names) -> str | None:
    if names is None or not sid:
        return None
    return names(sid) if callable(names) else names.get(sid)


# --- grants and translation ------------------------------------------------------------------


class DenyPolicy(enum.StrEnum):
    REPORT = "report"  # translate the allows, list every deny in the report
    REFUSE = "refuse"  # an item that a deny applies to fails with reason `deny_ace`


REASON_DENY_ACE = "deny_ace"


@dataclass(frozen=True, slots=True)
class Grant:
    """Access for one principal (a SID) at one level, where the ACE put it."""

    principal: str
    level: Level
    scope: Scope = Scope.THIS
    inherited: bool = False
    no_propagate: bool = False

    def words(self, name: str | None = None) -> str:
        who = name or WELL_KNOWN.get(self.principal) or BUILTIN.get(self.principal)
        parts = [f"{who or self.principal}: {self.level.value}"]
        if self.scope is not Scope.THIS_SUBFOLDERS_FILES and self.scope is not Scope.THIS:
            parts.append(self.scope.words)
        if self.inherited:
            parts.append("inherited")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Narrowed:
    """An allow entry granted at a lower level than its mask (or not at all: level None)."""

    ace: AceView
    level: Level | None
    lost: tuple[str, ...]  # the rights the destination will not give, in words

    def words(self, name: str | None = None) -> str:
        given = self.level.value if self.level else "nothing"
        return f"{self.ace.words(name)} → {given} (lost: {', '.join(self.lost)})"


@dataclass(frozen=True, slots=True)
class AclTranslation:
    """What `translate` made of one security descriptor."""

    grants: tuple[Grant, ...]
    narrowed: tuple[Narrowed, ...] = ()
    denied: tuple[AceView, ...] = ()
    unsupported: tuple[AceView, ...] = ()  # object, callback (conditional), audit, unreadable
    protected: bool = False  # inheritance from the parent is broken here
    owner: str | None = None
    refused_reason: str | None = None  # REASON_DENY_ACE under DenyPolicy.REFUSE
    inherited_skipped: int = 0  # inherited ACEs left to the destination's inheritance
    notes: tuple[str, ...] = field(default=())

    @property
    def refused(self) -> bool:
        return self.refused_reason is not None

    @property
    def principals(self) -> frozenset[str]:
        """Every SID the descriptor's translated entries name (to resolve and map)."""
        sids = {g.principal for g in self.grants}
        sids.update(n.ace.principal for n in self.narrowed)
        sids.update(a.principal for a in self.denied)
        if self.owner:
            sids.add(self.owner)
        return frozenset(s for s in sids if s)


def translate(
    sd: SecurityDescriptor,
    *,
    deny_policy: DenyPolicy | str = DenyPolicy.REPORT,
    inheritance: bool = True,
) -> AclTranslation:
    """Translate a security descriptor to grants.

    inheritance=True (the destination reproduces inheritance): only explicit ACEs count,
    inherit-only ones included, since they are what children inherit; inherited ACEs are
    left to the destination (counted in `inherited_skipped`). inheritance=False (every
    object carries its own ACL): the ACEs that apply to this object, explicit or inherited,
    each granted on the object itself.

    Deny entries are never dropped: listed in `denied` under "report"; under "refuse", an
    item that any deny applies to gets no grants and `refused_reason` "deny_ace".
    Descriptors are immutable and few distinct ones repeat over many files, so results
    are cached.
    """
    return _translate(sd, DenyPolicy(deny_policy), inheritance)


@functools.lru_cache(maxsize=4096)
def _translate(sd: SecurityDescriptor, policy: DenyPolicy, inheritance: bool) -> AclTranslation:
    if sd.dacl is None:
        scope = Scope.THIS_SUBFOLDERS_FILES if inheritance else Scope.THIS
        return AclTranslation(
            grants=(Grant(EVERYONE, Level.FULL, scope),),
            protected=sd.protected,
            owner=sd.owner,
            notes=("no DACL: everyone has full control",),
        )
    views = [AceView.of(ace) for ace in sd.dacl]
    effective = [v for v in views if not v.inherit_only]
    considered = [v for v in views if not v.inherited] if inheritance else effective
    notes = () if sd.dacl else ("empty DACL: nobody has access",)
    skipped = len(views) - len(considered)

    if policy is DenyPolicy.REFUSE:
        denies = tuple(v for v in effective if v.deny)
        if denies:
            return AclTranslation(
                grants=(),
                denied=denies,
                protected=sd.protected,
                owner=sd.owner,
                refused_reason=REASON_DENY_ACE,
                inherited_skipped=skipped,
                notes=notes,
            )

    denied: list[AceView] = []
    unsupported: list[AceView] = []
    # 1. allow ACEs of one principal, scope and origin add up (Windows often splits one
    #    permission over several ACEs)
    masks: dict[tuple[str, Scope, bool, bool], int] = {}
    firsts: dict[tuple[str, Scope, bool, bool], AceView] = {}
    for view in considered:
        if view.deny:
            denied.append(view)
            continue
        if not view.allow or not view.principal:
            unsupported.append(view)
            continue
        scope = view.scope if inheritance else Scope.THIS
        key = (view.principal, scope, view.inherited, view.no_propagate and inheritance)
        masks[key] = masks.get(key, 0) | view.mask
        firsts.setdefault(key, view)

    # 2. each to a level; what the level cannot hold is reported
    leveled: dict[tuple[str, Level, bool, bool], Scope] = {}
    narrowed: list[Narrowed] = []
    for key, mask in masks.items():
        principal, scope, inherited, no_propagate = key
        level, lost = level_of(mask)
        lost &= ~_NOT_REQUIRED
        if lost or level is None:
            first = firsts[key]
            merged = AceView(principal, "allow", mask, first.flags, mask)
            narrowed.append(Narrowed(merged, level, rights_names(lost or mask)))
        if level is None:
            continue
        # 3. one grant per principal and level, over the union of the scopes
        gkey = (principal, level, inherited, no_propagate)
        leveled[gkey] = leveled[gkey].union(scope) if gkey in leveled else scope

    grants = tuple(
        Grant(principal, level, scope, inherited, no_propagate)
        for (principal, level, inherited, no_propagate), scope in leveled.items()
    )
    # an allow at a lower level is implied by a higher one over the same scope
    grants = tuple(
        g
        for g in grants
        if not any(
            o.principal == g.principal
            and o.level.rank > g.level.rank
            and o.inherited == g.inherited
            and (g.no_propagate or not o.no_propagate)
            and o.scope.union(g.scope) is o.scope
            for o in grants
        )
    )
    return AclTranslation(
        grants=grants,
        narrowed=tuple(narrowed),
        denied=tuple(denied),
        unsupported=tuple(unsupported),
        protected=sd.protected,
        owner=sd.owner,
        inherited_skipped=skipped,
        notes=notes,
    )


def distinct_sids(translations: Iterable[AclTranslation]) -> set[str]:
    """All SIDs named by some translations (the set to resolve in one batch)."""
    sids: set[str] = set()
    for translation in translations:
        sids |= translation.principals
    return sids
