"""Name sanitization: each profile's rules on concrete names, then properties over
arbitrary Unicode (valid, idempotent, collision-free, consistent under folders)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator import sanitize as s
from migrator.sanitize import PROFILES, Sanitizer, hard_limits_for, profile_for_destination

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def name_of(profile: str, name: str, **options) -> str:
    return Sanitizer(profile, **options).sanitize_name(name)[0]


def sha8(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# --- profiles and destinations --------------------------------------------------------


def test_profiles_are_the_issue_ones():
    assert set(PROFILES) == {"gcs", "windows", "smb", "sharepoint", "egnyte", "posix"}
    assert PROFILES["smb"].violations("CON.txt") == PROFILES["windows"].violations("CON.txt")
    assert PROFILES["sharepoint"].max_path_chars == 400
    assert PROFILES["egnyte"].max_component_bytes == 245
    assert PROFILES["egnyte"].max_path_bytes == 5000
    assert PROFILES["gcs"].max_path_bytes == 1024
    assert PROFILES["windows"].max_component_chars == 255


def test_profile_for_destination():
    assert profile_for_destination("gs").name == "gcs"
    assert profile_for_destination("smb").name == "smb"
    assert profile_for_destination("file").name == "posix"
    with pytest.raises(ValueError, match="ftp"):
        profile_for_destination("ftp")
    with pytest.raises(ValueError, match="unknown sanitization profile"):
        Sanitizer("nonesuch")


@pytest.mark.parametrize(
    ("profile", "expected"),
    [("windows", True), ("smb", True), ("sharepoint", True), ("egnyte", True)]
    + [("gcs", False), ("posix", False)],
)
def test_case_insensitive_defaults(profile, expected):
    assert Sanitizer(profile).case_insensitive is expected
    assert Sanitizer(profile, case_insensitive=not expected).case_insensitive is not expected


def test_no_django_import():
    code = (
        "import sys, migrator.sanitize; sys.exit(any(m.startswith('django') for m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


# --- concrete names ---------------------------------------------------------------------

WINDOWS_FAMILY = ["windows", "smb", "sharepoint"]


@pytest.mark.parametrize("profile", WINDOWS_FAMILY)
@pytest.mark.parametrize(
    ("name", "expected", "rule"),
    [
        ("CON.txt", "CON_.txt", s.RESERVED_NAME),
        ("con", "con_", s.RESERVED_NAME),
        ("lpt1.tar.gz", "lpt1_.tar.gz", s.RESERVED_NAME),
        ("COM0", "COM0_", s.RESERVED_NAME),
        ("NUL .txt", "NUL_ .txt", s.RESERVED_NAME),
        ("a:b", "a_b", s.FORBIDDEN_CHAR),
        ('<"x|y">?*\\', "__x_y_____", s.FORBIDDEN_CHAR),
        ("bell\x07", "bell_", s.CONTROL_CHAR),
        ("...", "___", s.TRAILING_DOT_SPACE),
        (".", "_", s.DOT_NAME),
        ("..", "__", s.DOT_NAME),
        ("", "_", s.EMPTY_NAME),
    ],
)
def test_windows_rules(profile, name, expected, rule):
    new, rules = Sanitizer(profile).sanitize_name(name)
    assert new == expected
    assert rule in rules


@pytest.mark.parametrize(
    "name", ["CONSOLE.txt", "COM10", "xCON", "file.CON", "a b", ".bashrc", "~$x", "_vti_"]
)
def test_windows_leaves_good_names_alone(name):
    assert Sanitizer("windows").sanitize_name(name) == (name, ())


def test_windows_trailing_dot_and_space():
    assert Sanitizer("windows").sanitize_name("trailing. ") == (
        "trailing__",
        (s.TRAILING_DOT_SPACE,),
    )
    assert name_of("windows", " lead") == " lead"  # leading spaces are fine on Windows


def test_sharepoint_rules():
    sp = Sanitizer("sharepoint")
    assert sp.sanitize_name("~$doc.docx") == ("_$doc.docx", (s.FORBIDDEN_PREFIX,))
    assert sp.sanitize_name("_vti_x") == ("__ti_x", (s.FORBIDDEN_SUBSTRING,))
    assert sp.sanitize_name("a_VTI_b")[0] == "a__TI_b"
    assert sp.sanitize_name(".lock") == ("_.lock", (s.FORBIDDEN_NAME,))
    assert sp.sanitize_name("Desktop.INI") == ("Desktop_.INI", (s.FORBIDDEN_NAME,))
    assert sp.sanitize_name(" lead ") == ("_lead_", (s.LEADING_TRAILING_SPACE,))
    assert sp.sanitize_name("trailing. ")[0] == "trailing._"
    assert sp.sanitize_name("CON.txt")[0] == "CON_.txt"


def test_egnyte_rules():
    eg = Sanitizer("egnyte")
    assert eg.sanitize_name("😀 party.txt") == ("_ party.txt", (s.FOUR_BYTE_UNICODE,))
    assert eg.sanitize_name("a:b|c") == ("a_b_c", (s.FORBIDDEN_CHAR,))
    assert eg.sanitize_name("end.") == ("end_", (s.TRAILING_DOT_SPACE,))
    assert eg.sanitize_name(" x ") == ("_x_", (s.LEADING_TRAILING_SPACE,))
    assert eg.sanitize_name("tab\there")[0] == "tab_here"
    assert eg.sanitize_name("CON.txt") == ("CON.txt", ())  # not a Windows device there
    assert eg.sanitize_name("Ünïcødé ✓") == ("Ünïcødé ✓", ())  # BMP is fine


def test_gcs_rules():
    gcs = Sanitizer("gcs")
    assert gcs.sanitize_name("a\r\nb") == ("a__b", (s.CONTROL_CHAR,))
    assert gcs.sanitize_name("#[x]*?") == ("__x___", (s.FORBIDDEN_CHAR,))
    assert gcs.sanitize_name("a:b") == ("a:b", ())
    assert gcs.sanitize_name("CON.txt") == ("CON.txt", ())
    assert gcs.sanitize_name(".") == ("_", (s.DOT_NAME,))
    assert gcs.sanitize_name("..") == ("__", (s.DOT_NAME,))
    assert gcs.sanitize_name("\x85nel")[0] == "_nel"  # C1 controls too


def test_gcs_acme_challenge_prefix():
    gcs = Sanitizer("gcs")
    result = gcs.sanitize_path(".well-known/acme-challenge/token")
    assert result.path == ".well-known/_acme-challenge/token"
    assert result.renames == (s.Rename(1, "acme-challenge", "_acme-challenge", (s.RESERVED_PATH,)),)
    assert (
        gcs.sanitize_path("x/.well-known/acme-challenge/t").path == "x/.well-known/acme-challenge/t"
    )
    # the destination prefix counts: under root ".well-known" the top folder is renamed
    assert gcs.sanitize_path("acme-challenge/t", root=".well-known").path == "_acme-challenge/t"
    assert not PROFILES["gcs"].is_valid_path(".well-known/acme-challenge/token")
    assert PROFILES["gcs"].is_valid_path(result.path)


def test_posix_only_refuses_nul_and_slash():
    px = Sanitizer("posix")
    for name in ["a:b", "CON.txt", "trailing. ", "~$doc.docx", "a\r\nb", "😀", " x ", "a\\b"]:
        assert px.sanitize_name(name) == (name, ())
    assert px.sanitize_name("a\x00b") == ("a_b", (s.FORBIDDEN_CHAR,))
    assert px.sanitize_name(".") == ("_", (s.DOT_NAME,))


def test_lone_surrogates_are_replaced():
    # os.fsdecode of a non-UTF-8 byte gives a lone surrogate; no destination takes it.
    for profile in PROFILES:
        new, rules = Sanitizer(profile).sanitize_name("caf\udce9.txt")
        assert new == "caf_.txt"
        assert s.INVALID_UNICODE in rules
        new.encode("utf-8")


# --- normalisation and options ----------------------------------------------------------


def test_nfc_by_default_and_optional():
    nfd = "Cafe\u0301.txt"
    assert Sanitizer("posix").sanitize_name(nfd) == ("Café.txt", (s.UNICODE_NFC,))
    assert Sanitizer("posix", normalize=None).sanitize_name(nfd) == (nfd, ())
    assert Sanitizer("posix", normalize="none").sanitize_name(nfd) == (nfd, ())
    with pytest.raises(ValueError, match="normalize"):
        Sanitizer("posix", normalize="NFKD")


def test_replacement_character():
    assert name_of("windows", "a:b?", replacement="-") == "a-b-"
    assert name_of("sharepoint", "~$doc", replacement="-") == "-$doc"
    for bad in [".", " ", ":", "ab", "", "é", "\x01"]:
        with pytest.raises(ValueError, match="replacement"):
            Sanitizer("windows", replacement=bad)
    with pytest.raises(ValueError):
        Sanitizer("gcs", replacement="#")
    Sanitizer("posix", replacement=":")  # fine where ":" is


# --- length -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "limit_bytes", "limit_chars"),
    [("windows", None, 255), ("sharepoint", None, 255), ("egnyte", 245, None), ("gcs", 1024, None)],
)
def test_long_names_keep_extension_and_hash(profile, limit_bytes, limit_chars):
    original = "ä" * 600 + ".docx"
    new, rules = Sanitizer(profile).sanitize_name(original)
    assert rules == (s.TOO_LONG,)
    assert new.endswith("~" + sha8(original) + ".docx")
    assert new.startswith("ää")
    if limit_bytes:
        assert len(new.encode()) <= limit_bytes
        assert len(new.encode()) > limit_bytes - 2  # filled, not cut short
    if limit_chars:
        assert len(new) == limit_chars


def test_300_byte_name():
    original = "x" * 296 + ".txt"
    assert len(original.encode()) == 300
    new = name_of("windows", original)
    assert new == "x" * (255 - 13) + f"~{sha8(original)}.txt"
    assert name_of("posix", original) == original  # the profile has no limit...
    on_disk = Sanitizer.for_destination("file").sanitize_name(original)[0]
    assert len(on_disk.encode()) == 255  # ...the local file system has


def test_shortening_counts_utf16_units_for_windows():
    new = name_of("windows", "😀" * 200)
    assert s.utf16_len(new) <= 255
    assert len(new) < 255 // 2 + 10


def test_long_extension_is_not_kept():
    original = "a" * 300 + "." + "b" * 40
    new = name_of("windows", original)
    assert new.endswith(f"~{sha8(original)}")


def test_hash_is_pinned():
    # Stored in manifests: a change here would rename files between passes.
    assert s.short_hash("a:b") == "6783a31e"
    assert name_of("egnyte", "z" * 300) == "z" * 236 + "~" + s.short_hash("z" * 300)


def test_deterministic_across_instances():
    names = ["CON.txt", "a:b", "x" * 400 + ".pdf", "e\u0301", "~$q"]
    first = [Sanitizer("sharepoint").sanitize_name(n) for n in names]
    second = [Sanitizer("sharepoint").sanitize_name(n) for n in reversed(names)]
    assert first == list(reversed(second))


# --- hard limits ------------------------------------------------------------------------


def test_hard_limits_apply_over_permissive_profiles():
    on_gcs = Sanitizer.for_destination("gs", "posix")
    assert on_gcs.sanitize_name("a\nb")[0] == "a_b"
    assert on_gcs.sanitize_name("a:b")[0] == "a:b"
    assert on_gcs.sanitize_path("x" * 1025).path.endswith(sha8("x" * 1025))
    on_smb = Sanitizer.for_destination("smb", "posix")
    assert on_smb.sanitize_name("CON.txt")[0] == "CON_.txt"
    assert on_smb.sanitize_name("a:b.")[0] == "a_b_"
    assert on_smb.case_insensitive
    # a job cannot switch off the case folding of an SMB share
    assert Sanitizer.for_destination("smb", case_insensitive=False).case_insensitive
    assert Sanitizer.for_destination("file").profile.max_component_bytes == 255


def test_smb_limits_count_utf16_units_as_windows_does():
    smb = hard_limits_for("smb")
    assert smb.is_valid("é" * 255)  # 510 UTF-8 bytes: units count, not bytes
    assert not smb.is_valid("é" * 256)
    assert not smb.is_valid("😀" * 128)  # 256 units: two a character outside the BMP
    longest = "/".join(["a" * 255] * 128)  # 32,767 units
    assert smb.is_valid_path(longest)
    assert not smb.is_valid_path(longest + "a")


def test_hard_limits_for_unknown_kind():
    with pytest.raises(ValueError):
        hard_limits_for("ftp")


# --- folders: collisions ----------------------------------------------------------------


def test_collision_key():
    win, gcs = Sanitizer("windows"), Sanitizer("gcs")
    assert win.collision_key("Report.TXT") == win.collision_key("report.txt")
    assert win.collision_key("ß") == win.collision_key("SS")
    assert win.collision_key("ı") == win.collision_key("I")  # NTFS upcases both to I
    assert win.collision_key("e\u0301") == win.collision_key("é")
    assert gcs.collision_key("A") != gcs.collision_key("a")
    assert gcs.collision_key("e\u0301") == gcs.collision_key("é")
    raw = Sanitizer("posix", normalize=None)
    assert raw.collision_key("e\u0301") != raw.collision_key("é")
    # the same function without a Sanitizer, e.g. for a data migration
    assert s.collision_key("Ab", case_insensitive=True) == win.collision_key("Ab") == "ab"
    assert s.collision_key("Ab", case_insensitive=False) == "Ab"


def test_unique_in_folder_uses_a_stable_suffix_from_the_original():
    win = Sanitizer("windows")
    taken = {win.collision_key("a_b")}
    assert win.unique_in_folder("a_b", taken, "a:b") == f"a_b~{sha8('a:b')}"
    assert win.unique_in_folder("A_B.txt", {"a_b.txt"}, "A:B.txt") == f"A_B~{sha8('A:B.txt')}.txt"
    assert win.unique_in_folder("free", taken, "free") == "free"
    # a callable (the database) works the same; it is asked about collision keys
    asked = []
    assert win.unique_in_folder("X", lambda k: asked.append(k) or k == "x", "X") != "X"
    assert asked[0] == "x"


def test_unique_in_folder_when_the_suffixed_name_is_taken_too():
    win = Sanitizer("windows")
    first = f"a_b~{sha8('a:b')}"
    taken = {"a_b", win.collision_key(first)}
    second = win.unique_in_folder("a_b", taken, "a:b")
    assert second not in (first, "a_b")
    assert second == win.unique_in_folder("a_b", taken, "a:b")


def test_unique_in_folder_keeps_long_names_valid():
    win = Sanitizer("windows")
    long_name, _ = win.sanitize_name("y" * 300 + ".txt")
    new = win.unique_in_folder(long_name, {win.collision_key(long_name)}, "Y" * 300 + ".txt")
    assert new != long_name and new.endswith(".txt")
    assert win.profile.is_valid(new)


@pytest.mark.parametrize(
    ("profile", "twins"),
    [
        ("windows", ["Readme.md", "README.md", "readme.md"]),
        ("egnyte", ["Straße", "STRASSE"]),
        ("gcs", ["Cafe\u0301", "Café"]),
        ("posix", ["Cafe\u0301", "Café"]),
        ("windows", ["a:b", "a_b", "a?b", "A_B"]),
        ("sharepoint", ["~$x", "_$x"]),
        ("windows", ["x.", "x_"]),
        ("windows", [".", "_"]),
    ],
)
def test_twins_never_share_a_name(profile, twins):
    san = Sanitizer(profile)
    chosen = san.assign_names(twins)
    keys = {san.collision_key(n) for n in chosen.values()}
    assert len(keys) == len(twins)
    assert all(san.profile.is_valid(n) for n in chosen.values())


def test_valid_name_keeps_its_name_over_a_renamed_twin():
    chosen = Sanitizer("windows").assign_names(["a:b", "a_b"])  # ":" sorts before "_"
    assert chosen["a_b"] == "a_b"
    assert chosen["a:b"] == f"a_b~{sha8('a:b')}"


# --- paths ------------------------------------------------------------------------------


def test_sanitize_path_reports_each_renamed_component():
    result = Sanitizer("windows").sanitize_path("Q3: plan/CON/notes. ")
    assert result.path == "Q3_ plan/CON_/notes__"
    assert result.ok and result.changed
    assert [(r.index, r.original, r.new) for r in result.renames] == [
        (0, "Q3: plan", "Q3_ plan"),
        (1, "CON", "CON_"),
        (2, "notes. ", "notes__"),
    ]
    assert result.rules == (s.FORBIDDEN_CHAR, s.RESERVED_NAME, s.TRAILING_DOT_SPACE)
    assert Sanitizer("windows").sanitize_path("fine/path.txt") == s.PathResult(
        "fine/path.txt", "fine/path.txt"
    )


def test_empty_components_of_object_names():
    assert Sanitizer("gcs").sanitize_path("a//b").path == "a/_/b"
    assert Sanitizer("gcs").sanitize_path("").path == ""  # the root itself


def test_renamed_folder_renames_everything_under_it():
    san = Sanitizer("sharepoint")
    folder = san.sanitize_path("Team: A/_vti_cnf").path
    for child in ["x.txt", "sub/y.txt", "~$lock.docx", "sub/deeper/z"]:
        assert san.sanitize_path(f"Team: A/_vti_cnf/{child}").path.startswith(folder + "/")


def test_path_too_long_is_refused_not_truncated():
    win = Sanitizer("windows")
    ok = "/".join(["d" * 50] * 5) + "/f" * 3  # 254 + 6 = 260 chars
    assert len(ok) == 260 and win.sanitize_path(ok).ok
    too_long = ok + "x"
    result = win.sanitize_path(too_long)
    assert result.refused == s.PATH_TOO_LONG and not result.ok
    assert result.path == too_long
    assert s.PATH_TOO_LONG in result.rules
    assert not win.sanitize_path(ok, root="share/dept").ok  # the destination root counts
    sp = Sanitizer("sharepoint")
    at_limit = "/".join(["p" * 99] * 3 + ["p" * 100])
    assert len(at_limit) == 400 and sp.sanitize_path(at_limit).ok
    assert sp.sanitize_path(at_limit + "x").refused == s.PATH_TOO_LONG
    gcs = Sanitizer("gcs")
    assert gcs.sanitize_path("é/" * 341 + "x").ok  # 1023 bytes
    assert not gcs.sanitize_path("é/" * 341 + "xy").ok
    eg = Sanitizer("egnyte")
    assert not eg.sanitize_path("/".join(["e" * 200] * 25)).ok


# --- properties -------------------------------------------------------------------------

AWKWARD = list(
    ':.~$ _-vtiVTI\\/"*<>?|#[]\r\n\t\x00\x7f\x85\u0301\u0327eEcCaAßSsİıI😀\U0001f3fd\udcff'
) + ["CON", "lpt1", "com¹", "~$", "_vti_", ".lock", "desktop.ini", ".well-known", "Σ", "ς"]

awkward_text = st.lists(st.sampled_from(AWKWARD), max_size=12).map("".join)
names = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec=None), max_size=30),  # surrogates too
    awkward_text,
    st.text(st.sampled_from("ab.é 😀:"), min_size=120, max_size=600),
    st.builds(lambda a, b: a + b, st.text(min_size=200, max_size=300), awkward_text),
)

components = names.map(lambda n: n.replace("/", "x")).filter(bool)

PROFILE_NAMES = sorted(PROFILES)
DESTINATIONS = [(kind, p) for kind in ("gs", "smb", "file") for p in PROFILE_NAMES]


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@FAST
@given(name=names)
def test_output_is_valid_and_idempotent(profile, name):
    san = Sanitizer(profile)
    new, rules = san.sanitize_name(name)
    assert PROFILES[profile].is_valid(new), (new, PROFILES[profile].violations(new))
    assert unicodedata.is_normalized("NFC", new)
    assert san.sanitize_name(new) == (new, ())
    assert (new == name) == (rules == ())
    assert set(rules) <= set(s.RULES)
    if PROFILES[profile].is_valid(name) and unicodedata.is_normalized("NFC", name):
        assert new == name  # nothing is renamed without a reason


@pytest.mark.parametrize(("kind", "profile"), DESTINATIONS)
@FAST
@given(name=names)
def test_destination_never_gets_a_name_it_refuses(kind, profile, name):
    san = Sanitizer.for_destination(kind, profile, normalize=None)
    new, _ = san.sanitize_name(name)
    assert hard_limits_for(kind).is_valid(new)
    assert PROFILES[profile].is_valid(new)
    assert san.sanitize_name(new) == (new, ())


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@FAST
@given(listing=st.lists(names, max_size=25, unique=True), extra=names)
def test_no_collisions_within_a_folder(profile, listing, extra):
    # twins of every kind the issue names, mixed into a random listing
    listing = [*listing, extra, extra.upper(), unicodedata.normalize("NFD", extra)]
    listing += [extra.replace("_", ":"), extra.replace(":", "_")]
    listing = list(dict.fromkeys(listing))
    san = Sanitizer(profile)
    chosen = san.assign_names(listing)
    assert set(chosen) == set(listing)
    keys = [san.collision_key(n) for n in chosen.values()]
    assert len(set(keys)) == len(keys)
    # and distinct by plain Unicode folding too, not only by the key under test
    for fold in (str.casefold, str.lower, str.upper) if san.case_insensitive else (str,):
        folded = {unicodedata.normalize("NFC", fold(n)) for n in chosen.values()}
        assert len(folded) == len(keys)
    for new in chosen.values():
        assert PROFILES[profile].is_valid(new)
        assert san.sanitize_name(new) == (new, ())
    # streaming in listing order with unique_in_folder gives distinct keys too
    taken: set[str] = set()
    for original in listing:
        new = san.unique_in_folder(san.sanitize_name(original)[0], taken, original)
        assert san.collision_key(new) not in taken
        assert PROFILES[profile].is_valid(new)
        taken.add(san.collision_key(new))


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@FAST
@given(parts=st.lists(components, min_size=1, max_size=4))
def test_paths_are_consistent_and_idempotent(profile, parts):
    san = Sanitizer(profile)
    path = "/".join(parts)
    result = san.sanitize_path(path)
    new_parts = result.path.split("/")
    assert len(new_parts) == len(path.split("/"))
    # each folder maps the same way alone as with children under it
    for depth in range(1, len(new_parts)):
        parent = "/".join(path.split("/")[:depth])
        assert san.sanitize_path(parent).path == "/".join(new_parts[:depth])
    again = san.sanitize_path(result.path)
    assert again.path == result.path and again.renames == ()
    if result.ok:
        assert PROFILES[profile].is_valid_path(result.path)
    for rename in result.renames:
        assert path.split("/")[rename.index] == rename.original
        assert new_parts[rename.index] == rename.new


# --- the checker itself must be able to fail --------------------------------------------


@pytest.mark.parametrize(
    ("profile", "name", "rule"),
    [
        ("windows", "CON.txt", s.RESERVED_NAME),
        ("windows", "aux", s.RESERVED_NAME),
        ("windows", "a:b", s.FORBIDDEN_CHAR),
        ("windows", "x.", s.TRAILING_DOT_SPACE),
        ("windows", "x" * 256, s.TOO_LONG),
        ("sharepoint", "~$a", s.FORBIDDEN_PREFIX),
        ("sharepoint", "a_VtI_b", s.FORBIDDEN_SUBSTRING),
        ("sharepoint", "DESKTOP.ini", s.FORBIDDEN_NAME),
        ("sharepoint", " a", s.LEADING_TRAILING_SPACE),
        ("egnyte", "😀", s.FOUR_BYTE_UNICODE),
        ("gcs", "a\x01", s.CONTROL_CHAR),
        ("egnyte", "é" * 123, s.TOO_LONG),
        ("gcs", "a\nb", s.FORBIDDEN_CHAR),
        ("gcs", "..", s.DOT_NAME),
        ("posix", "", s.EMPTY_NAME),
        ("posix", "a\udcffb", s.INVALID_UNICODE),
        ("posix", "a\x00b", s.FORBIDDEN_CHAR),
    ],
)
def test_checker_rejects(profile, name, rule):
    assert rule in PROFILES[profile].violations(name)
    assert not PROFILES[profile].is_valid(name)
