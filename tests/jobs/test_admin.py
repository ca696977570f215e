"""The support engineer's admin, as a staff user sees it."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time

import pytest
from django.urls import reverse

from accounts.models import AuditEntry
from jobs import services
from jobs.choices import JobState
from jobs.models import Event, MigrationJob
from tests.servers.util import free_port, stop_group

from .conftest import REPO, base_env, current_db_url, make_tree
from .factories import EndpointFactory, JobFactory, Steps, new_job

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("eng", "eng@example.test", "pw-Very-long-1")
    client.force_login(user)
    return client


def test_start_from_the_admin_runs_the_job_and_the_page_shows_progress(staff, tmp_path):
    src = tmp_path / "src"
    make_tree(src, files=6)
    job = new_job(src.as_uri(), (tmp_path / "dst").as_uri())
    changelist = reverse("admin:jobs_migrationjob_changelist")
    with Steps() as steps:
        response = staff.post(
            changelist, {"action": "action_start", "_selected_action": [job.pk]}, follow=True
        )
        assert "Start: 1 job(s)." in response.content.decode()
        steps.run()
    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    page = staff.get(changelist).content.decode()
    assert "Completed" in page and "6 / 6 files" in page
    live = staff.get(reverse("admin:jobs_migrationjob_live", args=[job.pk])).content.decode()
    assert "6 copied" in live and "Pass 1 finished" in live
    change = staff.get(reverse("admin:jobs_migrationjob_change", args=[job.pk])).content.decode()
    assert reverse("admin:jobs_migrationjob_live", args=[job.pk]) in change


def add_form_data(client, **fields) -> dict:
    """What the admin's add form posts: its inlines' management forms as the page gives
    them, and the fields (mappings as mappings-N-… keys)."""
    page = client.get(reverse("admin:jobs_migrationjob_add")).content.decode()
    management = dict(re.findall(r'name="([\w-]+-(?:TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS)"'
                                 r'[^>]*value="(\d+)"', page))  # fmt: skip
    assert "mappings-TOTAL_FORMS" in management, "the mappings inline is on the add form"
    mappings = {k for k in fields if k.startswith("mappings-")}
    management["mappings-TOTAL_FORMS"] = str(len({k.split("-")[1] for k in mappings}))
    return {"on_exists": "skip_identical", "options": "{}", **management, **fields}


def test_adding_a_job_goes_through_job_create(staff, tmp_path, django_user_model):
    """Bad options are refused on the form, in words, and nothing is written; good ones
    create the job as the CLI does: its mappings, the creation events, one audit entry."""
    source = EndpointFactory(url=(tmp_path / "src").as_uri())
    destination = EndpointFactory(customer=source.customer, url=(tmp_path / "dst").as_uri())
    url = reverse("admin:jobs_migrationjob_add")
    fields = {"name": "Finance share", "customer": source.customer.pk, "source": source.pk,
              "destination": destination.pk}  # fmt: skip
    events_before = Event.objects.count()

    bad = staff.post(url, add_form_data(staff, **fields, options='{"profile": "nope"}'))
    assert bad.status_code == 200
    assert "unknown sanitization profile" in bad.content.decode()
    bad = staff.post(url, add_form_data(staff, **fields, options='{"filters": {"bogus": 1}}'))
    assert "filters: unknown key(s) bogus" in bad.content.decode()
    assert not MigrationJob.objects.exists()
    assert Event.objects.count() == events_before and not AuditEntry.objects.exists()

    good = staff.post(
        url,
        add_form_data(
            staff, **fields, options='{"profile": "windows"}', _continue="1",
            **{"mappings-0-position": "1", "mappings-0-source_path": "/finance/",
               "mappings-0-destination_prefix": "archive/finance",
               "mappings-1-position": "0", "mappings-1-source_path": "hr",
               "mappings-1-destination_prefix": "archive/hr"},
        ),
    )  # fmt: skip
    assert good.status_code == 302, good.content.decode()[:3000]
    job = MigrationJob.objects.get()
    assert good["Location"] == reverse("admin:jobs_migrationjob_change", args=[job.pk])
    assert (job.name, job.options, job.state) == ("Finance share", {"profile": "windows"}, "draft")
    assert job.created_by == django_user_model.objects.get(username="eng")
    assert list(job.mappings.values_list("position", "source_path", "destination_prefix")) == [
        (0, "hr", "archive/hr"),
        (1, "finance", "archive/finance"),  # job_create's rule: no slashes around it
    ]
    events = list(Event.objects.filter(job=job).values_list("staff_only", "message"))
    assert (True, f"Job created: {source.url} → {destination.url}") in events
    assert any(not staff_only and m.startswith("Migration created:") for staff_only, m in events)
    assert list(AuditEntry.objects.values_list("action", "object_id")) == [("create", str(job.pk))]

    # without a mapping typed, the whole source goes to the destination's root
    staff.post(url, add_form_data(staff, **{**fields, "name": "Everything"}))
    everything = MigrationJob.objects.get(name="Everything")
    assert list(everything.mappings.values_list("source_path", "destination_prefix")) == [("", "")]


def test_bulk_pause_and_cancel_and_refusals_in_words(staff):
    jobs = [JobFactory(state=JobState.COPYING) for _ in range(2)]
    done = JobFactory(state=JobState.COMPLETED)
    url = reverse("admin:jobs_migrationjob_changelist")
    ids = [j.pk for j in jobs] + [done.pk]
    page = staff.post(url, {"action": "action_pause", "_selected_action": ids}, follow=True)
    text = page.content.decode()
    assert "Pause: 2 job(s)." in text and "is completed" in text
    assert {MigrationJob.objects.get(pk=j.pk).state for j in jobs} == {JobState.PAUSED}
    staff.post(url, {"action": "action_cancel", "_selected_action": ids})
    assert {MigrationJob.objects.get(pk=j.pk).state for j in jobs} == {JobState.CANCELLED}


def test_live_panel_filters_events_by_level(staff):
    job = JobFactory()
    Event.objects.create(job=job, level="info", message="hello info")
    Event.objects.create(job=job, level="error", message="disk <b>full</b>")
    url = reverse("admin:jobs_migrationjob_live", args=[job.pk])
    errors = staff.get(url, {"level": "error"}).content.decode()
    assert "disk &lt;b&gt;full&lt;/b&gt;" in errors and "hello info" not in errors


def test_test_connection_reports_errors_in_words(staff, tmp_path, gcs_server):
    good = EndpointFactory(name="Good", url=tmp_path.as_uri())
    missing = EndpointFactory(name="Gone", url=(tmp_path / "nope").as_uri())
    bucket = EndpointFactory(name="Nobucket", url="gs://no-such-bucket-here/x")
    url = reverse("admin:jobs_endpoint_changelist")
    page = staff.post(
        url,
        {"action": "test_connection", "_selected_action": [good.pk, missing.pk, bucket.pk]},
        follow=True,
    ).content.decode()
    assert "Good: connection OK" in page
    assert "Gone: folder does not exist" in page
    assert "Nobucket:" in page and "does not exist" in page.split("Nobucket:")[1][:200]


def test_test_connection_of_smb_endpoints_says_what_is_wrong_in_words(staff, samba_dc):
    """Against the real DC: the right credentials are OK; a wrong password, a share
    that does not exist, a missing folder and a port nothing listens on each say what is
    wrong, as an error, with no traceback and no password."""
    right = samba_dc.password_for("alice")
    port = free_port()
    cases = {
        # name: (url, password, what the message says)
        "Finance share": (samba_dc.smb_url("data", user="alice"), right, "connection OK"),
        "Wrong password": (samba_dc.smb_url("data", user="alice"), "Not-Her-Passw0rd!",
                           "wrong user name or password for EXAMPLE\\alice"),
        "Unknown share": (samba_dc.smb_url("no-such-share", user="alice"), right,
                          "no share named 'no-such-share'"),
        "Missing folder": (samba_dc.smb_url("data", "no/such/folder", user="alice"), right,
                           "no folder 'no/such/folder' in share 'data'"),
        "Nobody there": (f"smb://EXAMPLE;alice@127.0.0.1:{port}/data", right,
                         f"cannot reach 127.0.0.1:{port}"),
    }  # fmt: skip
    ids = [
        services.endpoint_create(name=name, url=url, secret=password).pk
        for name, (url, password, _) in cases.items()
    ]
    response = staff.post(
        reverse("admin:jobs_endpoint_changelist"),
        {"action": "test_connection", "_selected_action": ids},
        follow=True,
    )

    page = response.content.decode()
    shown = {html.unescape(text): level for level, text in
             re.findall(r'<li class="(\w+)">(.*?)</li>', page)}  # fmt: skip
    for name, (_, _, words) in cases.items():
        (message,) = [m for m in shown if m.startswith(f"{name}: ")]
        assert words in message, message
        assert shown[message] == ("success" if words == "connection OK" else "error")
        assert len(message) < 200 and "\n" not in message, message
    assert "Traceback" not in page
    for password in {right, "Not-Her-Passw0rd!"}:
        assert password not in page and html.escape(password) not in page

    # the same from the endpoint's own page: its button, and back there with the answer
    change = reverse("admin:jobs_endpoint_change", args=[ids[1]])
    page = staff.get(change).content.decode()
    assert 'name="action" value="test_connection"' in page.split('name="_from_change"')[0]
    assert ">Test connection</button>" in page
    back = staff.post(
        reverse("admin:jobs_endpoint_changelist"),
        {"action": "test_connection", "_selected_action": [ids[1]], "_from_change": "1"},
        follow=True,
    )
    assert back.redirect_chain[-1][0] == change
    assert "Wrong password: wrong user name or password" in html.unescape(back.content.decode())


def test_endpoint_secret_is_write_only(staff):
    url = reverse("admin:jobs_endpoint_add")
    staff.post(url, {"name": "share", "url": "smb://EXAMPLE;bob@127.0.0.1/data",
                     "secret": "Sup3r-Secret-pw"})  # fmt: skip
    endpoint = EndpointFactory._meta.model.objects.get(name="share")
    assert endpoint.get_secret() == "Sup3r-Secret-pw"
    assert "Sup3r-Secret-pw" not in endpoint.secret_encrypted
    page = staff.get(reverse("admin:jobs_endpoint_change", args=[endpoint.pk])).content.decode()
    assert "Sup3r-Secret-pw" not in page and endpoint.secret_encrypted not in page


def test_banner_when_no_worker_cluster_and_none_when_one_runs(staff, settings):
    index = reverse("admin:index")
    assert "No worker cluster is running" in staff.get(index).content.decode()
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=REPO,
        env=base_env(current_db_url()),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while "No worker cluster is running" in staff.get(index).content.decode():
            assert time.monotonic() < deadline, "the cluster never reported itself"
            time.sleep(0.5)
    finally:
        stop_group(cluster)


def test_a_job_its_agents_could_not_run_is_refused_on_the_form(staff, tmp_path):
    """Permissions of an SMB share to a local folder through an agent pool: the form says
    why in words and nothing is written; without the pool the same job is made."""
    source = EndpointFactory(url="smb://EXAMPLE;svc@files.example.test/data")
    destination = EndpointFactory(customer=source.customer, url=(tmp_path / "dst").as_uri())
    pool = services.agent_pool_create(customer=source.customer, name="Site")
    url = reverse("admin:jobs_migrationjob_add")
    options = '{"permissions": {"enabled": true, "domain": "example.test"}}'
    fields = {"name": "Share", "customer": source.customer.pk, "source": source.pk,
              "destination": destination.pk, "options": options}  # fmt: skip

    refused = staff.post(url, add_form_data(staff, **fields, agent_pool=pool.pk))
    assert refused.status_code == 200
    text = html.unescape(refused.content.decode())
    assert "permissions to a local folder cannot go through an agent yet" in text
    assert not MigrationJob.objects.exists()

    made = staff.post(url, add_form_data(staff, **fields))
    assert made.status_code == 302, made.content.decode()[:2000]
    assert MigrationJob.objects.get().agent_pool is None
