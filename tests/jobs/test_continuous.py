"""Continuous mode against real sources: a local folder (inotify) and a Samba share
(SMB2 CHANGE_NOTIFY). The runner (jobs.continuous.continuous_run, the worker task) runs
in a thread of this process; what it enqueues (the reconciliation's pass) runs inline."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from jobs import continuous
from jobs.choices import PassKind
from jobs.dispatch import set_inline
from jobs.models import ContinuousState, Pass
from jobs.services import JobStateError

from .conftest import wait_until
from .factories import new_job, run_job

pytestmark = pytest.mark.django_db(transaction=True)


def _run_now(func: str, args: tuple) -> None:
    if func.endswith("continuous_run"):
        return  # the test runs the runner itself, in a thread
    module, _, name = func.rpartition(".")
    getattr(importlib.import_module(module), name)(*args)


class Runner:
    """continuous_run in a thread, stopped at the end of the test."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(self._watching, 10, "the runner to watch the source", every=0.1)

    def _watching(self) -> bool:
        state = ContinuousState.objects.get(job_id=self.job_id)
        return bool(state.watching_since and state.lease_owner)

    def _run(self) -> None:
        try:
            continuous.continuous_run(job_id=self.job_id, stop=self.stop)
        finally:
            connection.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


@pytest.fixture
def inline():
    set_inline(_run_now)
    yield
    set_inline(None)


def _sync_pass(job) -> Pass:
    return Pass.objects.get(job=job, kind=PassKind.SYNC)


def _accounted(p: Pass) -> bool:
    p.refresh_from_db()
    return p.seen == p.copied + p.unchanged + p.excluded + p.failed + p.pending


def test_a_local_job_follows_new_modified_and_renamed_files(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("first")
    (src / "old name.txt").write_text("to be renamed")
    job = new_job(f"file://{src}", f"file://{dst}", options={"deletes": "mirror"})
    with pytest.raises(JobStateError):  # nothing to stop yet
        continuous.continuous_stop(job=job)
    assert run_job(job).state == "completed"
    set_inline(_run_now)
    continuous.continuous_start(job=job)
    runner = Runner(job.pk)
    try:
        (src / "docs" / "deeper").mkdir()
        (src / "docs" / "deeper" / "new.txt").write_text("new file")
        wait_until(lambda: (dst / "docs/deeper/new.txt").exists(), 10, "the new file copied")
        assert (dst / "docs/deeper/new.txt").read_text() == "new file"

        (src / "docs" / "a.txt").write_text("second, longer")
        wait_until(
            lambda: (dst / "docs/a.txt").read_text() == "second, longer", 10, "the modification"
        )

        os.rename(src / "old name.txt", src / "docs" / "new name.txt")
        wait_until(lambda: (dst / "docs/new name.txt").exists(), 10, "the rename applied")
        wait_until(lambda: not (dst / "old name.txt").exists(), 5, "no duplicate left")
        assert (dst / "docs/new name.txt").read_text() == "to be renamed"

        (src / "docs" / "a.txt").unlink()  # mirror: deleted at the destination too
        wait_until(lambda: not (dst / "docs/a.txt").exists(), 10, "the deletion applied")

        state = ContinuousState.objects.get(job=job)
        wait_until(lambda: ContinuousState.objects.get(job=job).changes_applied >= 4, 5, "counts")
        state.refresh_from_db()
        assert state.changes_seen >= 4 and state.last_change_at is not None
        p = _sync_pass(job)
        assert _accounted(p) and p.copied >= 2 and p.pending == 0
    finally:
        runner.close()
        set_inline(None)
    assert sorted(str(f.relative_to(dst)) for f in dst.rglob("*") if f.is_file()) == [
        "docs/deeper/new.txt",
        "docs/new name.txt",
    ]
    continuous.continuous_stop(job=job)


def test_a_change_missed_while_the_watch_was_down_is_caught_by_reconciliation(tmp_path: Path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}.txt").write_text(f"file {i}")
    job = new_job(f"file://{src}", f"file://{dst}")
    run_job(job)
    set_inline(_run_now)
    continuous.continuous_start(job=job)
    try:
        runner = Runner(job.pk)
        runner.close()  # the watch is down (as after a dropped connection)
        (src / "f1.txt").write_text("changed while nobody watched")
        (src / "missed.txt").write_text("new while nobody watched")
        continuous.continuous_reconcile(job=job)
        runner = Runner(job.pk)
        try:
            wait_until(
                lambda: ContinuousState.objects.get(job=job).last_reconcile_found, 30,
                "the reconciliation to finish",
            )  # fmt: skip
        finally:
            runner.close()
    finally:
        set_inline(None)
    state = ContinuousState.objects.get(job=job)
    assert state.last_reconcile_found["copied"] == 2  # what notifications missed
    assert (dst / "f1.txt").read_text() == "changed while nobody watched"
    assert (dst / "missed.txt").read_text() == "new while nobody watched"
    assert job.events.filter(message__contains="found 2 change(s) that notifications missed")


def test_trash_mode_moves_what_was_deleted_at_the_source_into_the_trash(tmp_path: Path):
    from jobs.models import Deletion

    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "old" / "inner").mkdir(parents=True)
    (src / "old" / "inner" / "x.txt").write_text("in a folder deleted whole")
    (src / "keep.txt").write_text("kept")
    (src / "gone.txt").write_text("deleted alone")
    job = new_job(f"file://{src}", f"file://{dst}", options={"deletes": "trash"})
    assert run_job(job).state == "completed"
    set_inline(_run_now)
    continuous.continuous_start(job=job)
    runner = Runner(job.pk)
    try:
        (src / "gone.txt").unlink()
        wait_until(lambda: not (dst / "gone.txt").exists(), 10, "the file to leave")
        shutil.rmtree(src / "old")
        wait_until(lambda: not (dst / "old").exists(), 10, "the folder to leave")
        number = _sync_pass(job).number
    finally:
        runner.close()
        set_inline(None)
    trash = dst / ".migrator-trash" / str(number)
    assert (trash / "gone.txt").read_text() == "deleted alone"
    assert (trash / "old/inner/x.txt").read_text() == "in a folder deleted whole"
    assert (dst / "keep.txt").read_text() == "kept"
    rows = Deletion.objects.filter(job_pass=_sync_pass(job))
    assert {(d.dest_path, d.action) for d in rows} == {
        ("gone.txt", "trashed"), ("old", "trashed"), ("old/inner", "trashed"),
        ("old/inner/x.txt", "trashed"),
    }  # fmt: skip
    assert rows.get(dest_path="gone.txt").trash_path == f".migrator-trash/{number}/gone.txt"
    p = _sync_pass(job)
    assert (p.deleted_at_source, p.deletes_done, p.deletes_failed) == (2, 2, 0)


def test_a_move_to_a_gcs_destination_leaves_no_duplicate(tmp_path: Path, gcs_server, gcs_bucket):
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "report.txt").write_text("moved into docs")
    (src / "docs" / "a.txt").write_text("stays")
    job = new_job(f"file://{src}", f"gs://{gcs_bucket}/share", options={"deletes": "mirror"})
    assert run_job(job).state == "completed"
    bucket = gcs_server.client().bucket(gcs_bucket)

    def objects() -> list[str]:
        return sorted(b.name for b in gcs_server.client().list_blobs(gcs_bucket))

    set_inline(_run_now)
    continuous.continuous_start(job=job)
    runner = Runner(job.pk)
    try:
        os.rename(src / "report.txt", src / "docs" / "report.txt")
        wait_until(lambda: "share/docs/report.txt" in objects(), 10, "the moved object")
        wait_until(lambda: "share/report.txt" not in objects(), 5, "the old name gone")
        (src / "docs" / "a.txt").write_text("changed in place")
        wait_until(
            lambda: bucket.blob("share/docs/a.txt").download_as_bytes() == b"changed in place",
            10, "the modification",
        )  # fmt: skip
        assert _accounted(_sync_pass(job))
    finally:
        runner.close()
        set_inline(None)
    assert objects() == ["share/docs/a.txt", "share/docs/report.txt"]
    assert bucket.blob("share/docs/report.txt").download_as_bytes() == b"moved into docs"


def test_a_job_from_a_gcs_source_follows_its_changes(tmp_path: Path, gcs_server, gcs_bucket):
    dst = tmp_path / "dst"
    bucket = gcs_server.client().bucket(gcs_bucket)
    bucket.blob("data/a.txt").upload_from_string(b"first")
    bucket.blob("data/b.txt").upload_from_string(b"to be deleted")
    job = new_job(f"gs://{gcs_bucket}/data", f"file://{dst}",
                  options={"deletes": "mirror", "watch_seconds": 0.3})  # fmt: skip
    assert run_job(job).state == "completed"
    set_inline(_run_now)
    continuous.continuous_start(job=job)
    runner = Runner(job.pk)
    try:
        bucket.blob("data/new/c.txt").upload_from_string(b"new in the bucket")
        bucket.blob("data/a.txt").upload_from_string(b"second")
        bucket.blob("data/b.txt").delete()
        wait_until(lambda: (dst / "new/c.txt").exists(), 10, "the new object copied")
        wait_until(lambda: (dst / "a.txt").read_bytes() == b"second", 10, "the rewrite")
        wait_until(lambda: not (dst / "b.txt").exists(), 10, "the deletion")
        assert _accounted(_sync_pass(job))
    finally:
        runner.close()
        set_inline(None)
    assert (dst / "new/c.txt").read_bytes() == b"new in the bucket"


def test_a_live_runner_sends_a_runner_for_another_job_whose_runner_died(
    tmp_path: Path, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    jobs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        jobs.append(new_job(f"file://{tmp_path / name}", f"file://{tmp_path / name}-dst"))
        assert run_job(jobs[-1]).state == "completed"
    sent: list = []

    def dispatch(func: str, args: tuple) -> None:
        if func.endswith("continuous_run"):
            sent.append(args[0])
        else:
            _run_now(func, args)

    monkeypatch.setattr(continuous, "PEERS_SECONDS", 0.5)
    set_inline(dispatch)
    try:
        for job in jobs:
            continuous.continuous_start(job=job)
        # job b's runner was killed: its lease names a process that is gone, and lapsed
        ContinuousState.objects.filter(job=jobs[1]).update(
            lease_owner="host:999999:dead", lease_expires=timezone.now() - timedelta(seconds=1)
        )
        sent.clear()
        runner = Runner(jobs[0].pk)
        try:
            wait_until(lambda: jobs[1].pk in sent, 5, "job a's runner to send one for job b")
        finally:
            runner.close()
    finally:
        set_inline(None)
    assert jobs[0].pk not in sent  # its own lease is held: nothing sent for it


def test_runners_hand_over_without_a_gap(tmp_path: Path, monkeypatch):
    """A runner whose time is up asks for a successor and goes on until the successor's
    watch is armed: files written without pause across hand-overs all arrive, with no
    reconciliation needed."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    job = new_job(f"file://{src}", f"file://{dst}")
    assert run_job(job).state == "completed"
    stop = threading.Event()
    runners: list[threading.Thread] = []

    def run() -> None:
        try:
            continuous.continuous_run(job_id=job.pk, stop=stop)
        finally:
            connection.close()

    def dispatch(func: str, args: tuple) -> None:
        if func.endswith("continuous_run"):  # a worker takes the task: a thread here
            runners.append(threading.Thread(target=run, daemon=True))
            runners[-1].start()
        else:
            _run_now(func, args)

    monkeypatch.setattr(continuous, "run_seconds", lambda: 1.0)
    set_inline(dispatch)
    try:
        continuous.continuous_start(job=job)  # its first pass is done: a runner is sent
        wait_until(lambda: ContinuousState.objects.get(job=job).watching_since, 10, "watching")
        written = []
        ends = time.monotonic() + 4.5  # over several hand-overs
        while time.monotonic() < ends:
            name = f"f{len(written):03d}.txt"
            (src / name).write_text(name)
            written.append(name)
            time.sleep(0.02)
        wait_until(lambda: all((dst / n).exists() for n in written), 10, "every file")
    finally:
        stop.set()
        for thread in runners:
            thread.join(timeout=20)
        set_inline(None)
    assert len(runners) >= 3  # the first and at least two successors
    state = ContinuousState.objects.get(job=job)
    assert not state.reconcile_due and not state.last_reconcile_found  # nothing was missed
    assert not job.events.filter(message__contains="without handing over").exists()


# --- a Samba share as the source ------------------------------------------------------------


def _put(share, path: str, data: bytes) -> None:
    import io
    import time as _time

    from migrator.storage import Entry

    share.write(path, io.BytesIO(data), Entry(path, "file", len(data), _time.time_ns()))


def test_the_smb_watch_reports_a_file_two_folders_down_and_is_rearmed(samba_dc):
    from migrator.engine.watch import Change
    from migrator.storage import connector_for

    folder = samba_dc.make_folder("data")
    url = samba_dc.smb_url("data", folder)
    with connector_for(url, samba_dc.admin_password) as share:
        share.mkdir("one/two")
        watch = connector_for(url, samba_dc.admin_password).watch("")
        try:
            _put(share, "one/two/deep.txt", b"deep")
            seen = []

            def reported(change) -> bool:
                while (item := watch.get(timeout=0.2)) is not None:
                    seen.append(item)
                # a write is reported as made in place (its temp file is ours, left out)
                return change in seen or Change(change.path, "modified") in seen

            wait_until(lambda: reported(Change("one/two/deep.txt", "created")), 10, "create")
            _put(share, "second.txt", b"after the re-arm")  # the watch answered once: again
            wait_until(lambda: reported(Change("second.txt", "created")), 10, "the next one")
            assert not [c for c in seen if ".mg-" in c.path + c.new_path]
            share.move("second.txt", "one/renamed.txt")
            wait_until(lambda: reported(Change("second.txt", "moved", "one/renamed.txt")), 10,
                       "the rename")  # fmt: skip
        finally:
            watch.close()


def test_a_job_from_a_samba_share_follows_its_changes(samba_dc, tmp_path: Path):
    from migrator.storage import connector_for

    folder = samba_dc.make_folder("data")
    url = samba_dc.smb_url("data", folder)
    dst = tmp_path / "dst"
    with connector_for(url, samba_dc.admin_password) as share:
        _put(share, "a.txt", b"first")
        job = new_job(url, f"file://{dst}", options={"deletes": "mirror"})
        job.source.set_secret(samba_dc.admin_password)
        job.source.save()
        assert run_job(job).state == "completed"
        set_inline(_run_now)
        continuous.continuous_start(job=job)
        runner = Runner(job.pk)
        try:
            share.mkdir("sub/deeper")
            _put(share, "sub/deeper/new.txt", b"new over SMB")
            wait_until(lambda: (dst / "sub/deeper/new.txt").exists(), 10, "the new file copied")
            _put(share, "a.txt", b"second version")
            wait_until(lambda: (dst / "a.txt").read_bytes() == b"second version", 10, "modified")
            share.move("a.txt", "sub/a moved.txt")
            wait_until(lambda: (dst / "sub/a moved.txt").exists(), 10, "the move applied")
            wait_until(lambda: not (dst / "a.txt").exists(), 5, "no duplicate left")
            assert _accounted(_sync_pass(job))
        finally:
            runner.close()
            set_inline(None)


def test_a_dropped_smb_watch_is_reconciled_and_rearmed(samba_dc, tmp_path: Path, monkeypatch):
    import socket

    from smbprotocol import change_notify

    from migrator.storage import connector_for

    watchers: list = []  # each CHANGE_NOTIFY request the runner's watch makes
    made = change_notify.FileSystemWatcher.__init__

    def recorded(self, handle) -> None:
        made(self, handle)
        watchers.append(self)

    monkeypatch.setattr(change_notify.FileSystemWatcher, "__init__", recorded)
    folder = samba_dc.make_folder("data")
    url = samba_dc.smb_url("data", folder)
    dst = tmp_path / "dst"
    with connector_for(url, samba_dc.admin_password) as share:
        _put(share, "a.txt", b"first")
        job = new_job(url, f"file://{dst}")
        job.source.set_secret(samba_dc.admin_password)
        job.source.save()
        assert run_job(job).state == "completed"
        set_inline(_run_now)
        continuous.continuous_start(job=job)
        runner = Runner(job.pk)
        try:
            first = wait_until(lambda: watchers and watchers[-1].open.connection, 10, "a watch")
            # the network drops the watch's own connection (the server sees it close too)
            first.transport._sock.shutdown(socket.SHUT_RDWR)
            state = wait_until(
                lambda: (s := ContinuousState.objects.get(job=job)).last_error and s, 10,
                "the runner to record the watch error",
            )  # fmt: skip
            # smbprotocol ends the pending notify with an empty answer when its connection
            # drops, which the share's watch reports as an overflow, then as disconnected
            assert state.last_error.partition(":")[0] in ("overflow", "disconnected")
            # the runner watches again, on a connection of its own
            wait_until(lambda: watchers[-1].open.connection is not first, 10, "a new watch")
            _put(share, "after the drop.txt", b"seen by the new watch")
            wait_until(lambda: (dst / "after the drop.txt").exists(), 10, "the next change")
            # and a reconciliation pass checks what the drop may have hidden
            found = wait_until(
                lambda: ContinuousState.objects.get(job=job).last_reconcile_found, 30,
                "the reconciliation to finish",
            )  # fmt: skip
            assert found["pass"] > _sync_pass(job).number and found["failed"] == 0
        finally:
            runner.close()
            set_inline(None)
    assert job.events.filter(message__contains="the watch of the source failed").exists()


def test_the_api_starts_and_stops_continuous_mode_and_refuses_in_words(tmp_path: Path, admin_user):
    from django.test import Client

    from accounts.api.services import api_token_create
    from accounts.models import AuditEntry

    src = tmp_path / "src"
    src.mkdir()
    job = new_job(f"file://{src}", f"file://{tmp_path / 'dst'}")
    token = api_token_create(user=admin_user, name="t", created_by=admin_user)[1]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    set_inline(_run_now)
    try:
        assert api.post(f"/api/v1/jobs/{job.pk}/continuous/start/").status_code == 200
        again = api.post(f"/api/v1/jobs/{job.pk}/continuous/start/")
        assert again.status_code == 409 and "already in continuous mode" in again.json()["detail"]
        assert ContinuousState.objects.get(job=job).enabled
        assert api.post(f"/api/v1/jobs/{job.pk}/continuous/stop/").status_code == 200
    finally:
        set_inline(None)
    assert not ContinuousState.objects.get(job=job).enabled
    assert AuditEntry.objects.filter(detail__contains="continuous mode").count() == 2


def test_the_continuous_panel_for_staff_and_customer_and_the_admin_actions(
    tmp_path: Path, django_user_model
):
    from datetime import timedelta

    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from accounts.api.services import api_token_create
    from accounts.models import AuditEntry, Customer

    from .factories import viewer

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "a.txt").write_text("first")
    job = new_job(f"file://{src}", f"file://{dst}")
    assert run_job(job).state == "completed"
    engineer = django_user_model.objects.create_superuser("eng", "e@example.test", "pw-Long-12")
    staff = Client()
    staff.force_login(engineer)
    customer = viewer(django_user_model, "viewer", job.customer)
    other = viewer(django_user_model, "other", Customer.objects.create(name="Other Co"))
    live = reverse("admin:jobs_migrationjob_live", args=[job.pk])
    portal = reverse("portal:job", args=[job.pk])
    assert "Continuous mode" not in staff.get(live).content.decode()  # never in it: no panel

    def act(action: str) -> None:
        staff.post(reverse("admin:jobs_migrationjob_changelist"),
                   {"action": action, "_selected_action": [job.pk]})  # fmt: skip

    set_inline(_run_now)
    try:
        act("action_start_continuous_mode")
        assert ContinuousState.objects.get(job=job).enabled
        runner = Runner(job.pk)
        try:
            (src / "b.txt").write_text("new")
            wait_until(lambda: ContinuousState.objects.get(job=job).changes_applied, 10, "apply")
            assert (dst / "b.txt").read_text() == "new"
        finally:
            runner.close()
        host_error = "disconnected: connection to dc1.corp.example:445 was reset"
        ContinuousState.objects.filter(job=job).update(
            last_error=host_error, last_error_at=timezone.now(),
            oldest_unapplied_at=timezone.now() - timedelta(seconds=3),
        )  # fmt: skip
        staff_page = staff.get(live).content.decode()
        customer_page = customer.get(portal).content.decode()
        for page in (staff_page, customer_page):
            assert "Continuous mode: on" in page
            assert "Watching since" in page and "Last change seen" in page
            assert re.search(r"[1-9]\d* seen, [1-9]\d* applied", page), page
            assert "3 s (the oldest change not yet applied)" in page
            assert "Last reconciliation" in page
        assert host_error in staff_page
        assert "dc1.corp.example" not in customer_page
        assert "the watch of the source was interrupted" in customer_page
        assert other.get(portal).status_code == 404

        token = api_token_create(user=engineer, name="t", created_by=engineer)[1]
        api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        detail = api.get(f"/api/v1/jobs/{job.pk}/").json()["continuous"]
        assert detail["enabled"] and detail["changes_applied_last_hour"] >= 1
        assert detail["last_error"] == host_error and detail["lag_seconds"] >= 3
        assert api.get("/api/v1/jobs/").json()["results"][0]["continuous"] is None

        act("action_stop_continuous_mode")
    finally:
        set_inline(None)
    assert "Continuous mode: off" in customer.get(portal).content.decode()
    assert AuditEntry.objects.filter(detail__contains="continuous mode").count() == 2


# --- a runner in a real cluster, killed -----------------------------------------------------

CLUSTER_ENV = {
    "MIGRATOR_TASK_TIMEOUT": "8",  # a runner hands over to a new task every 4 s
    "MIGRATOR_LEASE_SECONDS": "10",  # a runner's lease: 5 s
    "MIGRATOR_TASK_RETRY": "12",
    "MIGRATOR_WORKERS": "2",
}

START = """
from accounts.models import Customer
from jobs import services
c, _ = Customer.objects.get_or_create(name="Kill test")
s = services.endpoint_create(name="src", url={src!r}, customer=c)
d = services.endpoint_create(name="dst", url={dst!r}, customer=c)
job = services.job_create(customer=c, name="continuous", source=s, destination=d)
services.job_start(job=job)
print(job.pk)
"""


def test_a_killed_runner_comes_back_and_copies_the_next_change(cli, tmp_path: Path):
    import subprocess
    import sys

    from .conftest import REPO, base_env, kill_group, start_cluster

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "first.txt").write_text("copied by the first pass")
    env = base_env(cli.db, **CLUSTER_ENV, **cli.env_extra)

    def shell(code: str) -> str:
        out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO,
                             env=env, capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    job_id = int(shell(START.format(src=src.as_uri(), dst=dst.as_uri())))

    def runner_pid() -> int | None:
        rows = cli.query(
            "SELECT lease_owner FROM jobs_continuousstate WHERE job_id = ? AND enabled "
            "AND watching_since IS NOT NULL", job_id,
        )  # fmt: skip
        return int(rows[0][0].split(":")[1]) if rows and rows[0][0] else None

    log = tmp_path / "cluster.log"
    cluster = start_cluster(env, log)
    try:
        wait_until(lambda: (dst / "first.txt").exists(), 60, "the first pass")
        wait_until(
            lambda: cli.query("SELECT state FROM jobs_migrationjob WHERE id=?", job_id)[0][0]
            == "completed", 30, "the first pass to finish",
        )  # fmt: skip
        shell(
            "from jobs import continuous; from jobs.models import MigrationJob; "
            f"continuous.continuous_start(job=MigrationJob.objects.get(pk={job_id}))"
        )
        pid = wait_until(runner_pid, 30, "the runner in the cluster to watch the source")
        assert os.getpgid(pid) == cluster.pid  # the cluster's worker runs it
        (src / "before.txt").write_text("seen by the first runner")
        wait_until(lambda: (dst / "before.txt").exists(), 15, "a change copied by the runner")

        kill_group(cluster)  # SIGKILL to every process of the cluster, runner included
        (src / "while down.txt").write_text("written while no runner watched")
        cluster = start_cluster(env, log)  # another takes its place
        # the reaper (jobs.tasks.reap_leases, on the cluster's schedule) sends a new runner
        # once the dead one's lease has lapsed
        reap = ("import time\nfrom jobs import tasks\nends = time.monotonic() + 30\n"
                "while not (sent := tasks.reap_leases()['continuous']) and time.monotonic() "
                "< ends:\n    time.sleep(0.3)\nprint(sent)")  # fmt: skip
        assert shell(reap) == "1", "the reaper sent no runner"
        wait_until(lambda: (p := runner_pid()) and p != pid, 30, "a new runner to watch")
        (src / "after.txt").write_text("seen by the new runner")
        wait_until(lambda: (dst / "after.txt").exists(), 15, "the new change copied")
        # what changed while no runner watched: the new runner's reconciliation pass
        wait_until(lambda: (dst / "while down.txt").exists(), 30, "the reconciliation")
    finally:
        kill_group(cluster)
    assert (dst / "after.txt").read_text() == "seen by the new runner", log.read_text()[-3000:]
    assert (dst / "while down.txt").read_text() == "written while no runner watched"
    events = cli.query("SELECT message FROM jobs_event WHERE job_id=?", job_id)
    assert any("stopped without handing over" in m for (m,) in events)


def test_outside_its_transfer_window_a_change_waits_then_is_copied_when_it_opens(
    tmp_path: Path, settings
):
    """A job in continuous mode keeps to its transfer window: a change made while the
    window is closed waits (the panel's lag grows, nothing is written), and is copied once
    the window opens."""
    from jobs import windows

    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "first.txt").write_text("first")
    job = new_job(f"file://{src}", f"file://{dst}")
    assert run_job(job).state == "completed"
    settings.MIGRATOR_WINDOW_NOW = "2026-12-07T17:30:00+00:00"  # Monday 18:30 in Paris
    windows.transfer_window_set(owner=job, text="* closed; mon-fri 08-18 unlimited",
                                zone="Europe/Paris")  # fmt: skip
    set_inline(_run_now)
    continuous.continuous_start(job=job)
    runner = Runner(job.pk)
    try:
        (src / "evening.txt").write_text("written after office hours")
        wait_until(
            lambda: ContinuousState.objects.get(job=job).changes_seen >= 1, 10, "the change seen"
        )
        time.sleep(1.5)  # well past the coalescing delay: it would have been copied by now
        assert not (dst / "evening.txt").exists()
        assert ContinuousState.objects.get(job=job).changes_applied == 0

        settings.MIGRATOR_WINDOW_NOW = "2026-12-08T08:00:00+00:00"  # Tuesday 09:00: open
        wait_until(lambda: (dst / "evening.txt").exists(), 10, "the change copied at opening")
        assert (dst / "evening.txt").read_text() == "written after office hours"
    finally:
        runner.close()
        set_inline(None)
    continuous.continuous_stop(job=job)
