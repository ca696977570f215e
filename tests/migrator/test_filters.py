"""Exclusion rules: globs, sizes, times, hidden/system, junk; and their JSON form."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.engine import filters as s
from migrator.engine.filters import Filters, glob_regex

NS = 1_000_000_000


def reason(filters: Filters, path: str, **kw) -> str | None:
    return filters.excluded_reason(path, **kw)


# --- junk -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["Thumbs.db", "a/b/thumbs.DB", "desktop.ini", "x/.DS_Store", "~$report.docx"]
)
def test_default_junk(path):
    assert reason(Filters(), path) == s.JUNK_FILE
    assert reason(Filters(exclude_junk=False), path) is None


@pytest.mark.parametrize("path", ["Thumbs.db.bak", "my desktop.ini", "a~$b.docx", "x/DS_Store"])
def test_not_junk(path):
    assert reason(Filters(), path) is None


def test_junk_is_for_files_only():
    assert reason(Filters(), "Thumbs.db", kind="dir") is None


# --- globs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.tmp", "a.tmp", True),
        ("*.tmp", "deep/er/a.TMP", True),  # no "/": any depth; case-insensitive
        ("*.tmp", "a.tmpx", False),
        ("Projects/*/old", "Projects/x/old", True),
        ("Projects/*/old", "Projects/x/y/old", False),  # * never crosses "/"
        ("Projects/*/old", "z/Projects/x/old", False),  # anchored at the root
        ("/top.txt", "top.txt", True),
        ("/top.txt", "a/top.txt", False),
        ("**/cache/**", "cache/x", True),
        ("**/cache/**", "a/b/cache/x/y", True),
        ("**/cache/**", "a/cache", False),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("a/**/b", "ab", False),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file12.txt", False),
        ("[ab]*.log", "b1.log", True),
        ("[!ab]*.log", "b1.log", False),
        ("[!ab]*.log", "c1.log", True),
        ("[a-c].txt", "b.txt", True),
        ("a[.txt", "a[.txt", True),  # an unclosed bracket is literal
        ("a+b (1).txt", "a+b (1).txt", True),  # regex characters are literal
        ("~$*", "~$x.docx", True),
    ],
)
def test_glob(pattern, path, matches):
    assert bool(glob_regex(pattern).match(path)) is matches


def test_glob_case_sensitive_option():
    assert not glob_regex("*.TMP", case_sensitive=True).match("a.tmp")
    assert reason(Filters(exclude=("*.TMP",), case_sensitive=True), "a.tmp") is None


def test_exclude_pattern():
    f = Filters(exclude=("*.tmp", "build/", "node_modules"))
    assert reason(f, "a/x.tmp") == s.EXCLUDED_BY_PATTERN
    assert reason(f, "a/build", kind="dir") == s.EXCLUDED_BY_PATTERN
    assert reason(f, "a/build") is None  # "build/" is for folders only
    assert reason(f, "web/node_modules", kind="dir") == s.EXCLUDED_BY_PATTERN
    assert reason(f, "a/keep.txt") is None


def test_excluded_folder_excludes_its_subtree():
    f = Filters(exclude=("build/", "Archive/2019"))
    assert f.excludes_subtree("src/build")
    assert f.excludes_subtree("Archive/2019")
    assert not f.excludes_subtree("Archive/2020")
    # a flat listing (no folder entries, as in an object store) is excluded just the same
    assert reason(f, "src/build/out/a.o") == s.EXCLUDED_BY_PATTERN
    assert reason(f, "Archive/2019/q1.xlsx") == s.EXCLUDED_BY_PATTERN
    assert reason(f, "Archive/2019.xlsx") is None


def test_include_patterns_apply_to_files():
    f = Filters(include=("*.docx", "Finance/**"))
    assert reason(f, "a/b.docx") is None
    assert reason(f, "Finance/q/x.csv") is None
    assert reason(f, "a/b.pdf") == s.NOT_INCLUDED
    assert reason(f, "a", kind="dir") is None  # folders are walked to find included files


# --- size and time ----------------------------------------------------------------------


def test_size_limits_keep_the_boundaries():
    f = Filters(min_size=10, max_size=100)
    assert reason(f, "a", size=9) == s.TOO_SMALL
    assert reason(f, "a", size=10) is None
    assert reason(f, "a", size=100) is None
    assert reason(f, "a", size=101) == s.TOO_LARGE
    assert reason(f, "d", kind="dir", size=0) is None


def test_modified_before_and_after():
    f = Filters(exclude_modified_before_ns=100 * NS, exclude_modified_after_ns=200 * NS)
    assert reason(f, "a", mtime_ns=100 * NS - 1) == s.MODIFIED_BEFORE
    assert reason(f, "a", mtime_ns=100 * NS) is None
    assert reason(f, "a", mtime_ns=200 * NS) is None
    assert reason(f, "a", mtime_ns=200 * NS + 1) == s.MODIFIED_AFTER


# --- hidden and system ------------------------------------------------------------------


def test_hidden_and_system():
    f = Filters(exclude_hidden=True, exclude_system=True)
    assert reason(f, "a/x.txt", attributes=s.FILE_ATTRIBUTE_HIDDEN) == s.HIDDEN
    assert reason(f, "a/.env") == s.HIDDEN
    assert reason(f, ".git", kind="dir") == s.HIDDEN
    assert f.excludes_subtree(".git")
    assert f.excludes_subtree("x", attributes=s.FILE_ATTRIBUTE_HIDDEN)
    assert reason(f, ".git/config") == s.HIDDEN  # under a dot folder, in a flat listing
    assert reason(f, "pagefile.sys", attributes=s.FILE_ATTRIBUTE_SYSTEM) == s.SYSTEM
    assert reason(f, "a/x.txt", attributes=0x20) is None  # archive bit
    off = Filters()
    assert reason(off, "a/.env") is None
    assert reason(off, "x", attributes=s.FILE_ATTRIBUTE_HIDDEN | s.FILE_ATTRIBUTE_SYSTEM) is None


def test_first_reason_wins_in_a_stable_order():
    f = Filters(exclude=("*.db",), min_size=10, exclude_hidden=True)
    assert reason(f, "Thumbs.db", size=1, attributes=2) == s.JUNK_FILE
    assert reason(f, "x.db", size=1) == s.EXCLUDED_BY_PATTERN
    assert reason(f, ".x", size=1) == s.TOO_SMALL
    assert set(s.EXCLUSION_REASONS) == {
        "junk_file",
        "excluded_by_pattern",
        "not_included",
        "too_small",
        "too_large",
        "modified_before",
        "modified_after",
        "hidden",
        "system",
    }


# --- the JSON form ----------------------------------------------------------------------


def test_defaults_from_empty_dict():
    assert Filters.from_dict({}) == Filters()
    assert Filters.from_dict(None).is_default
    assert Filters().exclude_junk


def test_round_trip_through_json():
    f = Filters(
        include=("*.docx",),
        exclude=("build/", "**/tmp/**"),
        min_size=1,
        max_size=10**12,
        exclude_modified_before_ns=1_600_000_000 * NS,
        exclude_modified_after_ns=None,
        exclude_hidden=True,
        exclude_system=True,
        exclude_junk=False,
        junk=("*.bak",),
    )
    stored = json.loads(json.dumps(f.to_dict()))
    assert stored["exclude"] == ["build/", "**/tmp/**"]
    again = Filters.from_dict(stored)
    assert again == f
    assert reason(again, "x/build", kind="dir") == s.EXCLUDED_BY_PATTERN


@pytest.mark.parametrize(
    "bad",
    [
        {"exlcude": ["*.tmp"]},
        {"exclude": "*.tmp"},
        {"exclude": [""]},
        {"min_size": -1},
        {"max_size": "10"},
        {"min_size": 10, "max_size": 5},
        {"exclude_hidden": "yes"},
        {"exclude_modified_before_ns": 1.5},
        {"min_size": True},
    ],
)
def test_bad_dicts_are_refused(bad):
    with pytest.raises(ValueError, match="filters"):
        Filters.from_dict(bad)


patterns = st.lists(st.sampled_from(["*.tmp", "build/", "a/**", "/x", "[ab]?", "~$*"]), max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    include=patterns,
    exclude=patterns,
    min_size=st.none() | st.integers(0, 100),
    extra=st.none() | st.integers(0, 100),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
def test_any_filters_round_trip(include, exclude, min_size, extra, flags):
    max_size = None if min_size is None or extra is None else min_size + extra
    f = Filters(
        include=tuple(include),
        exclude=tuple(exclude),
        min_size=min_size,
        max_size=max_size,
        exclude_hidden=flags[0],
        exclude_system=flags[1],
        exclude_junk=flags[2],
        case_sensitive=flags[3],
    )
    assert Filters.from_dict(json.loads(json.dumps(f.to_dict()))) == f
