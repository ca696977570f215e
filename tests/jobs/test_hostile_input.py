"""Hostile input through `migrator_run`, on real folders: nothing crashes, nothing is
followed out of the source, every item is accounted for, and each item that is not
copied says why."""

from __future__ import annotations

import os
import unicodedata

from .conftest import tree_of


def accounted(summary: dict) -> bool:
    return summary["seen"] == sum(
        summary[k] for k in ("copied", "unchanged", "excluded", "failed", "pending")
    )


def rows(cli, job_id: int) -> dict[str, tuple[str, str, str]]:
    return {
        path: (state, reason, dest)
        for path, state, reason, dest in cli.query(
            "SELECT source_path, state, reason, dest_path FROM jobs_fileitem WHERE job_id = ?",
            job_id,
        )
    }


def test_symlinks_are_never_followed_out_of_the_source_and_are_reported(cli, tmp_path):
    src, dst, outside = tmp_path / "src", tmp_path / "dst", tmp_path / "outside"
    (src / "docs").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("must not be copied")
    (src / "docs" / "a.txt").write_text("a")
    (src / "docs" / "loop").symlink_to(src / "docs")  # a loop
    (src / "escape").symlink_to(outside)  # out of the source root
    (src / "passwd").symlink_to("/etc/passwd")
    (src / "dangling").symlink_to(tmp_path / "nothing-here")
    result = cli.run("--source", str(src), "--destination", str(dst), "--json", timeout=60)
    summary = result.json
    assert result.code == 0, result.stderr  # excluded with a reason is not an error
    assert accounted(summary) and summary["copied"] == 1
    assert summary["excluded_by_reason"] == {"symlink": 4}
    assert tree_of(dst) == {"docs/a.txt": b"a"}
    states = rows(cli, summary["job_id"])
    for link in ("docs/loop", "escape", "passwd", "dangling"):
        assert states[link][:2] == ("excluded", "symlink")
    assert not any("secret" in p for p in states)


def test_twenty_thousand_files_in_one_folder(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "flat").mkdir(parents=True)
    for i in range(20_000):
        (src / "flat" / f"f{i:05d}").write_bytes(b"%d" % i)
    first = cli.run("--source", str(src), "--destination", str(dst), "--json", timeout=300).json
    assert (first["seen"], first["copied"], first["failed"]) == (20_000, 20_000, 0)
    assert len(os.listdir(dst / "flat")) == 20_000
    assert (dst / "flat" / "f12345").read_bytes() == b"12345"
    # again: the destination folder holds more names than its index keeps (10,000), so
    # each file is asked for on its own; nothing is copied twice
    again = cli.run("--source", str(src), "--destination", str(dst), "--json", timeout=300).json
    assert (again["unchanged"], again["copied"]) == (20_000, 0)


def test_a_tree_200_folders_deep(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    deep = src.joinpath(*[f"d{i}" for i in range(200)])
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("down here")
    summary = cli.run("--source", str(src), "--destination", str(dst), "--json").json
    assert (summary["copied"], summary["failed"], summary["folders_seen"]) == (1, 0, 200)
    assert dst.joinpath(*[f"d{i}" for i in range(200)], "bottom.txt").read_text() == "down here"


def test_names_that_are_not_utf8_are_reported_never_a_crash(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "fine.txt").write_text("ok")
    bad = os.path.join(os.fsencode(src), b"caf\xe9-latin1.txt")  # Latin-1, not UTF-8
    with open(bad, "wb") as f:
        f.write(b"old encoding")
    os.mkdir(os.path.join(os.fsencode(src), b"dir-\xff"))
    result = cli.run("--source", str(src), "--destination", str(dst), "--json")
    summary = result.json
    assert result.code == 1, result.stderr  # completed with errors, not a crash
    assert "Traceback" not in result.stderr
    assert accounted(summary) and summary["copied"] == 1
    failed = {p: r for p, (s, r, _) in rows(cli, summary["job_id"]).items() if s == "failed"}
    assert set(failed) == {"caf\\xe9-latin1.txt", "dir-\\xff"}  # the bytes, shown
    assert set(failed.values()) == {"unsafe_path"}
    assert tree_of(dst) == {"fine.txt": b"ok"}


def test_sparse_and_empty_files_arrive_whole(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "empty.txt").write_bytes(b"")
    with open(src / "sparse.img", "wb") as f:
        f.truncate(64 << 20)  # 64 MiB of hole
        f.seek(32 << 20)
        f.write(b"middle")
    summary = cli.run("--source", str(src), "--destination", str(dst), "--json").json
    assert (summary["copied"], summary["failed"]) == (2, 0)
    assert (dst / "empty.txt").read_bytes() == b""
    copied = (dst / "sparse.img").read_bytes()
    assert len(copied) == 64 << 20 and copied[32 << 20 : (32 << 20) + 6] == b"middle"
    assert copied.count(b"\0") == (64 << 20) - 6


def test_names_differing_only_by_case_or_normalisation_get_one_object_each(cli, tmp_path):
    """At a case-insensitive destination (the smb/windows profiles): Report.txt and
    report.TXT, and "é" composed and decomposed, cannot be two names; each keeps its
    own object under a stable, reported name."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    names = ["Report.txt", "report.TXT", unicodedata.normalize("NFC", "café.txt"),
             unicodedata.normalize("NFD", "café.txt")]  # fmt: skip
    for i, name in enumerate(names):
        (src / name).write_bytes(b"version %d" % i)
    summary = cli.run(
        "--source", str(src), "--destination", str(dst), "--json", "--profile", "windows"
    ).json
    assert (summary["copied"], summary["failed"]) == (4, 0)
    got = tree_of(dst)
    assert len(got) == 4 and sorted(got.values()) == [b"version %d" % i for i in range(4)]
    folded = {unicodedata.normalize("NFC", n).casefold() for n in got}
    assert len(folded) == 4  # distinct even case- and normalisation-insensitively
    assert summary["renamed"].get("collision", 0) >= 2
    states = rows(cli, summary["job_id"])
    assert sum(1 for _, (_, _, dest) in states.items() if "~" in dest) == 2
