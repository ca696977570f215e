"""Through the API with a staff token, as automation would: endpoints for two local
folders, a job, start, it runs (the tasks inline), progress, lists, report CSVs. Secrets
written to an endpoint are never in an answer."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import Client

from accounts.models import Customer
from jobs import services
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


def agent_post(token: str, path: str) -> dict:
    """A call of the on-premises agent (its header, its route)."""
    answer = Client().post(f"/api/agent/{path}", "{}", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Agent {token}")  # fmt: skip
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_a_job_behind_an_agent_pool_through_the_api(world, staff_api, viewer_a_api):
    a, b = world.a, world.b
    pool = services.agent_pool_create(customer=a.customer, name="Alpha site")
    theirs = services.agent_pool_create(customer=b.customer, name="Bravo site")
    code = services.enrollment_code_create(pool=pool)
    _, token = services.agent_enroll(code=code, name="alpha-files")
    given = {"customer": a.customer.pk, "name": "Behind the agent", "source": a.job.source_id,
             "destination": a.job.destination_id}  # fmt: skip
    refused = post(staff_api, "/jobs/", {**given, "agent_pool": theirs.pk})
    assert refused.status_code == 400
    assert refused.json() == {"agent_pool": [
        "The agent pool “Bravo site” belongs to another customer: pick a pool of "
        "Alphacorp Industries."
    ]}  # fmt: skip
    missing = post(staff_api, "/jobs/", {**given, "agent_pool": 987654})
    assert missing.status_code == 400 and "987654" in missing.json()["agent_pool"][0]
    assert MigrationJob.objects.count() == 2  # the world's two: nothing was made

    created = post(staff_api, "/jobs/", {**given, "agent_pool": pool.pk})
    assert created.status_code == 201, created.content
    job = created.json()
    assert (job["agent_pool"], job["agent_pool_name"]) == (pool.pk, "Alpha site")
    assert MigrationJob.objects.get(pk=job["id"]).agent_pool == pool
    listed = {j["id"]: j for j in staff_api.get(f"{API}/jobs/").json()["results"]}
    assert listed[job["id"]]["agent_pool_name"] == "Alpha site"
    assert (listed[a.job.pk]["agent_pool"], listed[a.job.pk]["agent_pool_name"]) == (None, None)

    # the customer's viewer reads which pool runs it, and cannot change it
    seen = viewer_a_api.get(f"{API}/jobs/{job['id']}/").json()
    assert (seen["agent_pool"], seen["agent_pool_name"]) == (pool.pk, "Alpha site")
    for method in ("put", "patch"):
        changed = getattr(viewer_a_api, method)(f"{API}/jobs/{job['id']}/",
                                                json.dumps({"agent_pool": None}),
                                                content_type="application/json")  # fmt: skip
        assert changed.status_code in (403, 405)
    assert MigrationJob.objects.get(pk=job["id"]).agent_pool == pool

    # started through the API: the cluster leaves its scan to the pool's agent
    with Steps() as steps:
        assert post(staff_api, f"/jobs/{job['id']}/start/").status_code == 200
        steps.run()
    started = MigrationJob.objects.get(pk=job["id"])
    assert started.state == "scanning" and started.current_pass.seen == 0
    work = agent_post(token, "work/")
    assert work["kind"] == "scan" and work["job_id"] == job["id"]
    assert work["pass_id"] == started.current_pass_id


def test_the_assessment_twin_of_an_agent_job_is_run_by_the_same_pool(tmp_path):
    customer = Customer.objects.create(name="Site Corp")
    pool = services.agent_pool_create(customer=customer, name="Site")
    code = services.enrollment_code_create(pool=pool)
    agent, _ = services.agent_enroll(code=code, name="site-files")
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "a.txt").write_bytes(b"a" * 10)
    job = services.job_create(
        customer=customer, name="Site move", agent_pool=pool,
        source=services.endpoint_create(name="s", url=(tmp_path / "share").as_uri(),
                                        customer=customer),
        destination=services.endpoint_create(name="d", url=(tmp_path / "d").as_uri(),
                                             customer=customer),
    )  # fmt: skip
    with Steps() as steps:
        twin = services.job_assess(job=job)
        steps.run()  # everything the cluster is asked to do
    twin.refresh_from_db()
    assert twin.pk != job.pk and twin.options["assess_only"] is True
    assert twin.agent_pool == pool and twin.state == "assessing"
    assessing = twin.current_pass
    assert assessing.kind == "assess" and not assessing.scan_finished and assessing.seen == 0
    leased = services.agent_work_lease(agent=agent)
    assert leased is not None and leased[:2] == ("scan", assessing.pk)
    # and the migration made from the assessment keeps the pool too
    migration = services.job_create_from_assessment(job=twin)
    assert migration.agent_pool == pool and "assess_only" not in migration.options


BEYOND_ANY_ID = "99999999999999999999"  # past a 64-bit id: SQLite could not even compare it


def test_a_number_past_any_id_in_a_query_names_nothing_and_is_no_server_error(
    world, staff_api, client
):
    a = world.a
    mine = staff_api.get(f"{API}/jobs/?customer={a.customer.pk}").json()
    assert [j["name"] for j in mine["results"]] == ["Alpha Payroll Migration"]
    none = staff_api.get(f"{API}/jobs/?customer={BEYOND_ANY_ID}")
    assert none.status_code == 200 and none.json()["results"] == []
    client.force_login(world.staff)
    for url in (f"/reports/jobs/{a.job.pk}/files/?cursor={BEYOND_ANY_ID}",
                f"/reports/jobs/{a.job.pk}/files/?sort=-id&cursor={BEYOND_ANY_ID}",
                f"/reports/jobs/{a.job.pk}/events/?cursor={BEYOND_ANY_ID}",
                f"/reports/jobs/{a.job.pk}/?pass={BEYOND_ANY_ID}",
                f"/admin/jobs/migrationjob/{a.job.pk}/events/?before={BEYOND_ANY_ID}"):  # fmt: skip
        assert client.get(url).status_code in (200, 404), url
    # the first page again: a cursor past every id is no cursor
    first = client.get(f"/reports/jobs/{a.job.pk}/files/?sort=-id&cursor={BEYOND_ANY_ID}")
    assert "alpha-salaries-2024.xlsx" in first.content.decode()
