"""Which entries a job leaves out (`Filters`), with a reason code for each: junk files,
include/exclude globs, size and date bounds, hidden and system attributes.

Plain Python: no Django here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

# --- exclusion rules --------------------------------------------------------------------

# Reason codes for excluded entries (stored on the manifest row).
JUNK_FILE = "junk_file"
EXCLUDED_BY_PATTERN = "excluded_by_pattern"
NOT_INCLUDED = "not_included"
TOO_SMALL = "too_small"
TOO_LARGE = "too_large"
MODIFIED_BEFORE = "modified_before"
MODIFIED_AFTER = "modified_after"
HIDDEN = "hidden"
SYSTEM = "system"

EXCLUSION_REASONS = (
    JUNK_FILE,
    EXCLUDED_BY_PATTERN,
    NOT_INCLUDED,
    TOO_SMALL,
    TOO_LARGE,
    MODIFIED_BEFORE,
    MODIFIED_AFTER,
    HIDDEN,
    SYSTEM,
)

FILE_ATTRIBUTE_HIDDEN = 0x2
FILE_ATTRIBUTE_SYSTEM = 0x4

# Matched case-insensitively against the file name.
DEFAULT_JUNK = ("Thumbs.db", "desktop.ini", ".DS_Store", "~$*")


def _glob_component(part: str) -> str:
    """Regex for one glob component: * and ? never cross "/", [...] as in fnmatch."""
    out: list[str] = []
    i = 0
    while i < len(part):
        ch = part[i]
        i += 1
        if ch == "*":
            if not out or out[-1] != "[^/]*":
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            j = i
            if j < len(part) and part[j] in "!^":
                j += 1
            if j < len(part) and part[j] == "]":
                j += 1
            j = part.find("]", j)
            if j < 0:
                out.append(re.escape("["))
                continue
            body = part[i:j]
            i = j + 1
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            body = re.sub(r"([\\&~|\[^])", r"\\\1", body)
            out.append(f"[{'^/' if negate else ''}{body}]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def glob_regex(pattern: str, *, case_sensitive: bool = False) -> re.Pattern[str]:
    """Compile a gitignore-flavoured glob for relative paths.

    A pattern without "/" matches a name at any depth ("*.tmp"); with one it is anchored
    at the root ("Projects/*/old", "/top.txt"). "**" as a whole component matches any
    number of folders ("**/cache/**", "a/**/b"). A trailing "/" is handled by the caller
    (folders only).
    """
    body = pattern.rstrip("/")
    anchored = "/" in body
    body = body.lstrip("/")
    parts = body.split("/")
    if not anchored:
        parts = ["**", *parts]
    regex = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            regex += ".+" if last else "(?:[^/]+/)*"
        else:
            regex += _glob_component(part) + ("" if last else "/")
    flags = re.S | (0 if case_sensitive else re.IGNORECASE)
    return re.compile(regex + r"\Z", flags)


@dataclass(frozen=True)
class Filters:
    """Which entries a job leaves out. Built from and saved as a plain dict (JSON).

    Sizes in bytes, times as ns since the epoch; None = no limit. Boundaries are kept:
    `min_size=10` keeps a 10-byte file. `exclude_modified_before_ns` leaves out files
    last modified before that instant (reason "modified_before"), and so on.
    """

    include: tuple[str, ...] = ()  # when given, a file must match one of these
    exclude: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    exclude_modified_before_ns: int | None = None
    exclude_modified_after_ns: int | None = None
    exclude_hidden: bool = False
    exclude_system: bool = False
    exclude_junk: bool = True
    junk: tuple[str, ...] = DEFAULT_JUNK
    case_sensitive: bool = False  # for patterns; file shares mostly fold case

    def __post_init__(self) -> None:
        for name in ("include", "exclude", "junk"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(p, str) and p for p in value):
                raise ValueError(f"filters: {name} must be a list of non-empty glob patterns")
            object.__setattr__(self, name, tuple(value))
        for name in (
            "min_size",
            "max_size",
            "exclude_modified_before_ns",
            "exclude_modified_after_ns",
        ):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"filters: {name} must be a non-negative integer or null")
        for name in ("exclude_hidden", "exclude_system", "exclude_junk", "case_sensitive"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"filters: {name} must be true or false")
        sizes = (self.min_size, self.max_size)
        if None not in sizes and sizes[0] > sizes[1]:
            raise ValueError("filters: min_size is larger than max_size")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Filters:
        """From the JSON stored on a job; missing keys take defaults, unknown keys are an
        error (a typo must not silently copy everything)."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"filters: unknown key(s) {', '.join(unknown)}")
        for name in ("include", "exclude", "junk"):
            if name in data and isinstance(data[name], list):
                data[name] = tuple(data[name])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: lists for patterns, ints or None for limits."""
        out = dataclasses.asdict(self)
        for name in ("include", "exclude", "junk"):
            out[name] = list(out[name])
        return out

    @property
    def is_default(self) -> bool:
        return self == Filters()

    @cached_property
    def _compiled(self) -> dict[str, list[tuple[re.Pattern[str], bool]]]:
        def compile_all(patterns: Iterable[str]) -> list[tuple[re.Pattern[str], bool]]:
            return [
                (glob_regex(p, case_sensitive=self.case_sensitive), p.endswith("/"))
                for p in patterns
            ]

        return {
            "include": compile_all(self.include),
            "exclude": compile_all(self.exclude),
            # junk globs only ever meet a name (no "/"): compiled anchored, without the
            # "(?:[^/]+/)*" any-folder prefix that could only match nothing there
            "junk": [
                (glob_regex("/" + p.strip("/"), case_sensitive=False), False) for p in self.junk
            ],
        }

    @cached_property
    def _combined(self) -> dict[str, tuple[re.Pattern[str] | None, re.Pattern[str] | None]]:
        """Per pattern list, one alternation for files (dir-only patterns left out) and
        one for folders: one regex call per entry instead of one per pattern."""

        def join(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
            if not patterns:
                return None
            return re.compile("|".join(f"(?:{rx.pattern})" for rx in patterns), patterns[0].flags)

        return {
            name: (
                join([rx for rx, dir_only in compiled if not dir_only]),
                join([rx for rx, _ in compiled]),
            )
            for name, compiled in self._compiled.items()
        }

    def _matches(self, which: str, path: str, is_dir: bool) -> bool:
        rx = self._combined[which][is_dir]
        return rx is not None and rx.match(path) is not None

    def _excluded_ancestor(self, path: str) -> str | None:
        # A flat listing (an object store has no folder entries) still honours folder rules.
        if not self.exclude and not self.exclude_hidden:
            return None
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if self._matches("exclude", folder, True):
                return EXCLUDED_BY_PATTERN
            if self.exclude_hidden and parts[depth - 1].startswith("."):
                return HIDDEN
        return None

    def excluded_reason(
        self,
        path: str,
        kind: str = "file",
        size: int = 0,
        mtime_ns: int = 0,
        attributes: int = 0,
    ) -> str | None:
        """The reason code for leaving this entry out, or None to keep it.

        `path` is relative ("a/b.txt"), `kind` "file" or "dir", `attributes` the Windows
        attribute bits where the source has them. An excluded folder excludes its subtree:
        callers skip its children (see `excludes_subtree`). Size and time rules and
        `include` apply to files only, so folders are walked to find included files.
        """
        is_dir = kind == "dir"
        name = path.rsplit("/", 1)[-1]
        if not is_dir and self.exclude_junk and self._matches("junk", name, False):
            return JUNK_FILE
        if self._matches("exclude", path, is_dir):
            return EXCLUDED_BY_PATTERN
        ancestor = self._excluded_ancestor(path)
        if ancestor:
            return ancestor
        if not is_dir:
            if self.include and not self._matches("include", path, False):
                return NOT_INCLUDED
            if self.min_size is not None and size < self.min_size:
                return TOO_SMALL
            if self.max_size is not None and size > self.max_size:
                return TOO_LARGE
            before = self.exclude_modified_before_ns
            if before is not None and mtime_ns < before:
                return MODIFIED_BEFORE
            after = self.exclude_modified_after_ns
            if after is not None and mtime_ns > after:
                return MODIFIED_AFTER
        if self.exclude_hidden and (
            attributes & FILE_ATTRIBUTE_HIDDEN or (name.startswith(".") and name not in (".", ".."))
        ):
            return HIDDEN
        if self.exclude_system and attributes & FILE_ATTRIBUTE_SYSTEM:
            return SYSTEM
        return None

    def excludes_subtree(self, path: str, attributes: int = 0) -> bool:
        """True when the folder at `path` is excluded, and with it everything under it."""
        return self.excluded_reason(path, "dir", attributes=attributes) is not None


__all__ = [
    "DEFAULT_JUNK",
    "EXCLUDED_BY_PATTERN",
    "EXCLUSION_REASONS",
    "FILE_ATTRIBUTE_HIDDEN",
    "FILE_ATTRIBUTE_SYSTEM",
    "Filters",
    "HIDDEN",
    "JUNK_FILE",
    "MODIFIED_AFTER",
    "MODIFIED_BEFORE",
    "NOT_INCLUDED",
    "SYSTEM",
    "TOO_LARGE",
    "TOO_SMALL",
    "glob_regex",
]
