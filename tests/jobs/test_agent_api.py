"""/api/agent/ in-process: an agent's token does its own pool's work and nothing else."""

from __future__ import annotations

import base64

import pytest
from django.urls import get_resolver

from accounts.models import Customer
from jobs import services
from jobs.agent_api import urlpatterns
from jobs.models import AclRecord, Batch, FileItem, MigrationJob, Pass
from migrator.engine.scan import Row
from migrator.engine.wire import row_to_wire

from .factories import Steps, agent_post, agent_side

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_agent_gets_only_its_pools_work_and_404_for_every_other_object(tmp_path):
    a_job, _, a_token = agent_side("alpha", tmp_path)
    b_job, _, b_token = agent_side("beta", tmp_path)
    MigrationJob.objects.filter(pk=a_job.pk).update(state="paused")  # A has nothing to do
    status, work = agent_post(b_token, "work/")
    assert (status, work["kind"], work["job_id"]) == (200, "scan", b_job.pk)
    rows = [row_to_wire(Row(0, 0, "file", f"f{i}.txt", f"f{i}.txt", 10)) for i in range(3)]
    status, answer = agent_post(b_token, f"scan/{work['pass_id']}/chunk/",
                          {"lease": work["lease"], "after": "", "cursor": "0/f2.txt",
                           "rows": rows})  # fmt: skip
    assert (status, answer["ok"]) == (200, True)
    b_pass = Pass.objects.get(job=b_job)
    b_batch = Batch.objects.get(job_pass=b_pass)
    assert agent_post(a_token, "work/")[1]["kind"] == "none"  # never the other pool's work
    before = (FileItem.objects.count(), Batch.objects.filter(state="queued").count())
    ids = {"pass_id": b_pass.pk, "batch_id": b_batch.pk}
    routes = [str(p.pattern) for p in urlpatterns]
    asked = 0
    for route in routes:
        if "<int:" not in route:
            continue
        path = route.replace("<int:pass_id>", str(ids["pass_id"])).replace(
            "<int:batch_id>", str(ids["batch_id"])
        )
        body = {"lease": work["lease"], "outcomes": [], "rows": rows, "cursor": "0/z", "after": ""}
        status, answer = agent_post(a_token, path, body)
        assert status == 404, (path, status, answer)
        asked += 1
    assert asked == len([r for r in routes if "<int:" in r]) >= 6
    for kind, pk in (("scan", b_pass.pk), ("batch", b_batch.pk)):
        status, answer = agent_post(a_token, "lease/", {"kind": kind, "id": pk,
                                                  "lease": work["lease"]})  # fmt: skip
        assert (status, answer["held"]) == (200, False)
    assert (FileItem.objects.count(), Batch.objects.filter(state="queued").count()) == before
    # every agent route is one of these (none added without this test knowing)
    mounted = {str(p.pattern) for r in get_resolver().url_patterns
               if str(r.pattern) == "api/agent/" for p in r.url_patterns}  # fmt: skip
    assert mounted == set(routes)


def test_a_retried_chunk_counts_once_and_a_stale_one_is_refused(tmp_path):
    job, _, token = agent_side("gamma", tmp_path)
    status, work = agent_post(token, "work/")
    rows = [row_to_wire(Row(0, 0, "file", "a.txt", "a.txt", 5))]
    body = {"lease": work["lease"], "after": "", "cursor": "0/a.txt", "rows": rows}
    assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"] is True
    again = agent_post(token, f"scan/{work['pass_id']}/chunk/", body)  # the answer was lost
    assert again == (200, {"ok": True, "duplicate": True})
    stale = agent_post(token, f"scan/{work['pass_id']}/chunk/", {**body, "cursor": "0/b.txt"})
    assert stale[0] == 409
    p = Pass.objects.get(job=job)
    assert (p.seen, FileItem.objects.filter(job_pass=p).count()) == (1, 1)


def test_no_token_an_unknown_token_and_a_revoked_agent_are_refused(tmp_path):
    _, agent, token = agent_side("delta", tmp_path)
    assert agent_post(None, "work/")[0] == 401
    assert agent_post("mgr-agent-made-up", "work/")[0] == 401
    services.agent_revoke(agent=agent)
    status, answer = agent_post(token, "heartbeat/", {"status": {}})
    assert status == 401 and "revoked" in answer["error"]


def test_the_job_page_shows_the_pools_health(tmp_path, admin_client):
    job, agent, token = agent_side("epsilon", tmp_path)
    page = admin_client.get(f"/admin/jobs/migrationjob/{job.pk}/change/").content.decode()
    assert "epsilon site: 1 of 1 agents online" in page  # enrolment counts as seen
    agent_post(token, "work/")  # takes the scan
    agent_post(token, "heartbeat/", {"status": {"version": "t", "holding": {"scan": 7}}})
    page = admin_client.get(f"/admin/jobs/migrationjob/{job.pk}/change/").content.decode()
    assert "epsilon-host scans pass 7" in page
    services.agent_revoke(agent=agent)
    page = admin_client.get(f"/admin/jobs/migrationjob/{job.pk}/change/").content.decode()
    assert "no agent enrolled yet" in page


# --- permissions through an agent -------------------------------------------------------------

PERMISSIONS = {"enabled": True, "domain": "example.test", "group_domain": "example.test"}


def acl_side(name: str, destination: str):
    """An AD customer's agent job from an SMB share (NT ACLs) to `destination`, started."""
    customer = Customer(name=name, directory_kind="ad", directory_uri="ldap://dc.example.test",
                        directory_bind_dn="CN=svc,DC=example,DC=test",
                        directory_user_search_base="DC=example,DC=test")  # fmt: skip
    customer.set_directory_bind_password("bind-pass-of-the-ad")
    customer.save()
    pool = services.agent_pool_create(customer=customer, name=f"{name} site")
    _, token = services.agent_enroll(code=services.enrollment_code_create(pool=pool), name=name)
    src = services.endpoint_create(name="s", url="smb://EXAMPLE;svc@files.example.test/data",
                                   customer=customer, secret="share-pass")  # fmt: skip
    dst = services.endpoint_create(name="d", url=destination, customer=customer)
    job = services.job_create(customer=customer, name=f"{name} job", source=src, destination=dst,
                              options={"permissions": PERMISSIONS}, agent_pool=pool)  # fmt: skip
    with Steps() as steps:
        services.job_start(job=job)
        steps.run("customer_dispatch")
    return job, token


def test_permissions_an_agent_cannot_migrate_are_refused_in_words(tmp_path):
    folder = (tmp_path / "dst").as_uri()
    with pytest.raises(ValueError, match="permissions to a local folder cannot go through"):
        acl_side("zeta", folder)  # job_create: the admin's form and the API say it so
    # a job changed afterwards (the admin's change form writes the model) fails at its start
    job, token = acl_side("theta", "gs://bucket/in")
    local = services.endpoint_create(name="local", url=folder, customer=job.customer)
    MigrationJob.objects.filter(pk=job.pk).update(destination=local)
    status, work = agent_post(token, "work/")
    assert (status, work["kind"]) == (200, "none")
    job.refresh_from_db()
    assert job.state == "failed"
    where = "to a local folder"
    assert f"Could not start: permissions {where} cannot go through an agent yet" in job.error
    assert "run this job without an agent pool" in job.error
    p = Pass.objects.get(job=job)
    assert (p.state, p.seen, FileItem.objects.filter(job_pass=p).count()) == ("cancelled", 0, 0)
    assert agent_post(token, "work/")[1]["kind"] == "none"  # nothing is handed out after


def test_permissions_to_a_gcs_bucket_go_through_an_agent(tmp_path):
    """A bucket's object ACLs are set by the server from the agent's plans: the job is not
    refused, its scan is handed to the agent."""
    job, token = acl_side("eta", "gs://bucket/in")
    status, work = agent_post(token, "work/")
    assert (status, work["kind"]) == (200, "scan")
    job.refresh_from_db()
    assert job.state != "failed" and not job.error


STORED = {  # AclPlan.stored() of a folder's descriptor with a deny entry, kept at SMB
    "kind": "file", "source_aces": ["EXAMPLE\\bob: deny full control, inherited"],
    "owner": "EXAMPLE\\Administrator", "protected": False, "grants": [], "narrowed": [],
    "denied": [{"entry": "EXAMPLE\\bob: deny full control, inherited", "reason": "kept"}],
    "unmapped": [], "refused": False, "destination": {"sd": "AQAEgA=="},
}  # fmt: skip


def test_a_batch_hands_the_agent_what_permissions_need_and_its_acl_records_count_once(tmp_path):
    job, token = acl_side("theta", "smb://EXAMPLE;svc@files.example.test/target")
    services.identity_overrides_import(
        job=job, data="source,target,type\nEXAMPLE\\alice,alice@example.com,user\n"
    )
    status, scan = agent_post(token, "work/")
    rows = [row_to_wire(Row(0, 0, "file", f"f{i}.txt", f"f{i}.txt", 5)) for i in range(3)]
    agent_post(token, f"scan/{scan['pass_id']}/chunk/",
         {"lease": scan["lease"], "after": "", "cursor": "0/f2.txt", "rows": rows})  # fmt: skip
    status, work = agent_post(token, "work/")
    assert (status, work["kind"], work["pass_id"], work["only"]) == (
        200, "batch", scan["pass_id"], False
    )  # fmt: skip
    given = work["permissions"]
    assert (given["options"], given["target"]) == (PERMISSIONS, "smb")
    assert given["directory"]["uri"] == "ldap://dc.example.test"
    assert given["directory"]["bind_password"] == "bind-pass-of-the-ad"  # at the agent's site
    assert given["overrides"] == [["example\\alice", "alice@example.com", "user"]]

    ids = [t[0] for t in work["tasks"]]
    plain = {**STORED, "source_aces": ["EXAMPLE\\alice: full control"], "denied": []}
    sd_bytes = base64.b64encode(b"\x01\x00\x04\x80").decode()
    acl = {
        "records": [["k-deny", sd_bytes, STORED], ["k-plain", sd_bytes, plain]],
        "items": [[ids[0], "k-deny"], [ids[1], "k-deny"], [ids[2], "k-plain"]],
        "applied": ids,
    }
    outcomes = [[i, "copied", "", "", 5, "", "", "", 1] for i in ids]
    body = {"lease": work["lease"], "outcomes": outcomes, "acl": acl}
    path = f"batch/{work['batch_id']}/record/"
    broken = {**body, "acl": {**acl, "records": [["k-deny", "not base64!", STORED]]}}
    status, answer = agent_post(token, path, broken)
    assert status == 400 and answer["error"].startswith("Bad permissions")
    assert (AclRecord.objects.count(), Pass.objects.get(pk=scan["pass_id"]).copied) == (0, 0)
    assert agent_post(token, path, body) == (200, {"recorded": True})
    assert agent_post(token, path, body) == (200, {"recorded": False, "duplicate": True})  # retried
    records = dict(AclRecord.objects.filter(job_pass_id=scan["pass_id"])
                   .values_list("key", "items"))  # fmt: skip
    assert records == {"k-deny": 2, "k-plain": 1}
    linked = FileItem.objects.filter(job_pass_id=scan["pass_id"], acl__key="k-deny")
    assert sorted(linked.values_list("id", flat=True)) == ids[:2]
    p = Pass.objects.get(pk=scan["pass_id"])
    assert (p.copied, p.acl_applied, p.acl_denied, p.acl_unmapped) == (3, 3, 2, 0)


def test_a_batch_handed_back_waits_and_a_resume_hands_it_out_at_once(tmp_path):
    """What an agent hands back unfinished is not leased again before its delay (a paused
    job's batches: the task retry time); resuming the job makes them due at once."""
    job, _, token = agent_side("echo", tmp_path)
    status, work = agent_post(token, "work/")
    rows = [row_to_wire(Row(0, 0, "file", "a.txt", "a.txt", 5))]
    body = {"lease": work["lease"], "after": "", "cursor": "0/a.txt", "rows": rows}
    assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"] is True
    assert agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})[1]["ok"]
    status, work = agent_post(token, "work/")
    assert (status, work["kind"]) == (200, "batch")
    services.batch_release(batch_id=work["batch_id"], token=work["lease"])  # as a pause does
    assert agent_post(token, "work/")[1]["kind"] == "none"
    services.job_pause(job=job)
    services.job_resume(job=job)
    status, again = agent_post(token, "work/")
    assert (again["kind"], again["batch_id"]) == ("batch", work["batch_id"])
    assert Batch.objects.get(pk=work["batch_id"]).attempts == 2


def test_a_keyed_cloud_destination_is_refused_for_an_agent_and_its_key_never_sent(tmp_path):
    """An S3 bucket is written with its key: an agent would need it, and cloud keys never
    leave the server. Refused in words when the job is made; a job changed to one afterwards
    fails when its agent asks for work, and the answer holds no key."""
    job, _, token = agent_side("iota", tmp_path)
    key = "AKIAEXAMPLE:very-secret-key-of-the-bucket"
    bucket = services.endpoint_create(name="bucket", url="s3://bucket/in", customer=job.customer,
                                      secret=key)  # fmt: skip
    with pytest.raises(ValueError, match=r"agent cannot write to s3:// yet.*without an agent pool"):
        services.job_options_check(options={}, destination=bucket, source=job.source,
                                   agent_pool=job.agent_pool)  # fmt: skip
    # an assessment writes nothing: its agent may scan the source
    services.job_options_check(options={"assess_only": True}, destination=bucket,
                               source=job.source, agent_pool=job.agent_pool)  # fmt: skip
    MigrationJob.objects.filter(pk=job.pk).update(destination=bucket)
    status, work = agent_post(token, "work/")
    assert (status, work["kind"]) == (200, "none")
    assert "very-secret" not in str(work)
    job.refresh_from_db()
    assert job.state == "failed"
    assert "Could not start: an on-premises agent cannot write to s3:// yet" in job.error
    assert "very-secret" not in job.error
