"""Catch-up passes, the engine's part: classifying a planned row against the last pass's
row, and comparing a destination listing with this pass's rows through fake callbacks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from migrator.engine.copy import keep_both_name
from migrator.engine.deletes import Gone
from migrator.engine.delta import (
    CHANGED,
    KEPT,
    NEW,
    UNCHANGED,
    Decision,
    Mine,
    Prior,
    RowBitmap,
    classify,
    destination_check,
    planned_of,
)
from migrator.engine.scan import Row
from migrator.storage import Capabilities, Entry
from migrator.storage.local import LocalConnector

NS = Capabilities(mtime_precision_ns=1)
SECONDS = Capabilities(mtime_precision_ns=10**9)
HASHED = Capabilities(hashes=frozenset({"md5"}), mtime_precision_ns=1)


def row(path="a/b.txt", size=10, mtime=5_000_000_000, md5="", crc="") -> Row:
    return Row(1, 2, "file", path, path, size, mtime, md5=md5, crc32c=crc)


def prior(path="a/b.txt", size=10, mtime=5_000_000_000, md5="", crc="", state="copied"):
    return Prior(path, path, size, mtime, md5, crc, state)


@pytest.mark.parametrize(
    ("planned", "last", "src", "expected"),
    [
        (row(), None, NS, NEW),
        (row(), prior(), NS, UNCHANGED),
        (row(), prior(state="unchanged"), NS, UNCHANGED),
        (row(), prior(state="failed"), NS, CHANGED),  # never written: copy it
        (row(), prior(state="excluded"), NS, CHANGED),
        (row(size=11), prior(), NS, CHANGED),  # size first
        (row(mtime=5_000_000_001), prior(), NS, CHANGED),
        (row(mtime=5_400_000_000), prior(), SECONDS, UNCHANGED),  # within a second
        (row(mtime=6_000_000_000), prior(), SECONDS, CHANGED),
        # a hash both sides know decides, whatever the mtime says
        (row(md5="aa", mtime=9), prior(md5="aa"), HASHED, UNCHANGED),
        (row(md5="aa"), prior(md5="bb"), HASHED, CHANGED),
        (row(crc="11", mtime=9), prior(crc="11"), NS, UNCHANGED),
        (row(md5="aa"), prior(crc="11"), NS, UNCHANGED),  # no shared hash: mtime
        (row(path="a/c.txt"), prior(path="a/b.txt"), NS, CHANGED),  # renamed for the dest
        # the destination won a conflict: it still does until the source changes
        (row(), prior(state="excluded")._replace(reason="destination_changed"), NS, KEPT),
        (row(size=9), prior(state="excluded")._replace(reason="destination_changed"), NS, CHANGED),
    ],
)
def test_classify(planned, last, src, expected):
    assert classify(planned, last, src, NS) == expected


def test_classify_finds_the_keep_both_name_the_last_pass_wrote():
    planned = row()
    beside = keep_both_name(planned.dest_path, planned.mtime_ns)
    assert classify(planned, prior()._replace(dest_path=beside), NS, NS, beside=True) == UNCHANGED
    # a job that no longer keeps both: the file goes where it is planned again
    assert classify(planned, prior()._replace(dest_path=beside), NS, NS) == CHANGED


def test_row_bitmap_holds_one_bit_per_id():
    bits = RowBitmap(1000, 1_001_000)
    assert len(bits.bits) == 125_001
    for pk in (1000, 1007, 1008, 1_001_000):
        bits.add(pk)
    bits.add(5)  # out of range: ignored
    assert [pk in bits for pk in (1000, 1007, 1008, 1009, 1_001_000, 999, 5)] == [
        True, True, True, False, True, False, False
    ]  # fmt: skip


@dataclass
class FakeSink:
    """This pass's rows by destination key, the last pass's sources, what was decided."""

    rows: dict[str, Mine]
    prior: dict[str, str] = field(default_factory=dict)
    written: dict[str, Mine] = field(default_factory=dict)  # the last pass's, by key
    kept: dict[str, str] = field(default_factory=dict)
    decided: list[Decision] = field(default_factory=list)
    gone_items: list[Gone] = field(default_factory=list)
    kept_items: dict[str, str] = field(default_factory=dict)
    lookups: int = 0
    walks: int = 0

    def rows_by_key(self, keys: Sequence[str]) -> dict[str, Mine]:
        self.lookups += 1
        return {k: self.rows[k] for k in keys if k in self.rows}

    def prior_sources(self, keys: Sequence[str]) -> dict[str, str]:
        return {k: self.prior[k] for k in keys if k in self.prior}

    def unchanged_count(self) -> int:
        decided = {d.pk for d in self.decided}
        return sum(m.state == "unchanged" and m.pk not in decided for m in self.rows.values())

    def unchanged_rows(self) -> Iterator[tuple[int, int]]:
        self.walks += 1
        decided = {d.pk for d in self.decided}
        for mine in sorted(self.rows.values()):
            if mine.state == "unchanged" and mine.pk not in decided:
                yield mine.pk, mine.size

    def decide(self, decisions: Sequence[Decision]) -> None:
        self.decided.extend(decisions)

    def prior_written(self, keys: Sequence[str]) -> dict[str, Mine]:
        return {k: self.written[k] for k in keys if k in self.written}

    def kept_versions(self) -> dict[str, str]:
        return dict(self.kept)

    def gone(self, items: Sequence[Gone], kept: Mapping[str, str]) -> None:
        assert set(kept) <= {g.dest_path for g in items}
        self.gone_items.extend(g for g in items if g.dest_path not in kept)
        self.kept_items.update(kept)

    def lease_renew(self) -> bool:
        return True


def mine(pk, path, size=3, state="unchanged", md5="m") -> Mine:
    return Mine(pk, state, path, size, 7, md5, "")


def _sink() -> FakeSink:
    return FakeSink(
        rows={
            "same.txt": mine(10, "same.txt"),
            "edited.txt": mine(11, "edited.txt"),
            "Case.TXT".lower(): mine(12, "Case.TXT"),
            "gone-from-dest.txt": mine(13, "gone-from-dest.txt"),
            "copied-now.txt": mine(14, "copied-now.txt", state="copied", md5="x"),
        },
        prior={"old.txt": "src/old.txt"},
    )


def _listing() -> list[Entry]:
    return [
        Entry("same.txt", "file", 3, 7, (("md5", "m"),)),
        Entry("edited.txt", "file", 3, 7, (("md5", "other"),)),
        Entry("Case.TXT", "file", 3, 7, (("md5", "m"),)),
        Entry("copied-now.txt", "file", 3, 7, (("md5", "y"),)),  # not judged: this pass's
        Entry("old.txt", "file", 4, 7),  # ours, source gone
        Entry("extra.txt", "file", 5, 7),  # never ours
        Entry(".migrator-trash/3/x.txt", "file", 1, 7),  # never looked at
    ]


@pytest.mark.parametrize(
    ("policy", "state", "dest"),
    [
        ("source_wins", "pending", ""),
        ("destination_wins", "excluded", ""),
        ("keep_both", "pending", keep_both_name("edited.txt", 7)),
    ],
)
def test_destination_check_decides_conflicts_missing_and_gone(policy, state, dest):
    sink = _sink()
    result = destination_check(
        _listing(), sink, ids=(10, 14), policy=policy, key=str.lower,
        src_caps=NS, dst_caps=HASHED, chunk=2,
    )  # fmt: skip
    by_pk = {d.pk: d for d in sink.decided}
    assert sorted(by_pk) == [11, 13]
    conflict, missing = by_pk[11], by_pk[13]
    assert (conflict.state, conflict.change, conflict.dest_path) == (state, "conflict", dest)
    assert "md5" in conflict.what
    assert (missing.state, missing.change) == ("pending", "missing")
    assert sink.gone_items == [
        Gone("old.txt", "file", 4, "src/old.txt", True),
        Gone("extra.txt", "file", 5, "", False),
    ]
    assert (result.listed, result.matched, result.conflicts, result.missing, result.gone) == (
        6, 4, 1, 1, 2
    )  # fmt: skip
    assert sink.lookups == 4  # one lookup per chunk of 2 listed objects (7 listed)


def test_destination_check_walks_the_rows_only_when_some_were_not_listed():
    sink = _sink()
    listing = [e for e in _listing() if e.path != "edited.txt"]
    listing.append(Entry("gone-from-dest.txt", "file", 3, 7, (("md5", "m"),)))
    result = destination_check(listing, sink, ids=(10, 14), policy="source_wins",
                               key=str.lower, src_caps=NS, dst_caps=HASHED)  # fmt: skip
    assert (result.missing, sink.walks) == (1, 1)  # edited.txt, not listed now
    sink = _sink()
    listing.append(Entry("edited.txt", "file", 3, 7, (("md5", "m"),)))
    result = destination_check(listing, sink, ids=(10, 14), policy="source_wins",
                               key=str.lower, src_caps=NS, dst_caps=HASHED)  # fmt: skip
    assert (result.missing, result.conflicts, sink.walks) == (0, 0, 0)


def test_destination_check_refuses_an_unknown_policy():
    with pytest.raises(ValueError, match="conflicts policy"):
        destination_check([], _sink(), ids=(1, 1), policy="newest", key=str,
                          src_caps=NS, dst_caps=NS)  # fmt: skip


def test_local_listing_is_flat_files_only(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_bytes(b"xyz")
    (tmp_path / "top.txt").write_bytes(b"1")
    with LocalConnector(str(tmp_path)) as conn:
        listed = {e.path: e.size for e in conn.listing("")}
    assert listed == {"a/b/f.txt": 3, "top.txt": 1}
    with LocalConnector(str(tmp_path)) as conn:
        assert list(conn.listing("a")) == [conn.stat("a/b/f.txt")]
        assert list(conn.listing("no-such-folder")) == []


@pytest.mark.parametrize(
    ("policy", "state", "dest"),
    [
        ("source_wins", "pending", ""),
        ("destination_wins", "excluded", ""),
        ("keep_both", "pending", keep_both_name("both.txt", 7)),
    ],
)
def test_a_file_changed_at_the_source_and_at_the_destination_is_a_conflict(policy, state, dest):
    """Rows to copy (changed at the source, or new) are judged against what the last
    pass wrote at their key: a listed object that differs from it was changed there too."""
    sink = FakeSink(
        rows={
            "both.txt": mine(20, "both.txt", size=9, state="pending", md5="new-src"),
            "src-only.txt": mine(21, "src-only.txt", size=9, state="pending", md5="new-src"),
            "new.txt": mine(22, "new.txt", state="pending"),
        },
        written={  # what the last pass wrote
            "both.txt": mine(1, "both.txt", state="copied", md5="m"),
            "src-only.txt": mine(2, "src-only.txt", state="unchanged", md5="m"),
        },
    )
    listing = [
        Entry("both.txt", "file", 3, 7, (("md5", "edited"),)),  # not what we wrote
        Entry("src-only.txt", "file", 3, 7, (("md5", "m"),)),  # what we wrote: no conflict
        Entry("new.txt", "file", 3, 7, (("md5", "x"),)),  # never ours there: on_exists
    ]
    result = destination_check(listing, sink, ids=(20, 22), policy=policy, key=str,
                               src_caps=NS, dst_caps=HASHED)  # fmt: skip
    assert [(d.pk, d.state, d.change, d.dest_path) for d in sink.decided] == [
        (20, state, "conflict", dest)
    ]
    assert "md5 m → edited" in sink.decided[0].what
    assert (result.conflicts, result.gone, sink.gone_items) == (1, 0, [])


def test_the_destinations_version_kept_by_keep_both_is_never_gone():
    beside = keep_both_name("doc.txt", 7)
    sink = FakeSink(
        rows={
            beside: mine(30, beside, state="unchanged"),  # the source's, written beside
            "again.txt": mine(31, "again.txt", state="pending", md5="n"),  # changed again
        },
        prior={beside: "doc.txt"},
        kept={"doc.txt": beside, "again.txt": ""},
    )
    listing = [
        Entry(beside, "file", 3, 7, (("md5", "m"),)),
        Entry("doc.txt", "file", 5, 7),  # the destination's own version: no row, kept
        Entry("again.txt", "file", 5, 7),  # kept before, now the source changed again
        Entry("extra.txt", "file", 5, 7),
    ]
    result = destination_check(listing, sink, ids=(30, 31), policy="keep_both", key=str,
                               src_caps=NS, dst_caps=HASHED)  # fmt: skip
    assert sink.kept_items == {"doc.txt": beside}
    assert sink.gone_items == [Gone("extra.txt", "file", 5, "", False)]
    (again,) = sink.decided
    assert (again.pk, again.change, again.dest_path) == (
        31, "conflict", keep_both_name("again.txt", 7)
    )  # fmt: skip
    assert "kept in an earlier conflict" in again.what
    assert result.conflicts == 1


@pytest.mark.parametrize("path", ["a/report.docx", "report", "a/b.c/x", "x.tar.gz", ".hidden"])
def test_planned_of_undoes_keep_both_name(path):
    mtime = 1_700_000_000_123_456_789
    beside = keep_both_name(path, mtime)
    assert planned_of(beside, mtime) == path
    assert planned_of(beside, mtime + 10**9) == ""  # another file's time: not its name
    assert planned_of(path, mtime) == ""


def test_a_keep_both_name_written_again_is_not_gone():
    """The source changed again within the second: its keep-both name is the last one,
    listed as ours with no row, and written again in this pass: not handed on as gone."""
    beside = keep_both_name("doc.txt", 7)
    sink = FakeSink(
        rows={"doc.txt": mine(40, "doc.txt", size=9, state="pending", md5="n")},
        prior={beside: "doc.txt"},
        kept={"doc.txt": beside},
    )
    listing = [Entry(beside, "file", 3, 7), Entry("doc.txt", "file", 5, 7)]
    destination_check(listing, sink, ids=(40, 40), policy="keep_both", key=str,
                      src_caps=NS, dst_caps=HASHED)  # fmt: skip
    assert [(d.pk, d.dest_path) for d in sink.decided] == [(40, beside)]
    assert (sink.gone_items, sink.kept_items) == ([], {})
