"""Deleted at source, the engine's part: keep, mirror and trash against real local
folders, with nothing outside the destination's root or inside its trash ever touched."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from migrator.engine.deletes import Gone, apply, ordered
from migrator.storage.base import Connector
from migrator.storage.local import LocalConnector


def tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def walked(root: Path) -> set[str]:
    """Every file and folder under `root`, by an independent walk."""
    found = set()
    for here, dirs, files in os.walk(root):
        rel = os.path.relpath(here, root)
        for name in dirs + files:
            found.add(name if rel == "." else f"{rel}/{name}")
    return found


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, LocalConnector]:
    """A destination root holding a tree, and files beside it that must never be touched."""
    tree(tmp_path, {"outside.txt": b"not ours", "dest-sibling/x.txt": b"not ours"})
    root = tmp_path / "dest"
    tree(
        root,
        {
            "keep.txt": b"stays",
            "old/a.txt": b"a",
            "old/deeper/b.txt": b"bb",
            "other/c.txt": b"c",
            ".migrator-trash/1/earlier.txt": b"trashed by pass 1",
        },
    )
    (root / "old" / "empty").mkdir()
    return root, LocalConnector(str(root))


GONE = [
    Gone("old", "dir", source_path="old", ours=True),
    Gone("old/deeper", "dir", source_path="old/deeper", ours=True),
    Gone("old/empty", "dir"),
    Gone("old/a.txt", "file", 1, "old/a.txt", ours=True),
    Gone("old/deeper/b.txt", "file", 2),
    Gone("other/c.txt", "file", 1, "other/c.txt", ours=True),
]


def test_files_come_first_then_folders_deepest_first():
    order = [g.dest_path for g in ordered(GONE)]
    assert order == ["old/a.txt", "old/deeper/b.txt", "other/c.txt", "old/empty", "old/deeper",
                     "old"]  # fmt: skip


def test_mirror_deletes_every_gone_object_and_nothing_else(site):
    root, dst = site
    outcomes = apply(dst, GONE, "mirror", 2)

    assert {o.dest_path: (o.action, o.reason) for o in outcomes} == {
        g.dest_path: ("deleted", "") for g in GONE
    }
    assert walked(root) == {"keep.txt", "other", ".migrator-trash", ".migrator-trash/1",
                            ".migrator-trash/1/earlier.txt"}  # fmt: skip
    assert (root.parent / "outside.txt").read_bytes() == b"not ours"
    assert (root.parent / "dest-sibling" / "x.txt").exists()


def test_trash_moves_under_the_pass_number_and_nothing_else(site):
    root, dst = site
    outcomes = apply(dst, GONE, "trash", 3)

    assert all(o.action == "trashed" and not o.reason for o in outcomes), outcomes
    assert {o.dest_path: o.trash_path for o in outcomes}["old/deeper/b.txt"] == (
        ".migrator-trash/3/old/deeper/b.txt"
    )
    assert walked(root) == {
        "keep.txt",
        "other",
        ".migrator-trash",
        ".migrator-trash/1",
        ".migrator-trash/1/earlier.txt",
        ".migrator-trash/3",
        ".migrator-trash/3/old",
        ".migrator-trash/3/old/a.txt",
        ".migrator-trash/3/old/deeper",
        ".migrator-trash/3/old/deeper/b.txt",
        ".migrator-trash/3/old/empty",
        ".migrator-trash/3/other",
        ".migrator-trash/3/other/c.txt",
    }
    assert (root / ".migrator-trash/3/old/deeper/b.txt").read_bytes() == b"bb"


def test_keep_touches_nothing(site):
    root, dst = site
    before = walked(root)

    outcomes = apply(dst, GONE, "keep", 2)

    assert {o.action for o in outcomes} == {"kept"}
    assert walked(root) == before


def test_the_trash_and_paths_outside_the_root_are_never_touched(site):
    root, dst = site
    before = walked(root)
    hostile = [
        Gone(".migrator-trash/1/earlier.txt", "file"),
        Gone(".migrator-trash/1", "dir"),
        Gone(".migrator-trash", "dir"),
        Gone("../outside.txt", "file"),
        Gone("../dest-sibling", "dir"),
        Gone("old/../../outside.txt", "file"),
        Gone("/etc/hostname", "file"),
        Gone("", "dir"),
    ]
    for policy in ("mirror", "trash"):
        outcomes = apply(dst, hostile, policy, 4)
        got = {o.dest_path: (o.action, o.reason) for o in outcomes}
        assert got[".migrator-trash/1/earlier.txt"] == ("kept", "in_trash")
        assert got[".migrator-trash"] == ("kept", "in_trash")
        assert got["../outside.txt"] == ("failed", "unsafe_path")
        assert got["/etc/hostname"] == ("failed", "unsafe_path")
        assert got[""] == ("failed", "unsafe_path")
    assert walked(root) == before
    assert (root.parent / "outside.txt").read_bytes() == b"not ours"
    assert (root.parent / "dest-sibling" / "x.txt").exists()


def test_already_gone_is_done_and_one_failure_stops_nothing(site):
    root, dst = site
    items = [
        Gone("never-there.txt", "file", ours=True),
        Gone("other", "dir"),  # its file is not gone: the folder cannot go
        Gone("keep.txt", "file"),
    ]
    outcomes = {o.dest_path: o for o in apply(dst, items, "mirror", 2)}

    assert (outcomes["never-there.txt"].action, outcomes["never-there.txt"].reason) == (
        "deleted",
        "already_gone",
    )
    assert outcomes["other"].action == "failed"
    assert outcomes["other"].message
    assert outcomes["keep.txt"].action == "deleted"
    assert not (root / "keep.txt").exists()
    assert (root / "other" / "c.txt").exists()


class NoRename(LocalConnector):
    """A destination that declares it cannot move: the trash cannot be used there."""

    capabilities = dataclasses.replace(LocalConnector.capabilities, rename=False)
    move = Connector.move


def test_trash_where_the_destination_cannot_move_fails_each_file_in_words(site):
    root, _ = site
    outcomes = apply(NoRename(str(root)), [Gone("keep.txt", "file")], "trash", 2)

    assert [(o.action, o.reason) for o in outcomes] == [("failed", "unsupported")]
    assert (root / "keep.txt").read_bytes() == b"stays"


def test_an_unknown_policy_is_refused_in_words(site):
    _, dst = site
    with pytest.raises(ValueError, match="unknown deletion policy 'purge'"):
        apply(dst, GONE, "purge", 2)
