"""The engine's scan with an in-memory sink: no database, a real local folder."""

from __future__ import annotations

import pytest

from migrator.engine import scan as engine_scan
from migrator.engine.filters import Filters
from migrator.engine.memory import MemorySink
from migrator.engine.scan import Mapping, Planner, scan
from migrator.sanitize import Sanitizer
from migrator.storage import Transient
from migrator.storage.local import LocalConnector


def planner(profile: str | None = None, filters: Filters | None = None, assess=False) -> Planner:
    return Planner(
        job_id=7,
        pass_id=9,
        sanitizer=Sanitizer.for_destination("file", profile),
        filters=filters or Filters(),
        assess=assess,
    )


def tree(root, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_every_entry_is_one_planned_row_with_its_state_and_reason(tmp_path):
    tree(tmp_path, {"a/one.txt": b"1", "a/Thumbs.db": b"x", "b/CON.txt": b"22", "c.log": b""})
    sink = MemorySink()
    filters = Filters.from_dict({"exclude": ["*.log"]})
    with LocalConnector(str(tmp_path)) as conn:
        assert scan(conn, [Mapping(0, "")], planner("windows", filters), sink) is True
    rows = {r.source_path: r for r in sink.rows.values()}
    assert set(rows) == {"a", "a/one.txt", "a/Thumbs.db", "b", "b/CON.txt", "c.log"}
    assert (rows["a/Thumbs.db"].state, rows["a/Thumbs.db"].reason) == ("excluded", "junk_file")
    assert (rows["c.log"].state, rows["c.log"].reason) == ("excluded", "excluded_by_pattern")
    assert rows["b/CON.txt"].dest_path == "b/CON_.txt" and rows["b/CON.txt"].rules
    assert rows["b/CON.txt"].renamed_from == "b/CON.txt"
    assert (rows["a/one.txt"].state, rows["a/one.txt"].size) == ("pending", 1)
    assert {(r.job_id, r.job_pass_id) for r in rows.values()} == {(7, 9)}
    assert sink.counts() == {"copied": 0, "unchanged": 0, "excluded": 2, "failed": 0,
                             "pending": 2, "seen": 4}  # fmt: skip


def test_an_assessment_plans_but_leaves_nothing_to_copy(tmp_path):
    tree(tmp_path, {"a.txt": b"1", "b.txt": b"2"})
    sink = MemorySink()
    with LocalConnector(str(tmp_path)) as conn:
        scan(conn, [Mapping(0, "")], planner(assess=True), sink)
    assert {(r.state, r.reason) for r in sink.rows.values()} == {("excluded", "assessment_only")}


def test_chunks_grow_and_a_stopped_sink_stops_the_scan(tmp_path, monkeypatch):
    tree(tmp_path, {f"f{i:03}.txt": b"x" for i in range(40)})
    monkeypatch.setattr(engine_scan, "SCAN_FIRST_FLUSH_ROWS", 2)
    monkeypatch.setattr(engine_scan, "SCAN_FLUSH_ROWS", 8)
    sizes = []

    class Counting(MemorySink):
        def scan_chunk(self, rows, cursor):
            sizes.append(len(rows))
            self.stop = len(sizes) == 3
            return super().scan_chunk(rows, cursor)

    sink = Counting()
    with LocalConnector(str(tmp_path)) as conn:
        assert scan(conn, [Mapping(0, "")], planner(), sink) is False
    assert sizes == [2, 8, 8]  # 2, then 4x larger up to the cap; nothing after the stop
    assert len(sink.rows) == 18 and sink.cursor == "0/f017.txt"


def test_a_source_lost_mid_scan_resumes_after_the_cursor_with_every_file_once(
    tmp_path, monkeypatch
):
    tree(tmp_path, {f"d/f{i}.txt": b"x" for i in range(6)})
    monkeypatch.setattr(engine_scan, "SCAN_FIRST_FLUSH_ROWS", 2)
    monkeypatch.setattr(engine_scan, "SCAN_FLUSH_ROWS", 2)
    sink = MemorySink()
    real_scan = LocalConnector.scan
    calls = []

    def failing(self, prefix=""):
        calls.append(prefix)
        for n, entry in enumerate(real_scan(self, prefix)):
            if len(calls) == 1 and n == 4:
                raise Transient(entry.path, "connection reset by peer")
            yield entry

    monkeypatch.setattr(LocalConnector, "scan", failing)
    with LocalConnector(str(tmp_path)) as conn:
        with pytest.raises(Transient):
            scan(conn, [Mapping(0, "")], planner(), sink)
        assert len(sink.events) == 1 and "connection reset by peer" in sink.events[0][1]
        kept = sink.cursor
        assert kept
        assert scan(conn, [Mapping(0, "")], planner(), sink, cursor=kept) is True
    paths = [r.source_path for r in sink.rows.values()]
    assert sorted(paths) == ["d", *(f"d/f{i}.txt" for i in range(6))]
    assert len(paths) == len(set(paths))  # nothing planned twice


def test_mappings_scan_their_folder_under_their_prefix(tmp_path):
    tree(tmp_path, {"in/a.txt": b"1", "other/b.txt": b"2"})
    sink = MemorySink()
    with LocalConnector(str(tmp_path)) as conn:
        scan(conn, [Mapping(0, "in", "archive/2026")], planner(), sink)
    assert {r.source_path: r.dest_path for r in sink.rows.values() if r.kind == "file"} == {
        "in/a.txt": "archive/2026/a.txt"
    }


def test_estimate_uses_the_last_rate_else_reads_samples(tmp_path):
    tree(tmp_path, {"a.bin": b"x" * 1000})
    figures = {"files": 100, "bytes": 10_000}
    with LocalConnector(str(tmp_path)) as conn:
        last = engine_scan.estimate(conn, figures, [], (10.0, 1000.0))
        read = engine_scan.estimate(conn, figures, ["a.bin", "missing.bin"], None)
        none = engine_scan.estimate(conn, figures, ["missing.bin"], None)
    assert last == {"seconds": 10, "files_per_s": 10.0, "bytes_per_s": 1000, "basis": "last run"}
    assert read["basis"] == "read of 1 sample files" and read["seconds"] >= 0
    assert none == {"seconds": None, "basis": "no sample could be read"}
