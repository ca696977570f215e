"""A catch-up scan's classification: the database marks the unchanged rows
(jobs.manifest.unchanged_marked), Python the rest. Every row must end exactly as the
Python classification alone leaves it (engine.delta.classify's order: size, then a hash
both sides know, then the mtime within the coarser precision)."""

from __future__ import annotations

import copy
import itertools

from jobs.delta import ScanDelta
from jobs.manifest import insert_rows, unchanged_marked
from migrator.engine.scan import Row
from migrator.storage import Capabilities

from .factories import PassFactory

SECOND = 10**9
MTIME = 1_700_000_000 * SECOND


def _cases(job_id: int, pass_id: int) -> tuple[list[Row], list[Row]]:
    """(the last pass's rows, this pass's rows): one source path per combination."""
    prior: list[Row] = []
    now: list[Row] = []
    combos = itertools.product(
        ("file", "dir"),  # this pass's kind
        (False, True),  # the last pass saw the other kind there
        ("copied", "unchanged", "failed", "excluded", "pending", None),  # None: no row
        (0, 1),  # size differs
        (False, True),  # written elsewhere
        ("", "same", "other"),  # md5: none on this side, the same, another
        ("", "same", "other"),  # crc32c likewise
        (0, SECOND // 2, SECOND, 3 * SECOND),  # mtime difference (precision: 1 s)
        (False, True),  # the last pass's destination key differs (case folding)
    )
    for n, (kind, flipped, state, dsize, moved, md5, crc, dmtime, dkey) in enumerate(combos):
        path = f"d/{n:05d}.dat"
        row = Row(job_id=job_id, job_pass_id=pass_id, kind=kind, source_path=path,
                  dest_path=path, dest_key=path, size=100, mtime_ns=MTIME + dmtime,
                  md5={"": "", "same": "m1", "other": "m2"}[md5],
                  crc32c={"": "", "same": "c1", "other": "c2"}[crc])  # fmt: skip
        now.append(row)
        if state is None:
            continue
        prior.append(
            Row(job_id=job_id, job_pass_id=0, kind=("dir" if kind == "file" else "file")
                if flipped else kind, source_path=path,
                dest_path=f"elsewhere/{path}" if moved else path,
                dest_key=(f"elsewhere/{path}" if moved else path).upper() if dkey else
                (f"elsewhere/{path}" if moved else path),
                size=100 + dsize, mtime_ns=MTIME, md5="m1", crc32c="c1" if n % 2 else "",
                state=state, reason="destination_changed" if state == "excluded" else "")
        )  # fmt: skip
    return prior, now


def _delta(prior_pass, precision: int) -> ScanDelta:
    delta = ScanDelta.__new__(ScanDelta)  # what __init__ finds for a catch-up pass
    delta.prior, delta.beside = prior_pass, False
    delta.src_caps = Capabilities(mtime_precision_ns=precision)
    delta.dst_caps = Capabilities()
    return delta


def _outcome(rows: list[Row]) -> list[tuple]:
    return [(r.source_path, r.state, r.change, r.reason, r.message, r.dest_path, r.dest_key,
             r.md5, r.crc32c) for r in rows]  # fmt: skip


def test_the_database_marks_exactly_the_rows_python_calls_unchanged(db, monkeypatch):
    first = PassFactory(number=1)
    second = PassFactory(job=first.job, number=2)
    prior_rows, rows = _cases(first.job_id, second.pk)
    for r in prior_rows:
        r.job_pass_id = first.pk
    insert_rows(prior_rows)

    in_db = copy.deepcopy(rows)
    counts_db = _delta(first, SECOND).classify(in_db)
    with monkeypatch.context() as m:  # the Python classification alone
        m.setattr("jobs.delta.unchanged_marked", lambda rows, *args: rows)
        in_python = copy.deepcopy(rows)
        counts_python = _delta(first, SECOND).classify(in_python)

    assert _outcome(in_db) == _outcome(in_python)
    assert counts_db == counts_python
    states = {r.state for r in in_db}
    assert states == {"unchanged", "pending", "excluded"}
    # the database itself found every unchanged row (none was left to Python)
    again = copy.deepcopy(rows)
    left = unchanged_marked(again, first.pk, SECOND)
    unchanged = [r.source_path for r in in_python if r.state == "unchanged"]
    assert len(unchanged) == len(rows) - len(left) > 0
    assert sorted(r.source_path for r in again if r.state == "unchanged") == sorted(unchanged)
    # what we wrote is what an unchanged row keeps: the last pass's key and hashes
    by_path = {r.source_path: r for r in prior_rows}
    for r in again:
        if r.state == "unchanged" and r.kind == "file":
            p = by_path[r.source_path]
            assert (r.dest_key, r.md5, r.crc32c) == (p.dest_key, p.md5, p.crc32c)
