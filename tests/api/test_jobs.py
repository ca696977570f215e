"""Through the API with a staff token, as automation would: endpoints for two local
folders, a job, start, it runs (the tasks inline), progress, lists, report CSVs. Secrets
written to an endpoint are never in an answer."""

from __future__ import annotations

import csv
import io
import json

import pytest

from jobs.models import Endpoint, MigrationJob
from tests.jobs.factories import Steps

from .conftest import API

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "Endpoint-Api-Secret-7h3x"


def post(api, path: str, data: dict | None = None):
    return api.post(f"{API}{path}", json.dumps(data or {}), content_type="application/json")


def test_staff_create_start_and_follow_a_job_to_the_end(world, staff_api, tmp_path):
    source = tmp_path / "share"
    for name in ("a.txt", "docs/b.txt", "docs/deep/c.txt", "bad:name.txt"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(name.encode() * 10)
    dest = tmp_path / "bucket"
    customer = world.a.customer.pk
    src = post(staff_api, "/endpoints/", {"name": "share", "url": source.as_uri(),
                                          "customer": customer})  # fmt: skip
    dst = post(staff_api, "/endpoints/", {"name": "bucket", "url": dest.as_uri(),
                                          "customer": customer})  # fmt: skip
    assert src.status_code == dst.status_code == 201, src.content
    created = post(staff_api, "/jobs/", {
        "customer": customer, "name": "API job", "source": src.json()["id"],
        "destination": dst.json()["id"], "options": {"profile": "windows"},
    })  # fmt: skip
    assert created.status_code == 201, created.content
    job = created.json()
    assert job["state"] == "draft" and job["mappings"] == [
        {"source_path": "", "destination_prefix": ""}
    ]
    with Steps() as steps:
        started = post(staff_api, f"/jobs/{job['id']}/start/")
        assert started.status_code == 200 and started.json()["state"] == "queued"
        again = post(staff_api, f"/jobs/{job['id']}/start/")
        assert again.status_code == 409 and "queued" in again.json()["detail"]
        assert steps.run() > 3
    assert MigrationJob.objects.get(pk=job["id"]).state == "completed"
    assert (dest / "docs/deep/c.txt").read_bytes() == b"docs/deep/c.txt" * 10
    assert (dest / "bad_name.txt").exists()

    progress = staff_api.get(f"{API}/jobs/{job['id']}/progress/").json()
    assert progress["state"] == "completed" and progress["pass_number"] == 1
    assert progress["seen"] == progress["done"] == 4 and progress["fraction"] == 1.0
    assert progress["avg_files_rate"] > 0 and progress["eta_seconds"] is None

    query = {"state": "copied", "ext": "txt", "page_size": 2}
    files = staff_api.get(f"{API}/jobs/{job['id']}/files/", query)
    page = files.json()
    assert len(page["results"]) == 2 and page["next"] and page["previous"] is None
    rest = staff_api.get(page["next"]).json()
    assert rest["next"] is None
    paths = {r["source_path"] for r in page["results"] + rest["results"]}
    assert paths == {"a.txt", "docs/b.txt", "docs/deep/c.txt", "bad:name.txt"}
    by_prefix = staff_api.get(f"{API}/jobs/{job['id']}/files/", {"prefix": "docs/"}).json()
    assert {r["source_path"] for r in by_prefix["results"]} >= {"docs/b.txt", "docs/deep/c.txt"}
    renames = staff_api.get(f"{API}/jobs/{job['id']}/renames/").json()["results"]
    assert [(r["source_path"], r["dest_path"]) for r in renames] == [
        ("bad:name.txt", "bad_name.txt")
    ]
    assert staff_api.get(f"{API}/jobs/{job['id']}/errors/").json()["results"] == []
    passes = staff_api.get(f"{API}/jobs/{job['id']}/passes/").json()["results"]
    assert [(p["number"], p["copied"]) for p in passes] == [(1, 4)]
    events = staff_api.get(f"{API}/jobs/{job['id']}/events/").json()["results"]
    assert any("Queued" in e["message"] for e in events)

    report = staff_api.get(f"{API}/jobs/{job['id']}/reports/files.csv")
    assert report.status_code == 200 and report["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert {r["source_path"] for r in rows if r["kind"] == "file"} == paths
    summary = staff_api.get(f"{API}/jobs/{job['id']}/reports/summary.csv")
    assert "copied,4" in b"".join(summary.streaming_content).decode()
    assert staff_api.get(f"{API}/jobs/{job['id']}/reports/nope.csv").status_code == 404
    listed = staff_api.get(f"{API}/jobs/{job['id']}/reports/errors.csv", {"list": "nope"})
    assert listed.status_code == 404


def test_actions_pause_resume_cancel_retry_and_assess(world, staff_api):
    job = world.a.job
    with Steps() as steps:
        assert post(staff_api, f"/jobs/{job.pk}/pause/").status_code == 409  # finished
        assert post(staff_api, f"/jobs/{job.pk}/retry-failed/").status_code == 409  # none
        assert post(staff_api, f"/jobs/{job.pk}/start/").json()["state"] == "queued"
        assert post(staff_api, f"/jobs/{job.pk}/pause/").json()["state"] == "paused"
        assert post(staff_api, f"/jobs/{job.pk}/resume/").json()["state"] != "paused"
        assert post(staff_api, f"/jobs/{job.pk}/cancel/").json()["state"] == "cancelled"
        assessment = post(staff_api, f"/jobs/{job.pk}/assess/")
        assert assessment.status_code == 201, assessment.content
        twin = assessment.json()
        assert twin["id"] != job.pk and twin["options"]["assess_only"] is True
        assert twin["name"] == "Alpha Payroll Migration (assessment)"
        steps.run()
    assert MigrationJob.objects.get(pk=twin["id"]).state == "assessed"
    assert MigrationJob.objects.get(pk=job.pk).state == "cancelled"


def test_bad_input_is_a_400_in_words(world, staff_api):
    a = world.a
    bad_url = post(staff_api, "/endpoints/", {"name": "x", "url": "ftp://nowhere/"})
    assert bad_url.status_code == 400 and "url" in bad_url.json()
    in_url = post(staff_api, "/endpoints/", {"name": "x", "url": "smb://u:pw@host/share"})
    assert in_url.status_code == 400 and "secret" in json.dumps(in_url.json())
    options = post(staff_api, "/jobs/", {"customer": a.customer.pk, "name": "x",
                                         "source": a.job.source_id,
                                         "destination": a.job.destination_id,
                                         "options": {"profile": "no-such-profile"}})  # fmt: skip
    assert options.status_code == 400 and "options" in options.json()


def test_secrets_are_write_only(world, staff_api, staff_token, viewer_a_api):
    made = post(staff_api, "/endpoints/", {"name": "smb", "url": "smb://svc@files.test/share",
                                           "customer": world.a.customer.pk,
                                           "secret": SECRET})  # fmt: skip
    assert made.status_code == 201
    assert SECRET not in made.content.decode() and made.json()["has_secret"] is True
    endpoint = Endpoint.objects.get(pk=made.json()["id"])
    assert endpoint.get_secret() == SECRET and SECRET not in endpoint.secret_encrypted
    answers = [
        staff_api.get(f"{API}/endpoints/"),
        staff_api.get(f"{API}/endpoints/{endpoint.pk}/"),
        staff_api.get("/api/schema/"),
    ]
    job = world.a.job
    for route in ("", "progress/", "passes/", "files/", "errors/", "renames/", "events/",
                  "permissions/"):  # fmt: skip
        answers.append(staff_api.get(f"{API}/jobs/{job.pk}/{route}"))
        answers.append(viewer_a_api.get(f"{API}/jobs/{job.pk}/{route}"))
    for answer in answers:
        assert answer.status_code == 200
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
        assert SECRET.encode() not in body and b"secret_encrypted" not in body
        assert staff_token.encode() not in body
