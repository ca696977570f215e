"""Catch-up (delta) passes against real storage: a second pass compares the source with the
last pass's manifest and the destination with what we wrote, copies only what changed,
and resolves objects changed at the destination by the job's conflicts policy."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import time
from collections import Counter

import pytest
import requests
from django.urls import reverse

from accounts.models import Customer
from jobs import services
from jobs.choices import JobState
from jobs.models import Deletion, Event, FileItem, Pass
from migrator.engine.copy import Outcome, State, keep_both_name
from migrator.engine.scan import Row
from migrator.engine.wire import outcome_to_wire, row_to_wire
from migrator.storage.local import LocalConnector
from reports.registry import REPORTS, ReportQuery
from reports.tables import Filters

from .conftest import make_smb_tree, make_tree, smb_source, tree_of
from .factories import Steps, agent_post, agent_side, new_job, run_job, smb_job

LOCAL_CALLS = ("open", "stat", "write", "mkdir", "folder_names", "delete")


def _count_calls(monkeypatch, cls, names) -> Counter:
    calls: Counter = Counter()
    for name in names:
        original = getattr(cls, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, counted)
    return calls


def _last_pass(job) -> Pass:
    return Pass.objects.filter(job=job).order_by("-number").first()


def _rows(job_pass: Pass) -> dict[str, FileItem]:
    return {r.source_path: r for r in FileItem.objects.filter(job_pass=job_pass, kind="file")}


def _accounted(p: Pass) -> bool:
    return p.seen == p.copied + p.unchanged + p.excluded + p.failed + p.pending


@pytest.mark.django_db(transaction=True)
def test_second_local_pass_copies_nothing_then_copies_only_what_changed(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=30)
    dst.mkdir()
    job = new_job(src.as_uri(), dst.as_uri())
    job = run_job(job)
    assert job.state == JobState.COMPLETED
    assert tree_of(dst) == expected

    # second pass over an unchanged tree: nothing opened, statted or written
    calls = _count_calls(monkeypatch, LocalConnector, LOCAL_CALLS)
    job = run_job(job)
    second = _last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    assert (second.seen, second.unchanged, second.copied) == (30, 30, 0)
    assert (second.delta_new, second.delta_changed, second.conflicts) == (0, 0, 0)
    assert second.delta_checked and second.batches_total == 0
    # nothing per file: only the destination's check at the start of a pass (its root)
    assert calls == Counter(mkdir=1), calls
    assert _accounted(second)

    # a new file, a changed one, one deleted at the source, one deleted and one edited at
    # the destination
    (src / "d0" / "file-012.dat").unlink()
    (src / "d0" / "new.txt").write_bytes(b"brand new")
    changed = src / "d0" / "d1" / "d2" / "file-006.dat"
    changed.write_bytes(b"changed at the source")
    removed = "d0/d1/d2/d3/file-007.dat"
    (dst / removed).unlink()
    edited = dst / "d0" / "file-008.dat"
    edited.write_bytes(b"edited at the destination")
    later = time.time() + 5
    os.utime(edited, (later, later))
    calls.clear()
    job = run_job(job)
    third = _last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    assert (third.delta_new, third.delta_changed, third.conflicts) == (1, 1, 1)
    assert (third.seen, third.copied, third.unchanged) == (30, 4, 26)
    assert _accounted(third)
    rows = _rows(third)
    assert rows["d0/new.txt"].change == "new"
    assert rows["d0/d1/d2/file-006.dat"].change == "changed"
    assert rows[removed].change == "missing"
    assert rows["d0/file-008.dat"].change == "conflict"
    assert "size" in rows["d0/file-008.dat"].message
    # source wins: the edit is overwritten; what the source no longer has is kept (the
    # job's deletes policy, keep) and recorded as ours
    assert tree_of(dst) == {**tree_of(src), "d0/file-012.dat": expected["d0/file-012.dat"]}
    gone = Deletion.objects.get(job_pass=third)
    assert (gone.dest_path, gone.source_path, gone.ours, gone.action) == (
        "d0/file-012.dat", "d0/file-012.dat", True, "kept"
    )  # fmt: skip
    assert calls["write"] == 4


def test_options_check_refuses_an_unknown_conflicts_policy(db, tmp_path):
    job = new_job(tmp_path.as_uri(), (tmp_path / "d").as_uri())
    with pytest.raises(ValueError, match="conflicts policy"):
        services.job_options_check(
            options={"conflicts": "newest_wins"}, destination=job.destination
        )
    services.job_options_check(options={"conflicts": "keep_both"}, destination=job.destination)


def _conflict_report(job, job_pass) -> list[tuple]:
    q = ReportQuery(job=job, job_pass=job_pass, filters=Filters(), staff=False)
    return list(REPORTS["conflicts"].csv(q).rows())


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.mark.django_db(transaction=True)
def test_samba_to_gcs_catch_up_lists_once_and_resolves_conflicts_by_policy(
    samba_dc, gcs_server, monkeypatch, admin_client
):
    name, disk = smb_source(samba_dc)
    made = make_smb_tree(disk, files=30, long_path=False)
    bucket = gcs_server.make_bucket()
    job = smb_job(samba_dc, name, f"gs://{bucket}/m", {"profile": "posix"})
    job = run_job(job)
    assert job.state == JobState.COMPLETED, job.error
    files = len(made)
    blobs = gcs_server.client().bucket(bucket)

    # an unchanged catch-up: the bucket listed once, nothing per file
    sent: list[str] = []
    original = requests.Session.request

    def counted(self, method, url, *args, **kwargs):
        if f"/b/{bucket}" in url:  # this bucket's: not a thread another test left behind
            sent.append(f"{method} {url}")
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", counted)
    job = run_job(job)
    second = _last_pass(job)
    assert (second.seen, second.unchanged, second.copied, second.conflicts) == (files, files, 0, 0)
    # the listing's pages of 1,000, and the endpoint checks of a pass's start (the bucket,
    # one object asked for); nothing per file: no object read, statted or uploaded
    listings = [r for r in sent if f"/b/{bucket}/o?maxResults=1000" in r]
    assert len(listings) == files // 1000 + 1, sent
    assert [r for r in sent if "/o/" in r or "/upload/" in r] == []
    assert len(sent) - len(listings) <= 3, sent
    monkeypatch.setattr(requests.Session, "request", original)

    # one object edited in the bucket before each pass (same size, other bytes: the md5
    # tells), each pass under one policy
    paths = sorted(p for p in made if made[p])[:4]
    edited = {p: bytes(b ^ 1 for b in made[p]) for p in paths}
    results = {}
    for path, policy in zip(paths, ("source_wins", "destination_wins", "keep_both"), strict=False):
        services.job_settings_update(job=job, options={**job.options, "conflicts": policy})
        blobs.blob(f"m/{path}").upload_from_string(edited[path])
        job = run_job(job)
        assert job.state == JobState.COMPLETED, job.error
        p = _last_pass(job)
        assert (p.conflicts, p.delta_new, p.delta_changed) == (1, 0, 0)
        assert _accounted(p)
        row = FileItem.objects.get(job_pass=p, source_path=path)
        assert row.change == "conflict"
        results[policy] = (p, row, _conflict_report(job, p))

    source_wins, destination_wins, keep_both = paths[:3]
    # source wins: the source's bytes are back
    p, row, report = results["source_wins"]
    assert (p.copied, row.state) == (1, "copied")
    assert blobs.blob(f"m/{source_wins}").download_as_bytes() == made[source_wins]
    assert [r[:2] for r in report] == [(source_wins, source_wins)]
    assert "md5" in report[0][4] and "source wins" in report[0][5]
    # the report's page and CSV, and the files report's change, as staff see them
    assert source_wins.endswith("=formula.csv")
    url = reverse("reports:job_report", args=[job.pk, "conflicts"])
    page = admin_client.get(url, {"pass": p.number}).content.decode()
    assert source_wins in page and "source wins" in page
    rows = list(csv.reader(io.StringIO(
        admin_client.get(url, {"pass": p.number, "format": "csv"}).getvalue().decode()
    )))  # fmt: skip
    assert rows[0][:2] == ["source_path", "dest_path"] and rows[1][0] == source_wins
    files_page = admin_client.get(reverse("reports:job_report", args=[job.pk, "files"]),
                                  {"pass": p.number}).content.decode()  # fmt: skip
    assert "Changed at the destination (conflict)" in files_page
    # destination wins: the edit stays, the file is excluded with its reason
    p, row, report = results["destination_wins"]
    assert (p.copied, p.excluded, row.state, row.reason) == (
        0, 1, "excluded", "destination_changed"
    )  # fmt: skip
    assert blobs.blob(f"m/{destination_wins}").download_as_bytes() == edited[destination_wins]
    assert "destination wins" in report[0][5]
    # keep both: the edit stays, the source is written beside it
    p, row, report = results["keep_both"]
    beside = keep_both_name(keep_both, row.mtime_ns)
    assert (p.copied, row.dest_path) == (1, beside)
    assert blobs.blob(f"m/{keep_both}").download_as_bytes() == edited[keep_both]
    assert blobs.blob(f"m/{beside}").download_as_bytes() == made[keep_both]
    assert blobs.get_blob(f"m/{beside}").md5_hash == _md5(made[keep_both])
    assert "keep both" in report[0][5]

    # the pass after: nothing changed, no conflict found again
    job = run_job(job)
    last = _last_pass(job)
    assert (last.copied, last.conflicts, last.unchanged, last.excluded) == (0, 0, files - 1, 1)
    assert job.state == JobState.COMPLETED
    kept = FileItem.objects.get(job_pass=last, source_path=destination_wins)
    assert (kept.state, kept.reason, kept.change) == ("excluded", "destination_changed", "")
    assert blobs.blob(f"m/{destination_wins}").download_as_bytes() == edited[destination_wins]


@pytest.mark.django_db(transaction=True)
def test_an_agents_catch_up_classifies_its_chunks_and_says_the_destination_was_not_listed(
    tmp_path,
):
    """The agent posts its scan as ever: the server compares each chunk with the last
    pass; a destination behind the agent (a local folder at its site) is not re-listed,
    and the job's events say so."""
    job, _, token = agent_side("delta", tmp_path)
    rows = [row_to_wire(Row(0, 0, "file", f"f{i}.txt", f"f{i}.txt", 5, 7)) for i in range(3)]
    with Steps() as steps:
        work = agent_post(token, "work/")[1]
        body = {"lease": work["lease"], "after": "", "cursor": "0/f2.txt", "rows": rows}
        assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"]
        assert agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})[1]["ok"]
        batch = agent_post(token, "work/")[1]
        ids = FileItem.objects.filter(job_pass_id=work["pass_id"]).values_list("id", flat=True)
        outcomes = [outcome_to_wire(Outcome(pk, State.COPIED, "", "", 5, "", "", None, 1))
                    for pk in ids]  # fmt: skip
        answer = agent_post(token, f"batch/{batch['batch_id']}/record/",
                            {"lease": batch["lease"], "outcomes": outcomes})  # fmt: skip
        assert answer[1]["recorded"], answer
        steps.run("finish_pass")
        job.refresh_from_db()
        assert job.state == JobState.COMPLETED

        services.job_start(job=job)
        steps.run("customer_dispatch")
        work = agent_post(token, "work/")[1]
        assert work["kind"] == "scan"
        rows[2] = row_to_wire(Row(0, 0, "file", "f2.txt", "f2.txt", 6, 7))  # changed
        rows.append(row_to_wire(Row(0, 0, "file", "g.txt", "g.txt", 1, 7)))  # new
        body = {"lease": work["lease"], "after": "", "cursor": "0/g.txt", "rows": rows}
        assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"]
        assert agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})[1]["ok"]
    second = Pass.objects.get(pk=work["pass_id"])
    counts = (second.unchanged, second.pending, second.delta_new, second.delta_changed)
    assert counts == (2, 2, 1, 1)
    assert second.delta_checked and second.scan_finished and second.batches_total == 1
    said = Event.objects.filter(job=job, message__contains="not re-listed")
    assert said.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_agents_catch_up_to_gcs_is_checked_by_the_server(tmp_path, gcs_server):
    """A bucket the server can reach: when the agent posts its catch-up scan done, the
    server lists the bucket and resolves an object changed there (source wins: copied
    again, through the agent)."""
    bucket = gcs_server.make_bucket()
    blobs = gcs_server.client().bucket(bucket)
    customer = Customer.objects.create(name="agent gcs")
    pool = services.agent_pool_create(customer=customer, name="site")
    _, token = services.agent_enroll(code=services.enrollment_code_create(pool=pool), name="h")
    src = services.endpoint_create(name="s", url=(tmp_path / "s").as_uri(), customer=customer)
    dst = services.endpoint_create(name="d", url=f"gs://{bucket}/m", customer=customer)
    job = services.job_create(customer=customer, name="agent to gcs", source=src,
                              destination=dst, agent_pool=pool)  # fmt: skip
    data = {f"f{i}.txt": f"file {i}".encode() for i in range(3)}
    # as the agent's planner makes them: the destination key is how the bucket is matched
    rows = [row_to_wire(Row(0, 0, "file", p, p, len(b), 7, dest_key=p)) for p, b in data.items()]
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
        work = agent_post(token, "work/")[1]
        body = {"lease": work["lease"], "after": "", "cursor": "0/f2.txt", "rows": rows}
        assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"]
        assert agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})[1]["ok"]
        batch = agent_post(token, "work/")[1]
        outcomes = []
        for item in FileItem.objects.filter(job_pass_id=work["pass_id"]):
            blobs.blob(f"m/{item.dest_path}").upload_from_string(data[item.source_path])
            md5 = hashlib.md5(data[item.source_path]).hexdigest()
            outcomes.append(outcome_to_wire(
                Outcome(item.pk, State.COPIED, "", "", item.size, md5, "", None, 1)
            ))  # fmt: skip
        answer = agent_post(token, f"batch/{batch['batch_id']}/record/",
                            {"lease": batch["lease"], "outcomes": outcomes})  # fmt: skip
        assert answer[1]["recorded"], answer
        steps.run("finish_pass")

        blobs.blob("m/f1.txt").upload_from_string(b"FILE 1")  # same size, other bytes
        services.job_start(job=job)
        steps.run("customer_dispatch")
        work = agent_post(token, "work/")[1]
        body = {"lease": work["lease"], "after": "", "cursor": "0/f2.txt", "rows": rows}
        assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"]
        # scan-done answers before the bucket is listed: the check is a task, which holds
        # the scan's lease (no other agent is handed the scan), and nothing is copied yet
        listed: list[str] = []
        original = requests.Session.request

        def counted(self, method, url, *args, **kwargs):
            if f"/b/{bucket}" in url:  # this bucket's: not a thread another test left behind
                listed.append(url)
            return original(self, method, url, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(requests.Session, "request", counted)
            done = agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})
            assert done == (200, {"ok": True, "checking": True})
            assert listed == []
            waiting = Pass.objects.get(pk=work["pass_id"])
            assert not (waiting.scan_finished or waiting.delta_checked)
            assert waiting.scan_lease_owner.startswith("check:")
            assert (waiting.batches_total, agent_post(token, "work/")[1]["kind"]) == (0, "none")
            # the agent's post sent again (its answer lost): no second check
            again = agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})
            assert again == (200, {"ok": True, "checking": True})
            assert [t for t, _ in steps.queue if t.endswith("delta_check")] == [
                "jobs.tasks.delta_check"
            ]
            assert steps.run("delta_check") == 1
            assert any(f"/b/{bucket}/o" in url for url in listed)
    second = Pass.objects.get(pk=work["pass_id"])
    assert (second.unchanged, second.pending, second.conflicts) == (2, 1, 1)
    assert second.delta_checked and second.scan_finished and second.batches_total == 1
    row = FileItem.objects.get(job_pass=second, source_path="f1.txt")
    assert (row.state, row.change) == ("pending", "conflict")
    assert "md5" in row.message and "source wins" in row.message
    assert not Event.objects.filter(job=job, message__contains="not re-listed").exists()
    with Steps() as steps:
        batch = agent_post(token, "work/")[1]  # f1.txt, copied again
        assert batch["kind"] == "batch"
        blobs.blob("m/f1.txt").upload_from_string(data["f1.txt"])
        md5 = hashlib.md5(data["f1.txt"]).hexdigest()
        outcomes = [outcome_to_wire(Outcome(row.pk, State.COPIED, "", "", 6, md5, "", None, 1))]
        answer = agent_post(token, f"batch/{batch['batch_id']}/record/",
                            {"lease": batch["lease"], "outcomes": outcomes})  # fmt: skip
        assert answer[1]["recorded"], answer
        steps.run("finish_pass")
    job.refresh_from_db()
    second.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error
    assert (second.copied, second.unchanged, second.pending, second.state) == (1, 2, 0, "done")


def _edit_at_destination(path, data: bytes) -> None:
    path.write_bytes(data)
    later = time.time() + 30
    os.utime(path, (later, later))


def _deletions_report(job, job_pass) -> list[tuple]:
    q = ReportQuery(job=job, job_pass=job_pass, filters=Filters(), staff=False)
    return list(REPORTS["deletions"].csv(q).rows())


@pytest.mark.django_db(transaction=True)
def test_keep_both_in_a_mirror_job_keeps_the_destinations_version_pass_after_pass(tmp_path):
    """Keep both under mirror: the destination's version of a conflict has no row (the
    source's is beside it), and is still never deleted as gone, in any later pass, and
    the deletions report says why; what the source really lost is still deleted."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    made = make_tree(src, files=8)
    dst.mkdir()
    options = {"deletes": "mirror", "conflicts": "keep_both", "max_delete": 10}
    job = run_job(new_job(src.as_uri(), dst.as_uri(), options=options))
    assert job.state == JobState.COMPLETED, job.error
    path = "d0/d1/file-005.dat"
    theirs = b"edited at the destination"
    _edit_at_destination(dst / path, theirs)

    job = run_job(job)  # the conflict: the source written beside
    p = _last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    row = FileItem.objects.get(job_pass=p, source_path=path)
    beside = keep_both_name(path, row.mtime_ns)
    assert (p.conflicts, row.change, row.dest_path) == (1, "conflict", beside)
    assert (dst / path).read_bytes() == theirs and (dst / beside).read_bytes() == made[path]

    (src / "d0" / "plain.txt").unlink()  # really gone at the source: mirrored
    for number in (3, 4):
        job = run_job(job)
        p = _last_pass(job)
        assert job.state == JobState.COMPLETED, job.error
        assert (p.number, p.conflicts, p.copied) == (number, 0, 0)
        assert _accounted(p)
        assert (dst / path).read_bytes() == theirs, f"pass {number}"
        assert (dst / beside).read_bytes() == made[path]
        kept = Deletion.objects.get(job_pass=p, dest_path=path)
        assert (kept.action, kept.reason, kept.ours) == ("kept", "conflict_kept", False)
        report = {r[0]: r for r in _deletions_report(job, p)}
        assert report[path][5:7] == ("kept", "conflict_kept")
        assert "keep both" in report[path][7] and beside in report[path][7]
    assert not (dst / "d0" / "plain.txt").exists()
    assert Deletion.objects.get(dest_path="d0/plain.txt").action == "deleted"

    # the source changes again: a conflict again (the object there is the destination's
    # version, not ours), the new source version beside it, the old one mirrored away
    (src / path).write_bytes(b"the source, changed again")
    os.utime(src / path, (time.time() + 60, time.time() + 60))  # another keep-both name
    job = run_job(job)
    p = _last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    row = FileItem.objects.get(job_pass=p, source_path=path)
    assert (p.conflicts, p.delta_changed, row.change) == (1, 1, "conflict")
    assert row.dest_path == keep_both_name(path, row.mtime_ns) != beside
    assert (dst / path).read_bytes() == theirs
    assert (dst / row.dest_path).read_bytes() == b"the source, changed again"
    assert not (dst / beside).exists()
    assert _accounted(p)


@pytest.mark.django_db(transaction=True)
def test_a_file_changed_on_both_sides_is_a_conflict_under_every_policy(tmp_path):
    """A file changed at the source and at the destination since we wrote it is judged
    by what we wrote there: a conflict (a report row), resolved by the job's policy."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=8)
    dst.mkdir()
    job = run_job(new_job(src.as_uri(), dst.as_uri()))
    assert job.state == JobState.COMPLETED, job.error
    paths = {"source_wins": "d0/d1/file-005.dat", "destination_wins": "d0/d1/d2/file-006.dat",
             "keep_both": "d0/d1/d2/d3/file-007.dat"}  # fmt: skip
    for policy, path in paths.items():
        services.job_settings_update(job=job, options={**job.options, "conflicts": policy})
        ours, theirs = f"source for {policy}".encode(), f"destination, {policy}".encode()
        (src / path).write_bytes(ours)
        _edit_at_destination(dst / path, theirs)
        job = run_job(job)
        p = _last_pass(job)
        assert job.state == JobState.COMPLETED, job.error
        assert (p.conflicts, p.delta_changed, p.seen) == (1, 1, 8)
        assert _accounted(p)
        row = FileItem.objects.get(job_pass=p, source_path=path)
        assert row.change == "conflict" and "size" in row.message
        report = _conflict_report(job, p)
        assert [r[0] for r in report] == [path]
        words = policy.replace("_", " ")
        assert words in report[0][5] or words in report[0][4], report
        if policy == "source_wins":
            assert (row.state, p.copied) == ("copied", 1)
            assert (dst / path).read_bytes() == ours
        elif policy == "destination_wins":
            assert (row.state, row.reason, p.copied, p.excluded) == (
                "excluded", "destination_changed", 0, 1
            )  # fmt: skip
            assert (dst / path).read_bytes() == theirs
        else:
            beside = keep_both_name(path, row.mtime_ns)
            assert (row.state, row.dest_path, p.copied) == ("copied", beside, 1)
            assert (dst / path).read_bytes() == theirs
            assert (dst / beside).read_bytes() == ours
