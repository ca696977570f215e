"""A copy hashes what its destination verifies (issue 16): crc32c for a local folder,
SMB share or null://, md5 and crc32c for GCS, more where the job asks (options.hashes);
and whatever it hashes, a destination that stored other bytes is still caught."""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import io
import os

import google_crc32c
import pytest
from django.core.management import call_command
from django.urls import reverse

from jobs import services
from jobs.choices import JobState
from jobs.models import FileItem
from migrator.engine.copy import CopyOptions, CopyTask, State, copy_batch, copy_one
from migrator.engine.scan import Row
from migrator.engine.streams import parse_hashes
from migrator.engine.wire import row_to_wire, task_from_wire
from migrator.storage import ChangedDuringCopy, Entry, Written, connector_for
from migrator.storage.local import LocalConnector
from tests.jobs.factories import agent_post, agent_side, new_job, run_job, viewer


def crc32c(data: bytes) -> str:
    return google_crc32c.Checksum(data).digest().hex()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tree(root, count: int = 4) -> dict[str, bytes]:
    made = {}
    for i in range(count):
        rel = f"d{i % 2}/file-{i}.bin"
        data = os.urandom(1000 + i)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        made[rel] = data
    return made


def file_hashes(job) -> dict[str, tuple[str, str]]:
    """What the manifest holds for each copied file: (md5, crc32c)."""
    rows = FileItem.objects.filter(job_pass__job=job, kind="file", state="copied")
    return {r.source_path: (r.md5, r.crc32c) for r in rows}


def files_csv(client, job) -> list[dict[str, str]]:
    url = reverse("reports:job_report", args=[job.pk, "files"])
    response = client.get(url, {"format": "csv"})
    body = b"".join(response.streaming_content).decode("utf-8")
    rows = list(csv.reader(io.StringIO(body)))
    assert {len(row) for row in rows} == {len(rows[0])}  # the columns line up
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


# --- through jobs -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_local_destination_gets_crc32c_only_and_md5_when_the_job_asks(
    tmp_path, django_user_model
):
    data = tree(tmp_path / "src")
    plain = run_job(new_job((tmp_path / "src").as_uri(), (tmp_path / "plain").as_uri()))
    assert plain.state == JobState.COMPLETED
    assert file_hashes(plain) == {rel: ("", crc32c(b)) for rel, b in data.items()}

    client = viewer(django_user_model, "ann", plain.customer)
    rows = [r for r in files_csv(client, plain) if r["kind"] == "file"]
    assert {r["source_path"]: (r["md5"], r["crc32c"]) for r in rows} == {
        rel: ("", crc32c(b)) for rel, b in data.items()
    }

    both = new_job(
        (tmp_path / "src").as_uri(),
        (tmp_path / "both").as_uri(),
        options={"hashes": ["md5", "crc32c"]},
    )
    both = run_job(both)
    assert both.state == JobState.COMPLETED
    assert file_hashes(both) == {rel: (md5(b), crc32c(b)) for rel, b in data.items()}
    rows = [r for r in files_csv(client, both) if r["kind"] == "file"]
    assert {r["source_path"]: r["md5"] for r in rows} == {rel: md5(b) for rel, b in data.items()}


@pytest.mark.django_db(transaction=True)
def test_a_job_asking_for_an_unknown_hash_is_refused_in_words(tmp_path):
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match="unknown hash sha1: the known ones are md5, crc32c"):
        new_job(
            (tmp_path / "src").as_uri(), (tmp_path / "d").as_uri(), options={"hashes": ["sha1"]}
        )


def test_migrator_run_refuses_an_unknown_hash(capsys):
    with pytest.raises(SystemExit) as exited:
        call_command("migrator_run", "--source", "synthetic://", "--destination", "null://",
                     "--hashes", "md5,sha256")  # fmt: skip
    assert exited.value.code == 2
    assert "--hashes: unknown hash sha256" in capsys.readouterr().err


@pytest.mark.django_db(transaction=True)
def test_gcs_gets_md5_and_crc32c_and_they_match_what_the_emulator_stored(tmp_path, gcs_server):
    bucket = gcs_server.make_bucket()
    data = tree(tmp_path / "src")
    job = run_job(new_job((tmp_path / "src").as_uri(), f"gs://{bucket}/in"))
    assert job.state == JobState.COMPLETED

    manifest = file_hashes(job)
    assert manifest == {rel: (md5(b), crc32c(b)) for rel, b in data.items()}
    client = gcs_server.client()
    stored = {
        b.name.removeprefix("in/"): (
            base64.b64decode(b.md5_hash).hex(),
            base64.b64decode(b.crc32c).hex(),
        )
        for b in client.list_blobs(bucket, prefix="in/")
        if "/.migrator/" not in b.name
    }
    assert stored == manifest


# --- the copy engine --------------------------------------------------------------------


class WrongCrc(LocalConnector):
    """A local folder that reports a crc32c of other bytes than it was given (a write
    corrupted on the way), as a destination checking crc32c would."""

    def write(self, path, stream, entry):
        written = super().write(path, stream, entry)
        return Written(written.size, (("crc32c", "00000000"),))


def local_task(root, rel: str, data: bytes) -> CopyTask:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)
    return CopyTask(1, rel, rel, "file", len(data), 0)


def test_a_destination_reporting_a_wrong_crc32c_fails_the_file_and_keeps_nothing(tmp_path):
    task = local_task(tmp_path / "src", "a/doc.txt", b"the real content")
    src, dst = LocalConnector(str(tmp_path / "src")), WrongCrc(str(tmp_path / "dst"))

    outcome = copy_one(task, src, dst, CopyOptions(retry_attempts=1))

    assert (outcome.state, outcome.reason) == (State.FAILED, "checksum_mismatch")
    assert f"crc32c at destination 00000000 != source {crc32c(b'the real content')}" in (
        outcome.message
    )
    assert not (tmp_path / "dst" / "a" / "doc.txt").exists()


def test_a_destination_reporting_md5_has_md5_checked_though_it_verifies_crc32c(tmp_path):
    class WrongMd5(LocalConnector):
        capabilities = dataclasses.replace(LocalConnector.capabilities, hashes=frozenset({"md5"}))

        def write(self, path, stream, entry):
            written = super().write(path, stream, entry)
            return Written(written.size, (("md5", "0" * 32),))

    task = local_task(tmp_path / "src", "x.bin", b"abc")
    src = LocalConnector(str(tmp_path / "src"))

    outcome = copy_one(task, src, WrongMd5(str(tmp_path / "dst")), CopyOptions(retry_attempts=1))

    assert (outcome.state, outcome.reason) == (State.FAILED, "checksum_mismatch")


def test_null_destination_verifies_what_it_is_given_and_keeps_nothing():
    src = connector_for("synthetic://?files=50&folders=5&min_size=0&max_size=70000")
    tasks = [
        CopyTask(i, e.path, e.path, e.kind, e.size, e.mtime_ns) for i, e in enumerate(src.scan(""))
    ]
    null = connector_for("null://")

    outcomes = copy_batch(tasks, lambda: src, lambda: null, CopyOptions(threads=1))

    by_id = {o.item_id: o for o in outcomes}
    files = [t for t in tasks if t.kind == "file"]
    assert len(files) == 50 and len(outcomes) == len(tasks)
    for t in files:
        data = src.open(t.source_path).read()
        assert (by_id[t.item_id].state, by_id[t.item_id].md5) == (State.COPIED, "")
        assert by_id[t.item_id].crc32c == crc32c(data)
        assert by_id[t.item_id].bytes == len(data)
    assert (null.files, null.bytes) == (50, sum(t.size for t in files))
    assert list(null.scan("")) == []

    # asked for md5 too (a job's options.hashes), the copy computes and records it
    one = files[3]
    outcome = copy_one(one, src, connector_for("null://"), CopyOptions(hashes=frozenset({"md5"})))
    assert outcome.md5 == md5(src.open(one.source_path).read())


def test_null_destination_refuses_a_size_other_than_the_source_listed():
    null = connector_for("null://")
    with pytest.raises(ChangedDuringCopy, match="19 bytes arrived, the source listed 4"):
        null.write("a.txt", io.BytesIO(b"grew since the scan"), Entry("a.txt", "file", 4))
    assert null.files == 0


@pytest.mark.django_db(transaction=True)
def test_an_agent_is_told_the_hashes_its_job_asks_for(tmp_path):
    job, _, token = agent_side("hashes", tmp_path)
    (tmp_path / "hashes").mkdir()
    (tmp_path / "hashes" / "a.txt").write_bytes(b"hello")
    services.job_settings_update(job=job, options={"hashes": ["md5", "crc32c"]})
    status, work = agent_post(token, "work/")
    rows = [row_to_wire(Row(0, 0, "file", "a.txt", "a.txt", 5))]
    body = {"lease": work["lease"], "after": "", "cursor": "0/a.txt", "rows": rows}
    assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"] is True
    assert agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})[1]["ok"]

    status, work = agent_post(token, "work/")

    assert (status, work["kind"], work["options"]["hashes"]) == (200, "batch", ["md5", "crc32c"])
    # what the agent's worker makes of it (migrator/agent/worker.py): md5 as well
    (task,) = [task_from_wire(values) for values in work["tasks"]]
    src, dst = LocalConnector(str(tmp_path / "hashes")), LocalConnector(str(tmp_path / "out"))
    options = CopyOptions(hashes=parse_hashes(work["options"]["hashes"]))
    outcome = copy_one(task, src, dst, options)
    assert (outcome.state, outcome.md5, outcome.crc32c) == (
        State.COPIED,
        md5(b"hello"),
        crc32c(b"hello"),
    )
