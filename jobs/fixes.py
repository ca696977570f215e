"""What went wrong and what to do about it: one entry per reason code, and the error texts
we know, in words a customer can act on.

The errors report and the job pages group failures by cause (jobs.selectors.error_groups);
each group is told in these words. Staff also read the source's error text, normalised
(`normalise_error`); customers read only the words, which never hold a host, a share or
an account (the rule of jobs.plain): the one thing filled in is the folder, a path of the
customer's own files, which their pages show anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .choices import Reason

MAX_ERROR_TEXT = 200  # characters of a normalised error kept: a group's key, shown to staff


@dataclass(frozen=True)
class Fix:
    """`cause` says what happened, `fix` what to do; both may name {folder}, and the fix
    {attempts} (how often it was tried) and {profiles} (profiles with longer paths)."""

    cause: str
    fix: str


RETRY = "then Retry failed"

FIXES: dict[str, Fix] = {
    # failures
    Reason.VANISHED: Fix(
        "Deleted or moved at the source after the scan found it.",
        "Nothing to copy if it was deleted on purpose; if it was moved, run the job again "
        "to pick it up where it is now.",
    ),
    Reason.ACCESS_DENIED: Fix(
        "The migration account may not read it (or write it at the destination).",
        f"Grant the migration account read on {{folder}} (and write at the destination), {RETRY}.",
    ),
    Reason.LOCKED: Fix(
        "Another program holds it open or locked.",
        "Retried {attempts} times; ask users to close the files in {folder} (or copy out of "
        f"hours), {RETRY}.",
    ),
    Reason.NOT_FOUND: Fix(
        "Not found at the source when it was read.",
        "Check that {folder} still exists at the source, then run the job again.",
    ),
    Reason.UNSAFE_PATH: Fix(
        "Its path cannot be used at the destination: it would leave the destination "
        "folder, or something of that name is already there.",
        "Rename the item at the source, or move what is in the way in {folder} at the "
        f"destination, {RETRY}.",
    ),
    Reason.INVALID_NAME: Fix(
        "Its name cannot be held by the destination.",
        "Rename it at the source, or pick a naming profile that renames it, then run the "
        "job again.",
    ),
    Reason.CHECKSUM_MISMATCH: Fix(
        "What arrived at the destination differs from the source: nothing of it was kept.",
        "Usually a network or storage fault: Retry failed. If it fails again, check the "
        "storage of {folder}.",
    ),
    Reason.CHANGED_DURING_COPY: Fix(
        "It was being changed while it was copied (after {attempts} tries); no torn copy was kept.",
        f"Ask users to stop editing the files in {{folder}} (or copy out of hours), {RETRY}.",
    ),
    Reason.SOURCE_UNAVAILABLE: Fix(
        "The source stopped answering, even after retries.",
        f"Check that the source is reachable and not overloaded, {RETRY}.",
    ),
    Reason.DESTINATION_UNAVAILABLE: Fix(
        "The destination stopped answering, even after retries.",
        f"Check that the destination is reachable and has space, {RETRY}.",
    ),
    Reason.DESTINATION_ERROR: Fix(
        "The destination refused the write.",
        f"Check the destination's space, quota and permissions on {{folder}}, {RETRY}.",
    ),
    Reason.READ_ERROR: Fix(
        "The source could not be read.",
        f"Check the disk or storage holding {{folder}} at the source, {RETRY}.",
    ),
    Reason.IO_ERROR: Fix(
        "The storage reported an input/output error.",
        f"Check the storage holding {{folder}} (disk, share or bucket), {RETRY}.",
    ),
    Reason.UNSUPPORTED: Fix(
        "The storage does not support what copying it needs.",
        "Exclude it with a filter, or copy it by other means; support can tell you which.",
    ),
    Reason.CONNECT_FAILED: Fix(
        "The migration could not connect to the storage.",
        f"Check the endpoint's address and credentials (Test connection in the admin), {RETRY}.",
    ),
    Reason.PATH_TOO_LONG: Fix(
        "Its full path at the destination is longer than the destination's profile allows.",
        "Shorten the folder {folder} (fewer or shorter folder names) or pick {profiles}, "
        "then run the job again.",
    ),
    # exclusions: said for completeness, they are not failures
    Reason.SYMLINK: Fix("A symbolic link: links are not followed.", "Copy its target instead."),
    Reason.JUNK_FILE: Fix("A junk file no one needs.", "Nothing to do."),
    Reason.EXCLUDED_BY_PATTERN: Fix("Excluded by a pattern of the job.", "Change the pattern."),
    Reason.NOT_INCLUDED: Fix("Not matched by the include patterns.", "Change the patterns."),
    Reason.TOO_SMALL: Fix("Smaller than the job's minimum size.", "Change the size filter."),
    Reason.TOO_LARGE: Fix("Larger than the job's maximum size.", "Change the size filter."),
    Reason.MODIFIED_BEFORE: Fix("Modified before the job's cut-off.", "Change the cut-off."),
    Reason.MODIFIED_AFTER: Fix("Modified after the job's cut-off.", "Change the cut-off."),
    Reason.HIDDEN: Fix("A hidden file, excluded by the job.", "Include hidden files."),
    Reason.SYSTEM: Fix("A system file, excluded by the job.", "Include system files."),
    Reason.DESTINATION_NEWER: Fix(
        "The destination's copy is newer (the job keeps newer files).",
        "Nothing to do, or choose 'always overwrite'.",
    ),
    # catch-up and verify passes
    Reason.DESTINATION_CHANGED: Fix(
        "It was changed at the destination since the last pass wrote it, and the job lets the "
        "destination's version win.",
        "Nothing to do, or set the conflicts policy to 'source wins' or 'keep both' and run "
        "a catch-up pass.",
    ),
    Reason.VERIFY_MISMATCH: Fix(
        "The verify pass found the destination's copy different from the source "
        "(size, hash or modification time).",
        "Run a catch-up pass to copy it again, then verify again.",
    ),
    Reason.MISSING_AT_DESTINATION: Fix(
        "The verify pass did not find it at the destination.",
        "Check who removed it there, then run a catch-up pass to copy it again.",
    ),
    # permissions
    Reason.DENY_ACE: Fix(
        "Its permissions hold a deny entry, and the job refuses to copy those.",
        f"Remove the deny entry on {{folder}} at the source, or change the deny policy, {RETRY}.",
    ),
    Reason.ACL_FAILED: Fix(
        "Its permissions could not be read at the source or applied at the destination.",
        "Grant the migration account the right to read and change permissions on {folder}, "
        f"{RETRY}.",
    ),
    Reason.DIRECTORY_UNAVAILABLE: Fix(
        "The directory (Active Directory) did not answer, so its permissions could not be "
        "translated.",
        f"Check the customer's directory (Test directory connection in the admin), {RETRY}.",
    ),
}

# a connector's own code, when a batch could not open its connector at all
FIXES["unavailable"] = Fix(
    "The storage stopped answering, even after retries.",
    f"Check that the source and the destination are reachable, {RETRY}.",
)

UNKNOWN = Fix("It could not be copied.", f"Support can read the detail; {RETRY}.")

# error texts we know (searched in the normalised text, whatever the reason code)
KNOWN_ERRORS: tuple[tuple[re.Pattern[str], Fix], ...] = tuple(
    (re.compile(pattern, re.I), Fix(cause, fix))
    for pattern, cause, fix in (
        ("a folder has that name at the destination",
         "A folder at the destination has the file's name.",
         f"Rename or move that folder in {{folder}} at the destination, {RETRY}."),
        ("no space left|disk full|quota",
         "The destination is full.",
         f"Free space or raise the quota at the destination, {RETRY}."),
        ("name too long",
         "A name in its path is longer than the destination allows.",
         "Shorten the names in {folder}, or pick {profiles}, then run the job again."),
        ("operation not permitted|read-only file system",
         "The destination refused the change (the folder is protected or read-only).",
         f"Make {{folder}} writable at the destination, {RETRY}."),
        ("not valid unicode",
         "Its name is not valid text (bytes of an old encoding).",
         "Rename it at the source, then run the job again."),
    )
)  # fmt: skip

# the naming profiles that allow longer paths than the one a job uses
LONGER_PATHS = {
    "windows": "the sharepoint profile (400 characters) or posix (no limit), if the "
    "destination holds longer paths",
    "smb": "the sharepoint profile (400 characters) or posix (no limit), if the destination "
    "holds longer paths",
    "sharepoint": "the posix profile (no limit), if the destination holds longer paths",
}
ANY_LONGER = (
    "a profile that allows longer paths (posix has no limit), if the destination holds them"
)


def fix_for(reason: str, error: str = "") -> Fix:
    """The words for a reason code and, when it is one we know, the normalised error."""
    for pattern, fix in KNOWN_ERRORS:
        if pattern.search(error):
            return fix
    return FIXES.get(reason, UNKNOWN)


def folder_words(folder: str) -> str:
    return f"“{folder}”" if folder else "the top folder"


def advice(
    reason: str, error: str = "", *, folder: str = "", attempts: int = 0, profile: str = ""
) -> tuple[str, str]:
    """(cause, fix) in words, the folder and the figures filled in."""
    fix = fix_for(reason, error)
    values = {
        "folder": folder_words(folder),
        "attempts": max(attempts, 1),
        "profiles": LONGER_PATHS.get(profile, ANY_LONGER),
    }
    return fix.cause.format(**values), fix.fix.format(**values)


# --- the source's error text, normalised: what varies from item to item is replaced, so
# "permission denied: a/b.txt" and "permission denied: c/d.txt" are one cause ----------

_NORMALISE = (
    (re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.I), "<url>"),
    (re.compile(r"'[^']*'|\"[^\"]*\"|“[^”]*”|‘[^’]*’"), "<name>"),
    (re.compile(r"\\\\\S+|\S*[/\\]\S*"), "<path>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<host>"),
    (re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.I), "<hex>"),
    (re.compile(r"\d+"), "<n>"),
    (re.compile(r"\s+"), " "),
)


def strip_paths(message: str, *paths: str) -> str:
    """The message with the item's own paths as <path>: at its end ("access denied:
    docs/a.txt", as connectors say it), and anywhere when a path has folders (a bare
    name such as "denied" could be a word of the message)."""
    text = message
    for path in sorted((p for p in paths if p), key=len, reverse=True):
        if text.endswith(f": {path}"):
            text = text[: -len(path)] + "<path>"
        if "/" in path:
            text = text.replace(path, "<path>")
    return text


def normalise(text: str) -> str:
    """URLs, quoted names, paths, addresses, hex and numbers become placeholders."""
    for pattern, placeholder in _NORMALISE:
        text = pattern.sub(placeholder, text)
    return text.strip()[:MAX_ERROR_TEXT]


def normalise_error(message: str, *paths: str) -> str:
    """The error without what names one item: its own `paths`, then what `normalise`
    replaces."""
    return normalise(strip_paths(message, *paths))
