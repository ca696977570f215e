"""Transfer windows (issue 17): outside its window a job's batches are not leased (by a
worker or an agent), a batch in flight finishes, the pages and the API say until when it
waits, and when the window opens the work resumes by itself; and the bandwidth limit is
shared by all the workers of the job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.api.services import api_token_create
from jobs import services, sink, windows
from jobs.choices import BatchState
from jobs.models import Batch, TransferWindow
from migrator.engine.scan import Row
from migrator.engine.wire import row_to_wire
from migrator.storage.walk import is_temp

from .conftest import REPO, base_env, kill_group, make_tree, start_cluster, tree_of, wait_until
from .factories import EndpointFactory, Steps, agent_post, agent_side, new_job

# Paris office hours only; Monday 2026-12-07 is in winter time (UTC+1)
OFFICE = "* closed; mon-fri 08-18 unlimited"
MONDAY_10 = "2026-12-07T09:00:00+00:00"  # 10:00 in Paris: open
MONDAY_1830 = "2026-12-07T17:30:00+00:00"  # 18:30 in Paris: closed until Tuesday 08:00
TUESDAY_9 = "2026-12-08T08:00:00+00:00"  # 09:00 in Paris: open again
WAITING = "waiting for window until Tue 08 Dec 08:00 (Europe/Paris)"


def _copied(dst) -> int:
    return len(tree_of(dst)) if dst.exists() else 0


@pytest.mark.django_db(transaction=True)
def test_a_window_that_closes_mid_job_holds_leasing_and_reopens(
    tmp_path, settings, monkeypatch, admin_client
):
    settings.MIGRATOR_BATCH_FILES = 10
    settings.MIGRATOR_WINDOW_NOW = MONDAY_10
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = make_tree(src, files=40, folders=2, size=2000)
    job = new_job(src.as_uri(), dst.as_uri())
    windows.transfer_window_set(owner=job, text=OFFICE, zone="Europe/Paris")
    live = reverse("reports:job_live", args=[job.pk])
    progress = f"/api/v1/jobs/{job.pk}/progress/"

    real_run_batch = sink.run_batch

    def closes_while_copying(*args, **kwargs):  # leased at 10:00, copied after 18:00
        settings.MIGRATOR_WINDOW_NOW = MONDAY_1830
        return real_run_batch(*args, **kwargs)

    with Steps() as steps:
        services.job_start(job=job)
        steps.run(only="customer_dispatch")
        steps.run(only="scan_pass")
        batches = Batch.objects.filter(job_id=job.pk).count()
        assert batches >= 4
        monkeypatch.setattr(sink, "run_batch", closes_while_copying)
        assert steps.run(only="copy_batch", limit=1) == 1
        monkeypatch.setattr(sink, "run_batch", real_run_batch)
        # the batch in flight finished although the window closed under it
        first = Batch.objects.get(job_id=job.pk, state=BatchState.DONE)
        done = _copied(dst)
        assert done == first.last_id - first.first_id + 1 - 2  # its files (two folders)

        # closed: the other batches' tasks lease nothing and copy nothing
        assert steps.run(only="copy_batch") == batches - 1
        assert _copied(dst) == done
        queued = Batch.objects.filter(job_id=job.pk, state=BatchState.QUEUED).count()
        assert queued == batches - 1
        # nor does the reaper send them again while closed, however late they are
        Batch.objects.filter(job_id=job.pk).update(lease_expires=timezone.now())
        assert services.leases_reap()["batches"] == 0
        assert "<strong>Waiting for window until Tue 08 Dec 08:00 (Europe/Paris)" in (
            admin_client.get(live).content.decode()
        )
        assert admin_client.get(progress).json()["window"] == WAITING

        # Tuesday 09:00 in Paris: the reaper sends them again, the job completes
        settings.MIGRATOR_WINDOW_NOW = TUESDAY_9
        assert services.leases_reap()["batches"] == queued
        steps.run()
    job.refresh_from_db()
    assert job.state == "completed"
    assert tree_of(dst) == files
    assert "Waiting for window" not in admin_client.get(live).content.decode()
    assert admin_client.get(progress).json()["window"] == ""


@pytest.mark.django_db(transaction=True)
def test_an_agent_gets_no_batch_outside_its_pools_window_and_its_share_of_the_limit(
    tmp_path, settings
):
    settings.MIGRATOR_BATCH_FILES = 1
    settings.MIGRATOR_WINDOW_NOW = MONDAY_10
    job, _, token = agent_side("acme", tmp_path)
    office = "* closed; mon-fri 08-18 8MB/s"
    windows.transfer_window_set(owner=job.agent_pool, text=office, zone="Europe/Paris")
    services.job_settings_update(job=job, bwlimit=6_000_000, options=job.options)
    status, work = agent_post(token, "work/")
    rows = [row_to_wire(Row(0, 0, "file", n, n, 5)) for n in ("a.txt", "b.txt", "c.txt")]
    body = {"lease": work["lease"], "after": "", "cursor": "0/c.txt", "rows": rows}
    assert agent_post(token, f"scan/{work['pass_id']}/chunk/", body)[1]["ok"] is True
    assert agent_post(token, f"scan/{work['pass_id']}/done/", {"lease": work["lease"]})[1]["ok"]

    # open: the job's 6 MB/s (lower than the pool's 8 MB/s), split between its batches
    first = agent_post(token, "work/")[1]
    assert (first["kind"], first["options"]["bwlimit"]) == ("batch", 6_000_000)
    second = agent_post(token, "work/")[1]
    assert (second["kind"], second["options"]["bwlimit"]) == ("batch", 3_000_000)

    # 18:30 in Paris: no batch for anyone, while the ones in flight keep their leases
    settings.MIGRATOR_WINDOW_NOW = MONDAY_1830
    assert agent_post(token, "work/")[1]["kind"] == "none"
    assert services.batch_lease_renew(batch_id=first["batch_id"], token=first["lease"])
    assert windows.job_window(job_id=job.pk).waiting_text() == WAITING

    settings.MIGRATOR_WINDOW_NOW = TUESDAY_9
    third = agent_post(token, "work/")[1]
    assert third["kind"] == "batch"
    assert third["batch_id"] not in (first["batch_id"], second["batch_id"])


# --- a limit shared by two workers, measured -------------------------------------------------

LIMIT = 2_000_000  # bytes/s: the window's, lower than the job's own 4 MB/s
CLUSTER_ENV = {
    "MIGRATOR_TASK_TIMEOUT": "8",
    "MIGRATOR_LEASE_SECONDS": "10",
    "MIGRATOR_TASK_RETRY": "12",
    "MIGRATOR_BATCH_FILES": "10",
    "MIGRATOR_WORKERS": "2",
    "MIGRATOR_COPY_THREADS": "4",
    "MIGRATOR_ENV_FILE": "",
}
CREATE_AND_START = """
from accounts.models import Customer
from jobs import services, windows
c = Customer.objects.create(name="Shared line")
s = services.endpoint_create(name="src", url={src!r}, customer=c)
d = services.endpoint_create(name="dst", url={dst!r}, customer=c)
job = services.job_create(customer=c, name="shared", source=s, destination=d, bwlimit=4_000_000)
windows.transfer_window_set(owner=job, text="* 2MB/s", zone="Europe/Paris")
services.job_start(job=job)
print(job.pk)
"""


def _bytes_at(root) -> int:
    return sum(
        (Path(d) / n).stat().st_size
        for d, _, names in os.walk(root)
        for n in names
        if not is_temp(n)
    )


def test_two_workers_share_the_windows_limit_within_15_percent(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(500):  # 50 MB: more than the 20 s measured can move at 2 MB/s
        (src / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 5}" / f"f{i:03d}.bin").write_bytes(os.urandom(100_000))
    env = base_env(cli.db, **CLUSTER_ENV, **cli.env_extra)
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         CREATE_AND_START.format(src=src.as_uri(), dst=dst.as_uri())],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    job_id = int(out.stdout.strip().splitlines()[-1])
    cluster = start_cluster(env, tmp_path / "cluster.log")
    try:
        wait_until(lambda: _bytes_at(dst) > 0, 20, "the first file copied", every=0.1)
        t0, b0 = time.monotonic(), _bytes_at(dst)
        leased = 0
        while time.monotonic() - t0 < 18:
            sql = "SELECT COUNT(*) FROM jobs_batch WHERE job_id = ? AND state = 'leased'"
            leased = max(leased, cli.query(sql, job_id)[0][0])
            time.sleep(0.5)
        t1, b1 = time.monotonic(), _bytes_at(dst)
    finally:
        kill_group(cluster)
    rate = (b1 - b0) / (t1 - t0)
    assert leased == 2, "the two workers did not copy at the same time"
    assert abs(rate - LIMIT) <= 0.15 * LIMIT, f"{rate:,.0f} B/s against a limit of {LIMIT:,}"


# --- the admin: typed as rules, refused in words, shown as a grid ----------------------------


def _form_data(client, url: str, **fields) -> dict:
    """What an admin form posts: its inlines' management forms as the page gives them."""
    page = client.get(url).content.decode()
    management = dict(re.findall(r'name="([\w-]+-(?:TOTAL|INITIAL|MIN_NUM|MAX_NUM)_FORMS)"'
                                 r'[^>]*value="(\d+)"', page))  # fmt: skip
    return {**management, **fields}


@pytest.mark.django_db(transaction=True)
def test_the_admin_edits_a_jobs_and_a_pools_window(admin_client, tmp_path):
    source = EndpointFactory(url=(tmp_path / "src").as_uri())
    destination = EndpointFactory(customer=source.customer, url=(tmp_path / "dst").as_uri())
    url = reverse("admin:jobs_migrationjob_add")
    fields = {"name": "Office hours", "customer": source.customer_id, "source": source.pk,
              "destination": destination.pk, "on_exists": "skip_identical",
              "options": "{}", "window_zone": "Europe/Paris"}  # fmt: skip

    bad = admin_client.post(url, _form_data(admin_client, url, **fields,
                                            transfer_window="mon-fri 8-18 fast"))  # fmt: skip
    assert bad.status_code == 200
    assert "cannot read &#x27;mon-fri 8-18 fast&#x27;" in bad.content.decode()
    bad = admin_client.post(url, _form_data(admin_client, url, **{**fields, "window_zone": "Paris"},
                                            transfer_window="* closed"))  # fmt: skip
    assert "unknown time zone" in bad.content.decode()
    assert not TransferWindow.objects.exists()

    rules = "* closed; mon-fri 08-18 10MB/s; sat,sun unlimited"
    good = admin_client.post(url, _form_data(admin_client, url, **fields, transfer_window=rules))
    assert good.status_code == 302, good.content.decode()[:2000]
    window = TransferWindow.objects.get(job__name="Office hours")
    assert (window.zone, window.grid[0][8], window.grid[0][7], window.grid[6][3]) == (
        "Europe/Paris", 10_000_000, 0, None)  # fmt: skip
    page = admin_client.get(reverse("admin:jobs_migrationjob_change", args=[window.job_id]))
    page = page.content.decode()
    assert 'title="mon 08:00 10MB/s"' in page and 'title="mon 07:00 closed"' in page
    assert "mon-fri 08-18 10MB/s" in page  # the rules, as the field shows them again

    _, agent, _ = agent_side("pool-co", tmp_path)
    pool_url = reverse("admin:jobs_agentpool_change", args=[agent.pool_id])
    done = admin_client.post(pool_url, _form_data(
        admin_client, pool_url, customer=agent.pool.customer_id, name=agent.pool.name,
        transfer_window="* 1MB/s", window_zone="UTC",
        **{"agents-0-id": agent.pk, "agents-0-pool": agent.pool_id},
    ))  # fmt: skip
    assert done.status_code == 302, done.content.decode()[:2000]
    assert TransferWindow.objects.get(pool_id=agent.pool_id).grid[3][12] == 1_000_000


@pytest.mark.django_db(transaction=True)
def test_the_api_creates_a_job_with_a_window_and_shows_it(admin_user, tmp_path):
    source = EndpointFactory(url=(tmp_path / "src").as_uri())
    destination = EndpointFactory(customer=source.customer, url=(tmp_path / "dst").as_uri())
    token = api_token_create(user=admin_user, name="tests", created_by=admin_user)[1]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    body = {"customer": source.customer_id, "name": "Nights", "source": source.pk,
            "destination": destination.pk}  # fmt: skip
    bad = {**body, "transfer_window": {"rules": "nights 10MB/s", "zone": "UTC"}}
    answer = api.post("/api/v1/jobs/", bad, content_type="application/json")
    assert answer.status_code == 400
    assert "cannot read 'nights 10MB/s'" in str(answer.json()["transfer_window"])
    rules = "* 08-20 closed; sat,sun unlimited"
    good = {**body, "transfer_window": {"rules": rules, "zone": "Europe/Paris"}}
    answer = api.post("/api/v1/jobs/", good, content_type="application/json")
    assert answer.status_code == 201, answer.content
    shown = api.get(f"/api/v1/jobs/{answer.json()['id']}/").json()["transfer_window"]
    assert (shown["rules"], shown["zone"]) == ("mon-fri 08-20 closed", "Europe/Paris")
    assert shown["grid"][0][8] == 0 and shown["grid"][5][8] is None
