"""Pass history (issue 15): one row per pass on the admin job page and the portal's job
page (number, kind, state, started, duration, counts, bytes, the delta), in the API's
passes list; a customer never sees another customer's job's history."""

from __future__ import annotations

import re

import pytest

from accounts.models import Customer
from jobs import services
from tests.jobs.conftest import make_tree
from tests.jobs.factories import Steps, new_job, run_job, viewer


def _rows(page: str) -> dict[str, list[str]]:
    """{pass number: its cells' text} of the pass history table."""
    rows = {}
    for number, cells in re.findall(
        r'<tr class="pass-row" data-pass="(\d+)">(.*?)</tr>', page, re.S
    ):
        rows[number] = [
            re.sub(r"<[^>]+>", "", c).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", cells, re.S)
        ]
    return rows


@pytest.fixture
def two_passes(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=6, folders=1, size=2000)
    job = new_job(src.as_uri(), dst.as_uri())
    job.name = "<i>History</i> job"
    job.save(update_fields=["name"])
    job = run_job(job)
    with Steps() as steps:
        services.job_start_verify(job=job)
        steps.run()
    return job


@pytest.mark.django_db(transaction=True)
def test_admin_and_portal_show_each_pass(two_passes, admin_client, django_user_model):
    job = two_passes
    admin = admin_client.get(f"/admin/jobs/migrationjob/{job.pk}/change/").content.decode()
    portal_client = viewer(django_user_model, "history-viewer", job.customer)
    portal = portal_client.get(f"/portal/jobs/{job.pk}/").content.decode()
    for page in (admin, portal):
        rows = _rows(page)
        assert set(rows) == {"1", "2"}
        number, kind, state, _started, _duration, seen, copied, unchanged, failed, size = rows["1"][
            :10
        ]
        assert (number, kind, state) == ("1", "Copy", "Done")
        assert (seen, copied, unchanged, failed) == ("6", "6", "0", "0")
        assert size == "12.0 KB"
        assert rows["2"][1:3] == ["Verify (re-compare every file)", "Done"]
        assert rows["2"][5:9] == ["6", "0", "6", "0"]
        assert all(cell for cell in rows["2"][10:14])  # the delta: a number or "—"
        assert "<i>History</i>" not in page  # the job's name is escaped
    assert "&lt;i&gt;History&lt;/i&gt;" in portal


@pytest.mark.django_db(transaction=True)
def test_api_passes_carry_the_delta_and_others_see_nothing(two_passes, django_user_model):
    from django.test import Client

    from accounts.api.services import api_token_create

    job = two_passes
    other_viewer = viewer(django_user_model, "other-history", Customer.objects.create(name="Else"))
    assert other_viewer.get(f"/portal/jobs/{job.pk}/").status_code == 404
    assert other_viewer.get(f"/reports/jobs/{job.pk}/cutover/").status_code == 404
    user = django_user_model.objects.get(username="other-history")
    token = api_token_create(user=user, name="t", created_by=user)[1]
    other_api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert other_api.get(f"/api/v1/jobs/{job.pk}/passes/").status_code == 404

    viewer(django_user_model, "own-history", job.customer)
    own = django_user_model.objects.get(username="own-history")
    token = api_token_create(user=own, name="t", created_by=own)[1]
    answer = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(f"/api/v1/jobs/{job.pk}/passes/")
    passes = answer.json()["results"]
    assert [(p["number"], p["kind"]) for p in passes] == [(1, "copy"), (2, "verify")]
    for p in passes:
        assert {"delta_new", "delta_changed", "deleted_at_source", "conflicts"} <= set(p)
