"""Files that change while they are copied (a log still being written, a database in
use): each is left pending and its batch tried again later in the pass, a few times; one
that settles arrives whole, one that never does fails as changed_during_copy. Never a
torn object, never a temp file left, every file one manifest row. Against a local folder
and a real Samba share, through the CLI's workers; and through the agent's API."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from jobs.sink import _retry_later
from migrator.engine.copy import Outcome, State

from .conftest import CliResult, run_smb, smb_source, tree_of
from .factories import Steps, agent_post, agent_side

# the subprocess's settings: later tries soon (settles.log has 2 s to stop meanwhile),
# two attempts inside each try, three tries of the batch
FAST = {
    "MIGRATOR_RETRY_LATER_SECONDS": "2",
    "MIGRATOR_CHANGED_ATTEMPTS": "3",
    "MIGRATOR_RETRY_ATTEMPTS": "2",
    "MIGRATOR_RETRY_BACKOFF": "0.1",
}
QUIET = {f"quiet-{i}.txt": f"still {i}\n".encode() for i in range(4)}


class Appender:
    """Appends a line to a file every few milliseconds from its own thread, from before
    the job starts until it is stopped: every read of the file overlaps a write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        size = path.stat().st_size
        self.thread.start()
        while path.stat().st_size == size:  # it is writing before anyone reads
            assert self.thread.is_alive()
            time.sleep(0.001)

    def _run(self) -> None:
        with open(self.path, "ab", buffering=0) as f:
            while not self.stop.is_set():
                f.write(b"line\n")
                time.sleep(0.005)

    def halt(self) -> None:
        self.stop.set()
        self.thread.join()


def make_files(root: Path, size: int) -> None:
    """busy.log and settles.log, `size` bytes each, and a few quiet files."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("busy.log", "settles.log"):
        (root / name).write_bytes(os.urandom(size))
    for name, data in QUIET.items():
        (root / name).write_bytes(data)


def run_while_written(cli, root: Path, run) -> CliResult:
    """`run()` the job while busy.log is written all through it and settles.log only
    until its first try has left it pending (its row says it was tried, and waits)."""
    busy, settles = Appender(root / "busy.log"), Appender(root / "settles.log")
    outcome: dict = {}
    job = threading.Thread(target=lambda: outcome.update(result=run()))
    job.start()
    try:
        deadline = time.monotonic() + 60
        while not settles.stop.is_set():
            rows = cli.query(
                "SELECT state, attempts FROM jobs_fileitem WHERE source_path = 'settles.log'"
            )
            if rows and (rows[0][0] != "pending" or rows[0][1] > 0) or not job.is_alive():
                settles.halt()  # tried once (or, wrongly, decided already): it settles
            assert time.monotonic() < deadline, "settles.log was never tried"
            time.sleep(0.02)
        job.join(timeout=120)
    finally:
        settles.halt()
        busy.halt()
    assert not job.is_alive()
    return outcome["result"]


def assert_never_torn(cli, result: CliResult, src: Path, dst: Path) -> None:
    """What a user sees after the job: the busy file failed with its reason and nothing
    of it at the destination, the settled one whole as it is now, the rest copied."""
    assert result.code == 1, result.stdout + result.stderr[-3000:]  # completed with errors
    summary = result.json
    total = 2 + len(QUIET)
    assert summary["state"] == "completed_with_errors"
    assert (
        summary["seen"]
        == total
        == sum(summary[k] for k in ("copied", "unchanged", "excluded", "failed", "pending"))
    )
    assert (summary["copied"], summary["failed"], summary["pending"]) == (total - 1, 1, 0)
    assert summary["failed_by_reason"] == {"changed_during_copy": 1}
    # nothing of busy.log: no torn object and no temp file; settles.log as it is now
    assert tree_of(dst) == {"settles.log": (src / "settles.log").read_bytes(), **QUIET}
    rows = cli.query(
        "SELECT source_path, state, reason, attempts FROM jobs_fileitem ORDER BY source_path"
    )
    assert len(rows) == len({r[0] for r in rows}) == total  # each file one manifest row
    by_path = {r[0]: r[1:] for r in rows}
    # three batch tries of two in-batch attempts each, every one of which saw it move
    assert by_path["busy.log"] == ("failed", "changed_during_copy", 6)
    # two attempts of the first try saw it move; the next try copied it
    assert by_path["settles.log"] == ("copied", "", 3)
    assert cli.query("SELECT attempts FROM jobs_batch") == [(3,)]
    (batch,) = cli.query("SELECT id FROM jobs_batch")[0]
    waits = cli.query(
        "SELECT message, staff_only FROM jobs_event WHERE message LIKE '%will be tried again%' "
        "ORDER BY id"
    )
    said = "changed while they were copied and will be tried again in 2 s"
    assert [(m.split("):")[0], bool(staff)) for m, staff in waits] == [
        (f"2 item(s) of batch {batch} {said} (attempt 1 of 3", True),
        (f"1 item(s) of batch {batch} {said} (attempt 2 of 3", True),
    ]
    assert waits[1][0].endswith("busy.log")  # the one still moving, by name, to staff


def test_a_file_written_all_through_the_job_fails_and_one_that_settles_arrives_whole(cli, tmp_path):
    """Local to local, the reads slowed by --bwlimit so each lasts about a second."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_files(src, size=(1 << 20) + 1)
    result = run_while_written(
        cli,
        src,
        lambda: cli.run("--source", str(src), "--destination", str(dst), "--json",
                        "--bwlimit", "2000000", **FAST),
    )  # fmt: skip
    assert_never_torn(cli, result, src, dst)


def test_smb_a_file_written_all_through_the_job_fails_and_one_that_settles_arrives_whole(
    cli, samba_dc, tmp_path
):
    """A real Samba share as the source, the files written on the DC's disk behind the
    server's back; each is larger than one READ, so it is read on a second handle (that
    open, and the close after its last byte, say whether it moved)."""
    name, disk = smb_source(samba_dc)
    dst = tmp_path / "dst"
    make_files(disk, size=(5 << 19) + 1)  # 2.5 MiB: three READs
    result = run_while_written(
        cli,
        disk,
        lambda: run_smb(cli, samba_dc, "--source", samba_dc.smb_url("data", name),
                        "--destination", dst.as_uri(), "--bwlimit", "4000000", **FAST),
    )  # fmt: skip
    assert_never_torn(cli, result, disk, dst)


def test_each_reason_waits_for_its_own_number_of_batch_tries(settings):
    """Endpoint away: up to MIGRATOR_BATCH_ATTEMPTS tries; changed while copied: up to
    MIGRATOR_CHANGED_ATTEMPTS (never more than the other); any other failure: now."""
    settings.MIGRATOR_BATCH_ATTEMPTS, settings.MIGRATOR_CHANGED_ATTEMPTS = 5, 2

    def waiting(attempts: int) -> list[int]:
        outcomes = [
            Outcome(1, State.FAILED, "changed_during_copy"),
            Outcome(2, State.FAILED, "source_unavailable"),
            Outcome(3, State.FAILED, "destination_unavailable"),
            Outcome(4, State.FAILED, "locked"),
            Outcome(5, State.COPIED),
        ]
        now, later = _retry_later(outcomes, attempts)
        assert sorted(o.item_id for o in now + later) == [1, 2, 3, 4, 5]
        return sorted(o.item_id for o in later)

    assert [waiting(n) for n in range(1, 6)] == [[1, 2, 3], [2, 3], [2, 3], [2, 3], []]
    settings.MIGRATOR_BATCH_ATTEMPTS = 1
    assert waiting(1) == []


@pytest.mark.django_db(transaction=True)
def test_an_agents_changed_file_waits_for_later_tries_then_fails(tmp_path, settings):
    """The agent's outcomes go through the same sink: its changed file stays pending
    (with its tries counted) for two tries of its batch, and fails at the third."""
    settings.MIGRATOR_CHANGED_ATTEMPTS = 3
    settings.MIGRATOR_RETRY_LATER_SECONDS = 1
    job, _, token = agent_side("delta", tmp_path)
    with Steps() as steps:
        _agent_tries(job, token)
        steps.run("finish_pass")
    job.refresh_from_db()
    assert job.state == "completed_with_errors"


def _agent_tries(job, token: str) -> None:
    from jobs.models import Batch, Event, FileItem, Pass
    from migrator.engine.scan import Row
    from migrator.engine.wire import row_to_wire

    status, work = agent_post(token, "work/")
    rows = [row_to_wire(Row(0, 0, "file", n, n, 5)) for n in ("a.log", "b.txt")]
    body = {"lease": work["lease"], "after": "", "cursor": "0/b.txt", "rows": rows}
    assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"] is True
    assert agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})[1]["ok"]
    log, txt = FileItem.objects.order_by("source_path")
    moved = [log.pk, "failed", "changed_during_copy", "it was modified while it was read",
             0, "", "", "", 2]  # fmt: skip
    for attempt in (1, 2, 3):
        status, work = agent_post(token, "work/")
        assert (status, work["kind"]) == (200, "batch"), work
        outcomes = [moved]
        if attempt == 1:
            outcomes.append([txt.pk, "copied", "", "", 5, "", "", "", 1])
        status, answer = agent_post(token, f"batch/{work['batch_id']}/record/",
                              {"lease": work["lease"], "outcomes": outcomes})  # fmt: skip
        assert (status, answer["recorded"]) == (200, True)
        log.refresh_from_db()
        batch = Batch.objects.get(pk=work["batch_id"])
        if attempt < 3:
            assert (log.state, log.reason, log.attempts) == ("pending", "", 2 * attempt)
            assert batch.state == "queued"
            # later in the pass, as a worker's: not before the delay is out
            assert agent_post(token, "work/")[1]["kind"] == "none"
            time.sleep(1.1)
        else:
            assert (log.state, log.reason, log.attempts) == ("failed", "changed_during_copy", 6)
            assert batch.state == "done"
    p = Pass.objects.get(job=job)
    assert (p.seen, p.copied, p.failed, p.pending) == (2, 1, 1, 0)
    waits = Event.objects.filter(job=job, message__contains="will be tried again")
    assert waits.count() == 2 and all(e.staff_only for e in waits)
