"""The scan's shortcuts in sanitize.py give the answers of the long ways they skip: plain
ASCII names, ASCII collision keys and lengths, and one alternation per pattern list."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.engine.filters import Filters
from migrator.sanitize import PROFILES, Sanitizer, collision_key, utf16_len

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TRICKY_ASCII = [
    "CON", "con", "Lpt1", "COM9", "nul", ".", "..", " ", "~$", "_vti_", "_VTI_", ".lock",
    "Desktop.INI", ".well-known", "acme-challenge", ":", "*", "?", "#", "[", "]", "\\", '"',
    "<", ">", "|", "\t", "\r", "\n", "\x00", "\x7f", "a", "Z", "0", "-", "_", "~", "$",
]  # fmt: skip
ascii_names = st.one_of(
    st.text(st.characters(max_codepoint=0x7F), max_size=40),
    st.lists(st.sampled_from(TRICKY_ASCII), max_size=8).map("".join),
    st.text(st.sampled_from("ab. "), min_size=240, max_size=270),  # around the length limits
)
any_names = st.one_of(ascii_names, st.text(max_size=30))
SANITIZERS = [Sanitizer(p) for p in sorted(PROFILES)] + [
    Sanitizer.for_destination(kind, profile)
    for kind in ("gs", "smb", "file")
    for profile in sorted(PROFILES)
]


@pytest.mark.parametrize("san", SANITIZERS, ids=repr)
@FAST
@given(name=any_names)
def test_plain_names_are_what_the_full_pass_leaves_alone(san, name):
    if san._plain(name):
        assert san._sanitize_component(name) == (name, ())
    assert san.sanitize_name(name) == san._sanitize_component(name)


def test_plain_takes_the_common_names():
    san = Sanitizer.for_destination("smb")
    for name in ("report 2024.docx", "f000123.dat", "a-b_c (1).txt"):
        assert san._plain(name)
    for name in ("", ".", "CON.txt", "end.", "a:b", "é.txt", "a\x7fb"):
        assert not san._plain(name)


@FAST
@given(name=any_names, case_insensitive=st.booleans(), normalize=st.booleans())
def test_ascii_collision_key_is_the_unicode_one(name, case_insensitive, normalize):
    slow = unicodedata.normalize("NFC", name) if normalize or case_insensitive else name
    if case_insensitive:
        slow = unicodedata.normalize("NFC", slow.upper().casefold())
    assert collision_key(name, case_insensitive=case_insensitive, normalize=normalize) == slow


@FAST
@given(text=st.text(st.characters(codec=None), max_size=40))
def test_utf16_len(text):
    assert utf16_len(text) == len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


PATTERNS = ["*.tmp", "cache/", "Projects/*/old", "**/build/**", "/top.txt", "[ab]?.log", "x*"]
paths = st.lists(
    st.sampled_from(["a", "b", "cache", "Projects", "old", "build", "top.txt", "x.tmp", "ab.log",
                     "X1", "Thumbs.db", "~$d.docx"]),
    min_size=1, max_size=5,
).map("/".join)  # fmt: skip


@FAST
@given(
    include=st.lists(st.sampled_from(PATTERNS), max_size=3),
    exclude=st.lists(st.sampled_from(PATTERNS), max_size=3),
    case_sensitive=st.booleans(),
    path=paths,
    is_dir=st.booleans(),
)
def test_one_alternation_matches_like_each_pattern(include, exclude, case_sensitive, path, is_dir):
    filters = Filters(include=include, exclude=exclude, case_sensitive=case_sensitive)
    for which, compiled in filters._compiled.items():
        each = any((is_dir or not dir_only) and rx.match(path) for rx, dir_only in compiled)
        assert filters._matches(which, path, is_dir) == bool(each)


@FAST
@given(
    junk=st.lists(st.sampled_from([*PATTERNS, "Thumbs.db", "~$*", "**", "a/b", "/x*"]), max_size=4),
    name=st.sampled_from(["Thumbs.db", "thumbs.DB", "~$d.docx", "x.tmp", "X1", "a", "old", "b"]),
)
def test_junk_compiled_for_names_matches_the_any_folder_glob(junk, name):
    from migrator.engine.filters import glob_regex

    filters = Filters(junk=junk)
    each = any(glob_regex(p.strip("/"), case_sensitive=False).match(name) for p in junk)
    assert filters._matches("junk", name, False) == bool(each)
