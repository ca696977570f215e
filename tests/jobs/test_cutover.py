"""The cutover flow (issue 15): checklist, final catch-up pass, verify pass, the ready
report; a failed verify stops the flow with the reason; the admin page and the API."""

from __future__ import annotations

import io
import json

import pytest
from django.test import Client

from accounts.api.services import api_token_create
from accounts.models import Customer
from jobs import cutover, services
from jobs.choices import CutoverState, CutoverStep, PassKind
from jobs.models import Cutover, Pass

from .conftest import make_tree
from .factories import RULES, Steps, new_folder, new_job, run_job, smb_job, viewer

API = "/api/v1"


def _flow(job) -> Cutover:
    return Cutover.objects.select_related("final_pass", "verify_pass").get(job=job)


@pytest.mark.django_db(transaction=True)
def test_whole_flow_to_the_ready_report_the_customer_signs_off(tmp_path, django_user_model):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=15, folders=2)
    job = run_job(new_job(src.as_uri(), dst.as_uri()))

    flow = cutover.cutover_start(job=job)
    assert (flow.step, flow.state) == (CutoverStep.CHECKLIST, CutoverState.OPEN)
    items = {i.key: i for i in cutover.checklist(flow)}
    assert items["continuous"].ticked == "not in continuous mode"
    assert not items["read_only"].ticked
    assert items["read_only"].commands[0].lines == (f"chmod -R a-w {src}",)
    with pytest.raises(cutover.CutoverError, match="Set the source read-only"):
        cutover.cutover_advance(job=job)

    (src / "late.txt").write_bytes(b"written before the freeze")  # the final pass takes it
    cutover.cutover_tick(job=job, item="read_only")
    with Steps() as steps:
        cutover.cutover_advance(job=job)
        assert _flow(job).step == CutoverStep.FINAL_PASS
        steps.run()  # the final pass; its end starts the verify pass; its end, the report

    flow = _flow(job)
    assert (flow.step, flow.state) == (CutoverStep.READY, CutoverState.READY), flow.reason
    assert flow.final_pass.kind == PassKind.COPY and flow.verify_pass.kind == PassKind.VERIFY
    assert flow.final_pass.number == 2 and flow.verify_pass.number == 3
    assert flow.permissions_pass is None  # the job does not migrate permissions
    assert (dst / "late.txt").read_bytes() == b"written before the freeze"
    assert flow.final_pass.copied == 1 and flow.final_pass.failed == 0
    total = len(expected) + 1
    assert flow.verify_pass.unchanged == total and flow.verify_pass.failed == 0

    report = cutover.ready_report(flow)
    assert report.ready and report.verdict.startswith("Ready to switch")
    assert [p.number for _, p in report.passes] == [2, 3]
    rows = list(cutover.report_rows(flow))
    assert ("verdict", "ready", report.verdict) in rows
    assert ("3. Verify pass", "unchanged", total) in rows

    # the customer reads the ready report in the portal, downloads it, signs it off
    customer = viewer(django_user_model, "ready-viewer", job.customer)
    portal = customer.get(f"/portal/jobs/{job.pk}/").content.decode()
    assert report.verdict in portal and "Ready-to-switch report and sign-off" in portal
    page = customer.get(f"/reports/jobs/{job.pk}/cutover/").content.decode()
    assert report.verdict in page and "Accept this migration" in page
    csv = b"".join(customer.get(f"/reports/jobs/{job.pk}/cutover/?format=csv").streaming_content)
    assert csv.decode().splitlines()[:2] == [
        "section,item,value",
        f"verdict,ready,{report.verdict}",
    ]
    customer.post(f"/reports/jobs/{job.pk}/accept/", {"note": "switching tonight"})
    assert "Accepted by" in customer.get(f"/reports/jobs/{job.pk}/cutover/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_failed_verify_stops_the_flow_with_the_reason_then_retry_and_accept(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    expected = make_tree(src, files=8, folders=1)
    job = run_job(new_job(src.as_uri(), dst.as_uri()))
    cutover.cutover_start(job=job)
    cutover.cutover_tick(job=job, item="read_only")
    gone = sorted(expected)[0]
    with Steps() as steps:
        cutover.cutover_advance(job=job)
        while _flow(job).step != CutoverStep.VERIFY:  # run until the verify pass is queued
            assert steps.run(limit=1) == 1
        (dst / gone).unlink()  # lost at the destination before the verify pass looks
        steps.run()

    flow = _flow(job)
    assert (flow.step, flow.state) == (CutoverStep.VERIFY, CutoverState.STOPPED)
    assert "1 file(s) failed in pass 3" in flow.reason
    assert "Missing at the destination (verify) ×1" in flow.reason
    with pytest.raises(cutover.CutoverError, match="Tick every|checklist is done"):
        cutover.cutover_tick(job=job, item="read_only")  # the checklist is behind it

    with Steps() as steps:  # retry the step: still missing, stopped again, by a new pass
        cutover.cutover_retry(job=job)
        assert _flow(job).state == CutoverState.RUNNING
        steps.run()
    flow = _flow(job)
    assert flow.state == CutoverState.STOPPED and flow.verify_pass.number == 4

    cutover.cutover_advance(job=job)  # the engineer accepts it: the report says what is left
    flow = _flow(job)
    assert (flow.step, flow.state) == (CutoverStep.READY, CutoverState.NOT_READY)
    report = cutover.ready_report(flow)
    assert not report.ready
    assert ("files missing at the destination (verify)", 1) in report.left
    assert "Not ready to switch" in report.verdict


@pytest.mark.django_db(transaction=True)
def test_start_stops_continuous_mode_and_ticks_it(tmp_path):
    from jobs.continuous import continuous_start
    from jobs.models import ContinuousState

    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=3, folders=1)
    job = run_job(new_job(src.as_uri(), dst.as_uri()))
    with Steps():  # its runner is queued, not run
        continuous_start(job=job)
        assert ContinuousState.objects.get(job=job).enabled
        flow = cutover.cutover_start(job=job)
    assert not ContinuousState.objects.get(job=job).enabled
    ticked = {i.key: i.ticked for i in cutover.checklist(flow)}
    assert ticked["continuous"].startswith("continuous mode stopped by the cutover")
    assert not ticked["read_only"]


@pytest.mark.django_db(transaction=True)
def test_permissions_on_adds_the_permissions_pass_and_verify_writes_no_manifest(samba_dc, tmp_path):
    from migrator.acl.apply import manifest_path
    from migrator.storage import Entry, connector_for

    base = new_folder(samba_dc, "data")
    with connector_for(samba_dc.smb_url("data", base), samba_dc.admin_password) as share:
        for i in range(3):
            share.write(f"f{i}.txt", io.BytesIO(b"x" * i), Entry(f"f{i}.txt", "file", i, 0))
    dst = tmp_path / "dst"
    job = run_job(smb_job(samba_dc, base, dst.as_uri(), {"permissions": RULES}))
    manifest = dst / manifest_path(job.pk)
    cutover.cutover_start(job=job)
    cutover.cutover_tick(job=job, item="read_only")
    written = {}
    with Steps() as steps:
        cutover.cutover_advance(job=job)
        while _flow(job).step != CutoverStep.READY:
            step = _flow(job).step
            assert steps.run(limit=1) == 1, step
            if _flow(job).step != step:  # a pass ended: what its manifest was then
                written[step] = manifest.stat().st_mtime_ns
        steps.run()
    flow = Cutover.objects.get(job=job)
    assert flow.state == CutoverState.READY, flow.reason
    assert flow.permissions_pass.kind == PassKind.PERMISSIONS
    assert [p.number for p in (flow.final_pass, flow.verify_pass, flow.permissions_pass)] == [
        2, 3, 4,
    ]  # fmt: skip
    assert written[CutoverStep.VERIFY] == written[CutoverStep.FINAL_PASS]  # verify wrote none
    assert written[CutoverStep.PERMISSIONS] > written[CutoverStep.VERIFY]  # its own, anew


@pytest.fixture
def smb_job_page(db):
    job = new_job("smb://EXAMPLE;alice@files.example.test/data/Finance", "file:///tmp/x")
    job.name = "<b>Payroll</b> cutover"
    job.save(update_fields=["name"])
    Pass.objects.create(job=job, number=1, state="done", seen=3, copied=3)
    return job


def test_admin_page_shows_the_exact_commands_for_an_smb_source(smb_job_page, admin_client):
    job = smb_job_page
    url = f"/admin/jobs/migrationjob/{job.pk}/cutover/"
    page = admin_client.get(url).content.decode()
    assert "Start cutover" in page and "&lt;b&gt;Payroll&lt;/b&gt;" in page
    assert "<b>Payroll</b>" not in page

    admin_client.post(url, {"op": "start"})
    page = admin_client.get(url).content.decode()
    assert "[data]\nread only = yes\nsmbcontrol all reload-config" in page
    assert (
        "Grant-SmbShareAccess -Name &#x27;data&#x27; -AccountName Everyone -AccessRight Read -Force"
        in page
    )
    assert "Revoke-SmbShareAccess -Name &#x27;data&#x27;" in page

    admin_client.post(url, {"op": "tick", "item": "read_only"})
    assert "Ticked: admin" in admin_client.get(url).content.decode()
    change = admin_client.get(f"/admin/jobs/migrationjob/{job.pk}/change/").content.decode()
    assert "Cutover page" in change and 'data-pass="1"' in change

    with Steps():  # the final pass is queued; the job is cancelled under it
        admin_client.post(url, {"op": "advance"})
        services.job_cancel(job=job)
    page = admin_client.get(url).content.decode()
    assert "The job is cancelled: this step's pass did not finish." in page
    with Steps():
        admin_client.post(url, {"op": "retry"})
    assert Cutover.objects.get(job=job).state == CutoverState.RUNNING


def _token_client(user) -> Client:
    plain = api_token_create(user=user, name="t", created_by=user)[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")


def test_api_cutover_for_staff_and_404_for_other_customers(
    smb_job_page, admin_user, django_user_model
):
    job = smb_job_page
    staff = _token_client(admin_user)
    base = f"{API}/jobs/{job.pk}/cutover/"
    assert staff.get(base).json()["state"] == "not_started"

    started = staff.post(base + "start/")
    assert started.status_code == 200 and started.json()["step"] == "checklist"
    samba = [c for c in started.json()["checklist"][0]["commands"] if "Samba" in c["where"]]
    assert samba[0]["lines"] == ["[data]", "read only = yes", "smbcontrol all reload-config"]
    refused = staff.post(base + "advance/")
    assert refused.status_code == 409 and "Set the source read-only" in refused.json()["detail"]
    ticked = staff.post(
        base + "tick/", json.dumps({"item": "read_only"}), content_type="application/json"
    )
    assert ticked.status_code == 200 and ticked.json()["checklist"][0]["ticked"]
    with Steps():  # the final pass is queued, not run
        moved = staff.post(base + "advance/")
    assert (moved.json()["step"], moved.json()["state"]) == ("final_pass", "running")
    assert staff.post(base + "retry/").status_code == 409  # nothing stopped: it waits
    with Steps():  # the job is cancelled under the step: its pass never ends; retry it
        services.job_cancel(job=job)
        again = staff.post(base + "retry/")
    assert again.status_code == 200
    assert (again.json()["step"], again.json()["state"]) == ("final_pass", "running")
    assert job.events.filter(message="Queued by admin.").count() == 2  # the pass asked again

    viewer(django_user_model, "other-viewer", Customer.objects.create(name="Other Corp"))
    other = _token_client(django_user_model.objects.get(username="other-viewer"))
    assert other.get(base).status_code == 404
    assert other.post(base + "start/").status_code == 403  # a viewer writes nothing
    viewer(django_user_model, "own-viewer", job.customer)
    own = _token_client(django_user_model.objects.get(username="own-viewer"))
    assert own.get(base).json()["step"] == "final_pass"
    assert own.post(base + "advance/").status_code == 403
