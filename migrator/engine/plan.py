"""Planning: where each scanned entry goes at the destination, or why it does not.

Names are sanitized for the destination profile, made unique within their folder, and
filtered by the job's exclusion rules. The planner sees the scan in its order (a folder
just before its contents), so it keeps only the folders open on the current path: memory
grows with the depth and width of one path, never with the tree.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter
from dataclasses import dataclass, field

from migrator.sanitize import COLLISION, PATH_TOO_LONG, Sanitizer, _fits
from migrator.storage.base import Entry, ScanError, StorageError

from .filters import Filters


@dataclass(slots=True)
class Planned:
    state: str  # "pending", "excluded" or "failed"
    dest_path: str = ""
    dest_key: str = ""
    reason: str = ""
    message: str = ""
    renamed_from: str = ""  # the destination path the name would have had unsanitized
    rules: tuple[str, ...] = ()


@dataclass(slots=True)
class _Folder:
    rel: str
    dest_rel: str
    taken: set[str] = field(default_factory=set)
    excluded: str = ""  # reason, when the whole subtree is excluded
    dest_full: str = ""  # dest_rel under the mapping's prefix


def unsafe_reason(rel: str) -> str:
    """A path no destination name can be made of: absolute, or holding NUL. (Parts
    "", "." and "..", which object stores allow, are names the sanitizer renames.)"""
    if not rel:
        return ""
    if "\x00" in rel:
        return "name contains a NUL character"
    if rel.startswith(("/", "\\")):  # "C:x" is a name here; the profile handles ':'
        return (
            "the name begins with a separator right below the source folder (an absolute "
            "path here): choose the folder above it as the source to carry it over"
        )
    return ""


class NamePlanner:
    """Plans the entries of one mapping (source folder -> destination prefix)."""

    def __init__(self, sanitizer: Sanitizer, filters: Filters, dest_prefix: str = "") -> None:
        self.sanitizer = sanitizer
        self.filters = filters
        self.prefix = dest_prefix.strip("/")
        self.stack = [_Folder("", "", dest_full=self.prefix)]

    def _full(self, dest_rel: str) -> str:
        if self.prefix and dest_rel:
            return f"{self.prefix}/{dest_rel}"
        return self.prefix or dest_rel

    def _parent(self, parent_rel: str) -> _Folder:
        while len(self.stack) > 1 and not (
            parent_rel == self.stack[-1].rel or parent_rel.startswith(self.stack[-1].rel + "/")
        ):
            self.stack.pop()
        top = self.stack[-1]
        if top.rel == parent_rel:
            return top
        # out of scan order (not expected): place the parent by plain sanitizing
        result = self.sanitizer.sanitize_path(parent_rel[len(top.rel) :].strip("/"))
        dest_rel = "/".join(p for p in (top.dest_rel, result.path) if p)
        folder = _Folder(parent_rel, dest_rel, dest_full=self._full(dest_rel))
        self.stack.append(folder)
        return folder

    def plan(self, rel: str, item: Entry | ScanError) -> Planned:
        """Plan one entry, `rel` being its path relative to the mapping's source folder."""
        unsafe = unsafe_reason(rel)
        if unsafe:
            return Planned("failed", reason="unsafe_path", message=unsafe)
        top = self.stack[-1]
        if isinstance(item, ScanError) and rel and top.rel == rel:
            # the listing of the folder planned just before was refused: it is the same
            # item (engine.scan gives its one row this outcome), not a name of its own
            message = str(item.error)
            return Planned("failed", top.dest_full, reason=item.error.reason, message=message)
        parent_rel, _, name = rel.rpartition("/")
        parent = self._parent(parent_rel)
        kind = item.kind
        if parent.excluded:
            if kind == "dir":
                self.stack.append(_Folder(rel, "", excluded=parent.excluded))
            return Planned("excluded", reason=parent.excluded, message="its folder is excluded")

        sanitizer = self.sanitizer
        new, rules = sanitizer.sanitize_name(name, parent=parent.dest_full)
        key = sanitizer.collision_key(new)
        chosen = new
        if key in parent.taken:
            chosen = sanitizer.unique_in_folder(new, parent.taken, name)
            rules = (*rules, COLLISION)
            key = sanitizer.collision_key(chosen)
        parent.taken.add(key)
        dest_rel = f"{parent.dest_rel}/{chosen}" if parent.dest_rel else chosen
        full = f"{parent.dest_full}/{chosen}" if parent.dest_full else chosen
        planned = Planned("pending", dest_path=full, rules=rules)
        original = self._full(rel)
        if full != original:
            planned.renamed_from = original
        planned.dest_key = sanitizer.collision_key(full)

        if isinstance(item, ScanError):
            planned.state, planned.reason = "failed", item.error.reason
            planned.message = str(item.error)
            return planned
        reason = ""
        if kind == "link":
            reason = "symlink"
        else:
            reason = (
                self.filters.excluded_reason(rel, kind, item.size, item.mtime_ns, item.attributes)
                or ""
            )
        if kind == "dir":
            self.stack.append(_Folder(rel, dest_rel, excluded=reason, dest_full=full))
        if reason:
            planned.state, planned.reason = "excluded", reason
            planned.dest_key = ""
            return planned
        profile = self.sanitizer.profile
        if not _fits(full, profile.max_path_bytes, profile.max_path_chars):
            planned.state, planned.reason = "failed", PATH_TOO_LONG
            planned.message = "the destination path is longer than the destination allows"
            planned.dest_key = ""
        return planned


# --- assessment -------------------------------------------------------------------------

SIZE_BUCKETS = [
    (0, "empty"), (4 << 10, "≤ 4 KB"), (64 << 10, "≤ 64 KB"), (1 << 20, "≤ 1 MB"),
    (16 << 20, "≤ 16 MB"), (256 << 20, "≤ 256 MB"), (4 << 30, "≤ 4 GB"), (None, "> 4 GB"),
]  # fmt: skip
EXAMPLES = 20
SAMPLE_FILES, SAMPLE_EVERY = 40, 7
TOP = 20
SECONDS_7_DAYS = 7 * 24 * 3600


class Assessment:
    """Figures about a source, collected while it is scanned (bounded memory)."""

    def __init__(self, *, now_ns: int, max_file_size: int | None = None) -> None:
        self.now_ns = now_ns
        self.max_file_size = max_file_size
        self.files = self.folders = self.bytes = 0
        self.histogram = Counter()
        self.ext_count: Counter[str] = Counter()
        self.ext_bytes: Counter[str] = Counter()
        self.deepest: list[tuple[int, str]] = []
        self.longest: list[tuple[int, str]] = []
        self.rules: Counter[str] = Counter()
        self.rule_examples: dict[str, list[tuple[str, str]]] = {}
        self.refused: Counter[str] = Counter()
        self.refused_examples: dict[str, list[str]] = {}
        self.excluded: Counter[str] = Counter()
        self.too_large: list[tuple[str, int]] = []
        self.too_large_count = 0
        self.recent = 0
        self.unreadable: list[tuple[str, str]] = []
        self.unreadable_count = 0
        self.empty_folders = 0
        self._open: list[tuple[str, int]] = []  # (folder path, children seen)
        self.empty_examples: list[str] = []
        self.samples: list[str] = []  # a few files to read for a throughput estimate

    def _close_folders(self, path: str) -> None:
        while self._open and not path.startswith(self._open[-1][0] + "/"):
            folder, children = self._open.pop()
            if children == 0:
                self.empty_folders += 1
                if len(self.empty_examples) < EXAMPLES:
                    self.empty_examples.append(folder)
        if self._open:
            folder, children = self._open[-1]
            self._open[-1] = (folder, children + 1)

    def add(self, path: str, item: Entry | ScanError, planned: Planned) -> None:
        if isinstance(item, ScanError) and self._open and self._open[-1][0] == path:
            self._open.pop()  # a folder that could not be listed is not "empty"
        self._close_folders(path)
        if isinstance(item, ScanError):
            self.unreadable_count += 1
            if len(self.unreadable) < EXAMPLES:
                self.unreadable.append((path, item.error.reason))
        elif item.kind == "dir":
            self.folders += 1
            self._open.append((path, 0))
        elif item.kind == "file":
            self._add_file(path, item)
        for rule in planned.rules:
            self.rules[rule] += 1
            examples = self.rule_examples.setdefault(rule, [])
            if len(examples) < EXAMPLES:
                examples.append((planned.renamed_from or path, planned.dest_path))
        if planned.state == "failed" and not isinstance(item, ScanError):
            self.refused[planned.reason] += 1
            examples = self.refused_examples.setdefault(planned.reason, [])
            if len(examples) < EXAMPLES:
                examples.append(path)
        elif planned.state == "excluded":
            self.excluded[planned.reason] += 1

    def _add_file(self, path: str, item: Entry) -> None:
        self.files += 1
        if len(self.samples) < SAMPLE_FILES and self.files % SAMPLE_EVERY == 1:
            self.samples.append(path)
        self.bytes += item.size
        for limit, label in SIZE_BUCKETS:
            if limit is None or item.size <= limit:
                self.histogram[label] += 1
                break
        ext = os.path.splitext(item.name)[1].lower() or "(none)"
        self.ext_count[ext] += 1
        self.ext_bytes[ext] += item.size
        depth = path.count("/") + 1
        _keep_top(self.deepest, (depth, path))
        _keep_top(self.longest, (len(path.encode("utf-8", "surrogatepass")), path))
        if self.max_file_size is not None and item.size > self.max_file_size:
            self.too_large_count += 1
            if len(self.too_large) < EXAMPLES:
                self.too_large.append((path, item.size))
        if item.mtime_ns and self.now_ns - item.mtime_ns <= SECONDS_7_DAYS * 10**9:
            self.recent += 1

    def finish(self) -> dict:
        self._close_folders("\x00")  # closes every open folder
        return {
            "files": self.files,
            "folders": self.folders,
            "bytes": self.bytes,
            "histogram": [[label, self.histogram.get(label, 0)] for _, label in SIZE_BUCKETS],
            "extensions": [
                [ext, n, self.ext_bytes[ext]] for ext, n in self.ext_count.most_common(TOP)
            ],
            "extensions_by_bytes": [[ext, b] for ext, b in self.ext_bytes.most_common(TOP)],
            "deepest": [[d, p] for d, p in sorted(self.deepest, reverse=True)],
            "longest": [[n, p] for n, p in sorted(self.longest, reverse=True)],
            "renames_by_rule": dict(self.rules.most_common()),
            "rename_examples": self.rule_examples,
            "refused_by_rule": dict(self.refused.most_common()),
            "refused_examples": self.refused_examples,
            "excluded_by_reason": dict(self.excluded.most_common()),
            "too_large": self.too_large_count,
            "too_large_examples": self.too_large,
            "recent_7_days": self.recent,
            "empty_folders": self.empty_folders,
            "empty_folder_examples": self.empty_examples,
            "unreadable": self.unreadable_count,
            "unreadable_examples": self.unreadable,
        }


def _keep_top(heap: list, item: tuple) -> None:
    if len(heap) < TOP:
        heapq.heappush(heap, item)
    elif item > heap[0]:
        heapq.heapreplace(heap, item)


__all__ = ["Assessment", "NamePlanner", "Planned", "StorageError", "unsafe_reason"]
