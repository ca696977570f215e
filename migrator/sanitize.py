"""File-name sanitization per destination profile, and the per-job exclusion rules.

A `Profile` is a small declarative rule set (what a destination refuses or handles
badly). A `Sanitizer` applies one profile, plus the destination's own hard limits (what
its connector declares in `capabilities`), to one name component at a time and says
which rules fired:

    s = Sanitizer.for_destination("smb")                # windows rules, case-insensitive
    s.sanitize_name("CON.txt")   -> ("CON_.txt", ("reserved_name",))
    s.sanitize_path("a:b/c. ")   -> PathResult(path="a_b/c__", renames=(...), refused=None)

Everything here is deterministic: the same name always gives the same result, on any
machine and in any pass, so a renamed folder renames every path under it the same way.
Uniqueness within a folder is the caller's to enforce (it knows the siblings, in the
database): it stores `collision_key(new_name)` with a per-folder unique constraint and
asks `unique_in_folder` for a stable alternative when the key is taken.

Plain Python: no Django here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from migrator.storage import Capabilities, capabilities_of
from migrator.storage.gcs_limits import NAME_LIMITS as GCS_NAMES

# --- rule codes (stored on manifest rows and in events; never rename one) -------------

INVALID_UNICODE = "invalid_unicode"  # a lone surrogate: not encodable as UTF-8
UNICODE_NFC = "unicode_nfc"  # the name was not in Unicode NFC
DOT_NAME = "dot_name"  # "." or ".."
EMPTY_NAME = "empty_name"  # "" (e.g. "a//b" in an object store)
CONTROL_CHAR = "control_char"
FORBIDDEN_CHAR = "forbidden_char"
FOUR_BYTE_UNICODE = "4byte_unicode"  # outside the Basic Multilingual Plane (emoji, ...)
LEADING_TRAILING_SPACE = "leading_trailing_space"
TRAILING_DOT_SPACE = "trailing_dot_space"
FORBIDDEN_PREFIX = "forbidden_prefix"  # "~$..."
FORBIDDEN_SUBSTRING = "forbidden_substring"  # "..._vti_..."
FORBIDDEN_NAME = "forbidden_name"  # ".lock", "desktop.ini"
RESERVED_NAME = "reserved_name"  # CON, PRN, AUX, NUL, COM0-9, LPT0-9 with any extension
RESERVED_PATH = "reserved_path"  # GCS: ".well-known/acme-challenge/..."
TOO_LONG = "too_long"  # component over the byte/char limit: shortened with a hash
COLLISION = "collision"  # disambiguated by unique_in_folder
PATH_TOO_LONG = "path_too_long"  # whole path over the limit: the item is refused

RULES = (
    INVALID_UNICODE,
    UNICODE_NFC,
    DOT_NAME,
    EMPTY_NAME,
    CONTROL_CHAR,
    FORBIDDEN_CHAR,
    FOUR_BYTE_UNICODE,
    LEADING_TRAILING_SPACE,
    TRAILING_DOT_SPACE,
    FORBIDDEN_PREFIX,
    FORBIDDEN_SUBSTRING,
    FORBIDDEN_NAME,
    RESERVED_NAME,
    RESERVED_PATH,
    TOO_LONG,
    COLLISION,
    PATH_TOO_LONG,
)

# Windows device names; the superscript digits are reserved too (Microsoft's naming docs).
DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{dev}{d}" for dev in ("COM", "LPT") for d in "0123456789\u00b9\u00b2\u00b3"]
)

# A component never holds the separator, and NUL ends a name in every API we write to.
ALWAYS_FORBIDDEN = frozenset("/\x00")

TAG_SEPARATOR = "~"  # "name~1a2b3c4d.ext": shortened or disambiguated names
HASH_CHARS = 8
MAX_EXTENSION_CHARS = 16  # a longer "extension" is just part of the name


# --- profiles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What a destination refuses in a name. Lengths: bytes are UTF-8, chars are UTF-16
    code units (what Windows and SharePoint count), None means no limit.
    """

    name: str
    forbidden_chars: frozenset[str] = frozenset()
    control_chars: bool = False  # Unicode category Cc: U+0000-001F, U+007F-009F
    trailing_dot_space: bool = False  # windows: no trailing "." or " "
    trailing_dot: bool = False  # egnyte: no trailing "."
    leading_trailing_space: bool = False  # sharepoint, egnyte
    reserved_names: frozenset[str] = frozenset()  # device stems, any extension, any case
    forbidden_prefixes: tuple[str, ...] = ()  # ASCII, any case
    forbidden_substrings: tuple[str, ...] = ()  # ASCII, any case
    forbidden_names: frozenset[str] = frozenset()  # exact, ASCII, any case
    reserved_paths: tuple[str, ...] = ()  # no object name may start with "<this>/"
    max_component_bytes: int | None = None
    max_component_chars: int | None = None
    max_path_bytes: int | None = None
    max_path_chars: int | None = None
    no_4byte_unicode: bool = False
    normalization: str | None = "NFC"  # the default a Sanitizer uses; None = leave as is
    case_insensitive: bool = False  # the destination folds case: twins must be told apart

    def combined_with(self, other: Profile | None) -> Profile:
        """The stricter of both on every rule (a profile plus a destination's hard limits)."""
        if other is None:
            return self

        def least(a: int | None, b: int | None) -> int | None:
            return b if a is None else a if b is None else min(a, b)

        def union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return a + tuple(x for x in b if x not in a)

        return Profile(
            name=self.name if other.name == self.name else f"{self.name}+{other.name}",
            forbidden_chars=self.forbidden_chars | other.forbidden_chars,
            control_chars=self.control_chars or other.control_chars,
            trailing_dot_space=self.trailing_dot_space or other.trailing_dot_space,
            trailing_dot=self.trailing_dot or other.trailing_dot,
            leading_trailing_space=self.leading_trailing_space or other.leading_trailing_space,
            reserved_names=self.reserved_names | other.reserved_names,
            forbidden_prefixes=union(self.forbidden_prefixes, other.forbidden_prefixes),
            forbidden_substrings=union(self.forbidden_substrings, other.forbidden_substrings),
            forbidden_names=self.forbidden_names | other.forbidden_names,
            reserved_paths=union(self.reserved_paths, other.reserved_paths),
            max_component_bytes=least(self.max_component_bytes, other.max_component_bytes),
            max_component_chars=least(self.max_component_chars, other.max_component_chars),
            max_path_bytes=least(self.max_path_bytes, other.max_path_bytes),
            max_path_chars=least(self.max_path_chars, other.max_path_chars),
            no_4byte_unicode=self.no_4byte_unicode or other.no_4byte_unicode,
            normalization=self.normalization,
            case_insensitive=self.case_insensitive or other.case_insensitive,
        )

    # The checkers below are written apart from the Sanitizer's fixing code (regular
    # expressions here, character loops there) so that tests comparing them can fail.

    @cached_property
    def _char_checks(self) -> list[tuple[str, re.Pattern[str]]]:
        checks = [
            (INVALID_UNICODE, "[\ud800-\udfff]"),
            (FORBIDDEN_CHAR, "[" + re.escape("".join(sorted(self.forbidden_chars))) + "/\x00]"),
        ]
        if self.control_chars:
            checks.append((CONTROL_CHAR, "[\x00-\x1f\x7f-\x9f]"))
        if self.no_4byte_unicode:
            checks.append((FOUR_BYTE_UNICODE, "[\U00010000-\U0010ffff]"))
        return [(rule, re.compile(rx)) for rule, rx in checks]

    def violations(self, name: str) -> tuple[str, ...]:
        """The rule codes `name` (one path component) breaks; empty when it is valid."""
        found: list[str] = []
        if name == "":
            return (EMPTY_NAME,)
        if name in (".", ".."):
            found.append(DOT_NAME)
        found += [rule for rule, rx in self._char_checks if rx.search(name)]
        if self.leading_trailing_space and (name[0] == " " or name[-1] == " "):
            found.append(LEADING_TRAILING_SPACE)
        if (self.trailing_dot_space and name[-1] in ". ") or (
            self.trailing_dot and name[-1] == "."
        ):
            found.append(TRAILING_DOT_SPACE)
        folded = _ascii_lower(name)
        if any(folded.startswith(_ascii_lower(p)) for p in self.forbidden_prefixes):
            found.append(FORBIDDEN_PREFIX)
        if any(_ascii_lower(s) in folded for s in self.forbidden_substrings):
            found.append(FORBIDDEN_SUBSTRING)
        if folded in {_ascii_lower(n) for n in self.forbidden_names}:
            found.append(FORBIDDEN_NAME)
        if self.reserved_names:
            devices = "|".join(re.escape(d) for d in sorted(self.reserved_names))
            if re.fullmatch(rf"(?:{devices}) *(?:\..*)?", name, re.IGNORECASE | re.ASCII | re.S):
                found.append(RESERVED_NAME)
        if not _fits(name, self.max_component_bytes, self.max_component_chars):
            found.append(TOO_LONG)
        return tuple(found)

    def is_valid(self, name: str) -> bool:
        """True when the destination accepts `name` as one path component."""
        return not self.violations(name)

    def is_valid_path(self, path: str) -> bool:
        """True when every component is valid and the whole path fits the limits."""
        parts = path.split("/")
        if not all(self.is_valid(p) for p in parts):
            return False
        if any((path + "/").startswith(r.strip("/") + "/") for r in self.reserved_paths):
            return False
        return _fits(path, self.max_path_bytes, self.max_path_chars)


def _ascii_lower(text: str) -> str:
    # Only ASCII letters fold: the patterns are ASCII, and indices must not shift.
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, what Windows and SharePoint count as characters."""
    if text.isascii():  # O(1) in CPython: the common case skips the encode
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2  # a lone surrogate is 1 unit


def _utf8_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _fits(text: str, max_bytes: int | None, max_chars: int | None) -> bool:
    if max_bytes is not None and _utf8_len(text) > max_bytes:
        return False
    return max_chars is None or utf16_len(text) <= max_chars


# GCS's own limits (1,024 bytes, CR/LF, the acme-challenge prefix) as its connector
# declares them, plus what Google's naming guidelines advise against ('#', wildcards, controls)
GCS = Profile(
    name="gcs",
    forbidden_chars=GCS_NAMES.forbidden_chars | frozenset("#[]*?"),
    control_chars=True,
    reserved_paths=GCS_NAMES.reserved_paths,
    max_component_bytes=GCS_NAMES.max_name_bytes,  # a part is no longer than the whole name
    max_path_bytes=GCS_NAMES.max_path_bytes,
)
WINDOWS = Profile(
    name="windows",
    forbidden_chars=frozenset('"*:<>?/\\|'),
    control_chars=True,
    trailing_dot_space=True,
    reserved_names=DEVICE_NAMES,
    max_component_chars=255,
    max_path_chars=260,  # MAX_PATH: what Explorer and most Windows programs still enforce
    case_insensitive=True,
)
SMB = dataclasses.replace(WINDOWS, name="smb")
SHAREPOINT = dataclasses.replace(
    WINDOWS,
    name="sharepoint",
    leading_trailing_space=True,
    forbidden_prefixes=("~$",),
    forbidden_substrings=("_vti_",),
    forbidden_names=frozenset({".lock", "desktop.ini"}),
    max_path_chars=400,
)
EGNYTE = Profile(
    name="egnyte",
    forbidden_chars=frozenset('\\/":<>|*?'),
    control_chars=True,
    trailing_dot=True,
    leading_trailing_space=True,
    no_4byte_unicode=True,
    max_component_bytes=245,
    max_path_bytes=5000,
    case_insensitive=True,
)
POSIX = Profile(name="posix", forbidden_chars=frozenset("\x00/"))

PROFILES: dict[str, Profile] = {p.name: p for p in (GCS, WINDOWS, SMB, SHAREPOINT, EGNYTE, POSIX)}

DESTINATION_PROFILES = {
    "gs": "gcs",
    "smb": "smb",
    "file": "posix",
    "synthetic": "posix",
    "null": "posix",
    "sftp": "posix",  # a Unix server's file system: 255-byte names (the connector's)
    "azure": "posix",  # a blob name is any Unicode (the connector's 1,024 characters apply)
    "s3": "posix",  # a key is any UTF-8 (the connector's 1,024 bytes apply): kept as it is
}


def profile_for_destination(kind: str) -> Profile:
    """The default profile for a destination kind ("gs", "smb", "file")."""
    try:
        return PROFILES[DESTINATION_PROFILES[kind]]
    except KeyError:
        raise ValueError(f"no sanitization profile for destination kind {kind!r}") from None


def hard_limits_from(name: str, capabilities: Capabilities) -> Profile:
    """The rules a storage refuses names by, as its connector's capabilities declare them."""
    base = WINDOWS if capabilities.windows_names else POSIX
    return dataclasses.replace(
        base,
        name=name,
        forbidden_chars=base.forbidden_chars | capabilities.forbidden_chars,
        reserved_paths=capabilities.reserved_paths,
        max_component_bytes=capabilities.max_name_bytes,
        max_component_chars=capabilities.max_name_units,
        max_path_bytes=capabilities.max_path_bytes,
        max_path_chars=capabilities.max_path_units,
        case_insensitive=capabilities.case_insensitive,
    )


@functools.cache
def hard_limits_for(kind: str) -> Profile:
    """The rules the destination itself enforces, applied on top of any profile: what the
    connector of that kind ("gs", "smb", "file") declares in its capabilities."""
    try:
        capabilities = capabilities_of(f"{kind}://")
    except ValueError:
        raise ValueError(f"unknown destination kind {kind!r}") from None
    return hard_limits_from(f"{kind}-limits", capabilities)


def get_profile(name: str) -> Profile:
    """A profile by name; ValueError naming the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(
            f"unknown sanitization profile {name!r}: expected one of {known}"
        ) from None


def short_hash(text: str) -> str:
    """8 hex chars of the SHA-256 of `text`: the stable tag in shortened/disambiguated names."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


def collision_key(name: str, *, case_insensitive: bool, normalize: bool = True) -> str:
    """The key under which a destination folder holds `name`: two names with one key
    are one name there.

    NFC when names are normalised or case is folded; for case-insensitive destinations
    then upper-cased and case-folded, so every pair that the simple upcase tables of NTFS
    or Samba equate ("ı"/"I", "ß"/"ẞ") shares a key. Folding too much only costs an
    unneeded suffix; folding too little would lose a file.
    """
    if name.isascii():  # NFC leaves ASCII alone; upper().casefold() is lower() there
        return name.lower() if case_insensitive else name
    key = unicodedata.normalize("NFC", name) if normalize or case_insensitive else name
    if case_insensitive:
        key = unicodedata.normalize("NFC", key.upper().casefold())
    return key


# --- the sanitizer ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rename:
    """One component of a path that sanitization changed."""

    index: int  # position of the component in the path, 0 = top level
    original: str
    new: str
    rules: tuple[str, ...]


@dataclass(frozen=True)
class PathResult:
    """A sanitized path. `refused` is a rule code when the item cannot be written at all
    (then `path` is what it would have been, for the report)."""

    original: str
    path: str
    renames: tuple[Rename, ...] = ()
    refused: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused is None

    @property
    def changed(self) -> bool:
        return self.path != self.original

    @property
    def rules(self) -> tuple[str, ...]:
        """Every rule that fired, in order, each once; the refusal last."""
        seen = dict.fromkeys(rule for r in self.renames for rule in r.rules)
        if self.refused:
            seen[self.refused] = None
        return tuple(seen)


_PROFILE_DEFAULT: Any = object()
_CACHE_SIZE = 50_000


class Sanitizer:
    """Applies a profile (and the destination's hard limits) to names, deterministically.

    Options a job may override: `replacement` (one printable ASCII character, "_" by
    default), `normalize` ("NFC", or None to keep names as they are; the profile's choice
    by default) and `case_insensitive` (None: the profile's or the destination's).
    """

    def __init__(
        self,
        profile: Profile | str,
        *,
        replacement: str = "_",
        normalize: str | None = _PROFILE_DEFAULT,
        case_insensitive: bool | None = None,
        hard: Profile | None = None,
    ) -> None:
        chosen = get_profile(profile) if isinstance(profile, str) else profile
        self.chosen = chosen
        self.hard = hard
        effective = chosen.combined_with(hard)
        if normalize is _PROFILE_DEFAULT:
            normalize = chosen.normalization
        if isinstance(normalize, str) and normalize.lower() == "none":
            normalize = None
        if normalize not in (None, "NFC"):
            raise ValueError(f"normalize must be 'NFC' or None, not {normalize!r}")
        if case_insensitive is None:
            case_insensitive = effective.case_insensitive
        # The destination's own case folding cannot be switched off by a job.
        case_insensitive = bool(case_insensitive or (hard is not None and hard.case_insensitive))
        self.profile = dataclasses.replace(
            effective, normalization=normalize, case_insensitive=case_insensitive
        )
        self.normalize = normalize
        self.case_insensitive = case_insensitive
        self.replacement = replacement
        self._check_replacement()
        self._prefixes = [
            re.compile(re.escape(p), re.IGNORECASE | re.ASCII)
            for p in self.profile.forbidden_prefixes
        ]
        self._substrings = [
            re.compile(re.escape(s), re.IGNORECASE | re.ASCII)
            for s in self.profile.forbidden_substrings
        ]
        self._forbidden_names = {_ascii_lower(n) for n in self.profile.forbidden_names}
        self._devices = {_ascii_lower(d) for d in self.profile.reserved_names}
        self._reserved_paths = [tuple(r.strip("/").split("/")) for r in self.profile.reserved_paths]
        self._cache: dict[str, tuple[str, tuple[str, ...]]] = {}
        # Most names are printable ASCII the profile allows anywhere: for them `_plain`
        # decides "unchanged" without the character loops of a full pass.
        refused = sorted(
            c for c in map(chr, range(0x20, 0x7F))
            if c in self.profile.forbidden_chars or c in ALWAYS_FORBIDDEN
        )  # fmt: skip
        self._refused_printable = (
            re.compile("[" + re.escape("".join(refused)) + "]").search if refused else None
        )
        limits = [n for n in (self.profile.max_component_bytes, self.profile.max_component_chars)
                  if n is not None]  # fmt: skip
        self._plain_max = min(limits) if limits else None

    @classmethod
    def for_destination(
        cls, kind: str, profile: Profile | str | None = None, **options: Any
    ) -> Sanitizer:
        """The sanitizer for a destination kind: its default profile unless one is named,
        always with the destination's hard limits."""
        chosen = profile_for_destination(kind) if profile is None else profile
        return cls(chosen, hard=hard_limits_for(kind), **options)

    @classmethod
    def from_options(cls, kind: str, options: Mapping[str, Any] | None) -> Sanitizer:
        """The sanitizer a job's options ask for ("profile", "replacement", "normalize",
        "case_insensitive") at a destination of `kind`; ValueError in words."""
        options = options or {}
        extra = {
            k: options[k] for k in ("replacement", "normalize", "case_insensitive") if k in options
        }
        return cls.for_destination(kind, options.get("profile") or None, **extra)

    def __repr__(self) -> str:
        return (
            f"Sanitizer({self.profile.name!r}, replacement={self.replacement!r}, "
            f"normalize={self.normalize!r}, case_insensitive={self.case_insensitive})"
        )

    def _check_replacement(self) -> None:
        r = self.replacement
        ok = (
            len(r) == 1
            and r.isascii()
            and r.isprintable()
            and r not in " ."
            and all(self.profile.is_valid(n) for n in (r, r + "a", "a" + r, "a" + r + "a"))
        )
        if not ok:
            raise ValueError(
                f"replacement {r!r} must be one printable ASCII character, not a space or a "
                f"dot, that the {self.profile.name} profile allows anywhere in a name"
            )

    # -- one component ------------------------------------------------------------------

    def sanitize_name(self, name: str, *, parent: str = "") -> tuple[str, tuple[str, ...]]:
        """(new_name, rules_fired) for one path component; rules_fired is () when the name
        is fine as it is. `parent` is the destination path of its folder (relative to the
        destination's root), needed only for path rules such as GCS's acme-challenge."""
        if self._plain(name):
            new, rules = name, ()
        else:
            cached = self._cache.get(name)
            if cached is None:
                cached = self._sanitize_component(name)
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.clear()
                self._cache[name] = cached
            new, rules = cached
        if self._reserved_paths and self._in_reserved_path(parent, new):
            new = self.replacement + new
            rules = (*rules, RESERVED_PATH)
        return new, rules

    def _plain(self, name: str) -> bool:
        """True when `name` is printable ASCII that no rule of the profile changes, so
        `_sanitize_component` would return it as it is (a property test holds both to
        the same answer). Anything else takes the full path."""
        # isascii() and isprintable(): exactly the characters U+0020-U+007E
        if not (name and name.isascii() and name.isprintable()) or name in (".", ".."):
            return False
        if self._refused_printable is not None and self._refused_printable(name):
            return False
        p = self.profile
        first, last = name[0], name[-1]
        if p.leading_trailing_space and (first == " " or last == " "):
            return False
        if (p.trailing_dot_space and last in ". ") or (p.trailing_dot and last == "."):
            return False
        if self._prefixes and any(rx.match(name) for rx in self._prefixes):
            return False
        if self._substrings and any(rx.search(name) for rx in self._substrings):
            return False
        if self._forbidden_names and name.lower() in self._forbidden_names:
            return False
        if self._devices and name.split(".", 1)[0].rstrip(" ").lower() in self._devices:
            return False
        # ASCII: bytes, chars and UTF-16 units are one count
        return self._plain_max is None or len(name) <= self._plain_max

    def _in_reserved_path(self, parent: str, name: str) -> bool:
        parts = tuple(parent.split("/")) if parent else ()
        return any(parts + (name,) == reserved for reserved in self._reserved_paths)

    def _sanitize_component(self, original: str) -> tuple[str, tuple[str, ...]]:
        fired: dict[str, None] = {}
        name = original
        # Every step only replaces or inserts ASCII characters, so passes settle quickly;
        # repeating until nothing changes makes the result a fixed point (idempotent).
        for _ in range(10):
            new = self._one_pass(name, original, fired)
            if new == name:
                break
            name = new
        if not self.profile.is_valid(name):  # never expected; refuse to return a bad name
            raise AssertionError(f"sanitizing {original!r} gave invalid {name!r}")
        return name, tuple(fired)

    def _one_pass(self, name: str, original: str, fired: dict[str, None]) -> str:
        r = self.replacement
        p = self.profile

        chars = list(name)
        for i, ch in enumerate(chars):
            cp = ord(ch)
            if 0xD800 <= cp <= 0xDFFF:
                chars[i], fired[INVALID_UNICODE] = r, None
        name = "".join(chars)

        if self.normalize:
            normal = unicodedata.normalize(self.normalize, name)
            if normal != name:
                name, fired[UNICODE_NFC] = normal, None

        if name == "":
            fired[EMPTY_NAME] = None
            return r
        if name in (".", ".."):
            fired[DOT_NAME] = None
            return r * len(name)

        chars = list(name)
        for i, ch in enumerate(chars):
            if p.control_chars and unicodedata.category(ch) == "Cc":
                chars[i], fired[CONTROL_CHAR] = r, None
            elif ch in p.forbidden_chars or ch in ALWAYS_FORBIDDEN:
                chars[i], fired[FORBIDDEN_CHAR] = r, None
            elif p.no_4byte_unicode and ord(ch) > 0xFFFF:
                chars[i], fired[FOUR_BYTE_UNICODE] = r, None
        name = "".join(chars)

        if p.leading_trailing_space and (name.startswith(" ") or name.endswith(" ")):
            if name.strip(" ") == "":
                name = r * len(name)
            else:
                lead = len(name) - len(name.lstrip(" "))
                trail = len(name) - len(name.rstrip(" "))
                name = r * lead + name[lead : len(name) - trail] + r * trail
            fired[LEADING_TRAILING_SPACE] = None
        trailing = ". " if p.trailing_dot_space else "." if p.trailing_dot else ""
        if trailing and name.endswith(tuple(trailing)):
            core = name.rstrip(trailing)
            name = core + r * (len(name) - len(core))
            fired[TRAILING_DOT_SPACE] = None

        for pattern in self._prefixes:
            while m := pattern.match(name):
                name = self._replace_first_other(name, m.start(), m.end())
                fired[FORBIDDEN_PREFIX] = None
        for pattern in self._substrings:
            while m := pattern.search(name):
                name = self._replace_first_other(name, m.start(), m.end())
                fired[FORBIDDEN_SUBSTRING] = None

        if _ascii_lower(name) in self._forbidden_names:
            stem_end = name.find(".") if "." in name else len(name)
            name = name[:stem_end] + r + name[stem_end:]
            fired[FORBIDDEN_NAME] = None

        if self._devices:
            device = name.split(".", 1)[0].rstrip(" ")
            if _ascii_lower(device) in self._devices:
                name = device + r + name[len(device) :]
                fired[RESERVED_NAME] = None

        if not _fits(name, p.max_component_bytes, p.max_component_chars):
            name = self._with_tag(name, short_hash(original))
            fired[TOO_LONG] = None
        return name

    def _replace_first_other(self, name: str, start: int, end: int) -> str:
        # Replace the first character of the match that is not already the replacement,
        # so "~$doc" -> "_$doc" and "_vti_" -> "__ti_": each step makes progress.
        for i in range(start, end):
            if name[i] != self.replacement:
                return name[:i] + self.replacement + name[i + 1 :]
        raise AssertionError("a forbidden pattern made only of the replacement character")

    def _with_tag(self, name: str, tag: str) -> str:
        """`name` with "~tag" before its extension, the stem shortened to fit the limits."""
        p = self.profile
        dot = name.rfind(".")
        ext = name[dot:] if dot > 0 and len(name) - dot <= MAX_EXTENSION_CHARS else ""
        stem = name[: len(name) - len(ext)]
        suffix = TAG_SEPARATOR + tag + ext
        if not _fits(suffix, p.max_component_bytes, p.max_component_chars):
            suffix = TAG_SEPARATOR + tag
        budget_bytes, budget_chars = p.max_component_bytes, p.max_component_chars
        used_bytes, used_chars = _utf8_len(suffix), utf16_len(suffix)
        keep = 0
        for ch in stem:
            b, c = _utf8_len(ch), utf16_len(ch)
            if budget_bytes is not None and used_bytes + b > budget_bytes:
                break
            if budget_chars is not None and used_chars + c > budget_chars:
                break
            used_bytes, used_chars, keep = used_bytes + b, used_chars + c, keep + 1
        return stem[:keep] + suffix

    # -- folders ------------------------------------------------------------------------

    def collision_key(self, name: str) -> str:
        """What two names must not share within one folder at this destination (see the
        module-level `collision_key`). Store it with a per-folder unique constraint."""
        return collision_key(
            name, case_insensitive=self.case_insensitive, normalize=bool(self.normalize)
        )

    def unique_in_folder(
        self,
        candidate: str,
        taken: Callable[[str], bool] | Collection[str],
        original: str,
    ) -> str:
        """`candidate` (a sanitized name), or when another source name already holds its
        collision key, "stem~<hash of original>.ext": stable across passes, valid for the
        profile. `taken` answers for collision keys: a set of them, or a callable (e.g. a
        database lookup that ignores the row of `original` itself)."""
        is_taken = taken if callable(taken) else taken.__contains__
        if not is_taken(self.collision_key(candidate)):
            return candidate
        attempt = 0
        while True:
            seed = original if attempt == 0 else f"{original}\x00{attempt}"
            name = self._with_tag(candidate, short_hash(seed))
            name, _ = self._sanitize_component(name)  # a no-op unless the tag exposed a rule
            if not is_taken(self.collision_key(name)):
                return name
            attempt += 1

    def assign_names(self, names: Iterable[str]) -> dict[str, str]:
        """Destination names for every entry of one folder listing: {original: new}.

        Names that need no change are placed first, so a valid "a_b" keeps its name and
        the renamed "a:b" gets the suffix, whatever the listing order.
        """
        sanitized = {n: self._sanitize_component(n)[0] for n in sorted(set(names))}
        keys: set[str] = set()
        result: dict[str, str] = {}
        for unchanged in (True, False):
            for original, candidate in sanitized.items():
                if (candidate == original) is unchanged:
                    chosen = self.unique_in_folder(candidate, keys, original)
                    keys.add(self.collision_key(chosen))
                    result[original] = chosen
        return result

    # -- paths --------------------------------------------------------------------------

    def sanitize_path(self, path: str, *, root: str = "") -> PathResult:
        """Sanitize every component of a relative "/"-separated path. `root` is the
        destination folder the path goes under; it counts toward the path limit.

        Components are mapped one by one, so a renamed folder renames every path under it
        the same way. A path over the limit is refused (PATH_TOO_LONG), never truncated.
        Uniqueness among siblings is not checked here: see `unique_in_folder`.
        """
        if path == "":
            return PathResult(original=path, path=path)
        new_parts: list[str] = []
        renames: list[Rename] = []
        root = root.strip("/")
        for index, part in enumerate(path.split("/")):
            parent = "/".join([root, *new_parts] if root else new_parts)
            new, rules = self.sanitize_name(part, parent=parent)
            if rules:
                renames.append(Rename(index, part, new, rules))
            new_parts.append(new)
        new_path = "/".join(new_parts)
        full = f"{root}/{new_path}" if root else new_path
        refused = None
        if not _fits(full, self.profile.max_path_bytes, self.profile.max_path_chars):
            refused = PATH_TOO_LONG
        return PathResult(original=path, path=new_path, renames=tuple(renames), refused=refused)


__all__ = [
    "COLLISION",
    "CONTROL_CHAR",
    "DEVICE_NAMES",
    "DOT_NAME",
    "EGNYTE",
    "EMPTY_NAME",
    "FORBIDDEN_CHAR",
    "FORBIDDEN_NAME",
    "FORBIDDEN_PREFIX",
    "FORBIDDEN_SUBSTRING",
    "FOUR_BYTE_UNICODE",
    "GCS",
    "INVALID_UNICODE",
    "LEADING_TRAILING_SPACE",
    "PATH_TOO_LONG",
    "POSIX",
    "PROFILES",
    "RESERVED_NAME",
    "RESERVED_PATH",
    "RULES",
    "SHAREPOINT",
    "SMB",
    "TOO_LONG",
    "TRAILING_DOT_SPACE",
    "UNICODE_NFC",
    "WINDOWS",
    "collision_key",
    "PathResult",
    "Profile",
    "Rename",
    "Sanitizer",
    "get_profile",
    "hard_limits_for",
    "hard_limits_from",
    "profile_for_destination",
    "short_hash",
    "utf16_len",
]
