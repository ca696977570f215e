"""The agents' admin, as a support engineer uses it: an enrolment code made by the pool's
action is shown once and enrols an agent through the real route; the agent list shows
what the agent's own heartbeat said (host, free disk, version, throughput, what it
holds); revoking refuses the agent at its next call and hands its batch to another.
The agent side is the agent's own code (its HTTP client and worker) against a live server."""

from __future__ import annotations

import hashlib
import html
import multiprocessing
import re
import socket
import time
from collections.abc import Iterator

import pytest
from django.contrib.admin.utils import display_for_field
from django.core.cache import cache

from accounts.models import Customer
from jobs import services
from jobs.models import Agent, AgentPool, Batch, EnrollmentCode, MigrationJob
from jobs.selectors import human_bytes
from migrator.agent import VERSION
from migrator.agent.client import AgentError, Client
from migrator.agent.worker import Agent as AgentWorker

from .factories import Steps

pytestmark = pytest.mark.django_db(transaction=True)
POOLS = "/admin/jobs/agentpool/"
AGENTS = "/admin/jobs/agent/"


@pytest.fixture(autouse=True)
def no_failed_tries() -> Iterator[None]:
    """Failed tokens are counted per address in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


def code_from_admin(admin_client, pool: AgentPool) -> str:
    """The pool's "Create a one-time enrolment code" action, as staff click it: the code,
    read from the page's message."""
    page = admin_client.post(
        POOLS, {"action": "create_enrollment_code", "_selected_action": [pool.pk]}, follow=True
    ).content.decode()
    codes = re.findall(r"--code (mgr-enroll-[\w-]+)", page)
    assert len(codes) == 1, page[-3000:]
    return codes[0]


def enrolled(server: str, code: str, name: str, spool) -> tuple[AgentWorker, int]:
    """What `python -m migrator.agent enroll` posts, then the agent as `run` makes it
    (and its id, for the admin)."""
    answer = Client(server).post("enroll/", {"code": code, "name": name, "version": VERSION})
    return AgentWorker(Client(server, answer["token"]), spool=str(spool)), answer["agent_id"]


def cells(page: str, name: str) -> dict[str, str]:
    """The agent list's row of `name`: each column's text, by its field."""
    rows = [r for r in re.findall(r"<tr>.*?</tr>", page, re.S) if f">{name}</a>" in r]
    assert len(rows) == 1, f"{name} is not one row of the list"
    found = re.findall(r'<t[hd] class="field-(\w+)[^"]*"[^>]*>(.*?)</t[hd]>', rows[0], re.S)
    return {field: html.unescape(re.sub(r"<[^>]+>", "", text)).strip() for field, text in found}


def test_an_enrolment_code_from_the_admin_is_shown_once_and_enrols(admin_client, live_server):
    pool = services.agent_pool_create(customer=Customer.objects.create(name="Acme"), name="HQ")
    code = code_from_admin(admin_client, pool)
    stored = EnrollmentCode.objects.get(pool=pool)
    assert stored.code_hash == hashlib.sha256(code.encode()).hexdigest()
    assert code not in repr(list(EnrollmentCode.objects.values_list()))
    for page in (POOLS, f"{POOLS}{pool.pk}/change/"):  # the message was the only time
        assert code not in admin_client.get(page).content.decode()

    answer = Client(live_server.url).post("enroll/", {"code": code, "name": "files-01",
                                                      "version": VERSION})  # fmt: skip
    agent = Agent.objects.get(pk=answer["agent_id"])
    assert (agent.pool, agent.name, answer["pool"]) == (pool, "files-01", "HQ")
    assert agent.token_hash == hashlib.sha256(answer["token"].encode()).hexdigest()
    with pytest.raises(AgentError) as again:  # each code works once
        Client(live_server.url).post("enroll/", {"code": code, "name": "files-02"})
    assert again.value.status == 403 and "used already" in str(again.value)
    assert Agent.objects.count() == 1


def test_the_agent_list_shows_what_the_agents_heartbeat_said(admin_client, live_server, tmp_path):
    pool = services.agent_pool_create(customer=Customer.objects.create(name="Acme"), name="HQ")
    agent, _ = enrolled(live_server.url, code_from_admin(admin_client, pool), "files-01", tmp_path)
    now = time.monotonic()
    agent.rate.add(now - 10, now, 25_000_000)  # a batch of 25 MB that took 10 s: 2.5 MB/s
    agent.holding = {"batch": 12, "files": 3}
    status = agent.status()
    agent.client.post("heartbeat/", {"status": status})  # as its heartbeat thread does

    page = admin_client.get(AGENTS).content.decode()
    for field in ("host", "free_disk", "online", "version", "throughput", "holding"):
        assert re.search(rf'<th scope="col" class="[^"]*\bcolumn-{field}\b', page), field
    assert ">Host<" in page and ">Free disk<" in page
    row = cells(page, "files-01")
    stored = Agent.objects.get(name="files-01")
    assert stored.status["host"] == socket.gethostname() and stored.status["free_disk"] > 0
    last_seen = display_for_field(stored.last_seen, Agent._meta.get_field("last_seen"), "-")
    assert row == {
        "name": "files-01",
        "pool": "HQ (Acme)",
        "online": "online",
        "last_seen": str(last_seen),
        "version": VERSION,
        "host": socket.gethostname(),
        "free_disk": human_bytes(status["free_disk"]),
        "throughput": f"{status['bytes_per_s'] / 1e6:.1f} MB/s",
        "holding": "batch 12 (3 files)",
    }
    assert re.fullmatch(r"\d+\.\d [KMGT]B", row["free_disk"]) and row["throughput"] == "2.5 MB/s"


def test_revoking_refuses_the_agent_and_hands_its_batch_to_another(admin_client, live_server,
                                                                   tmp_path):  # fmt: skip
    customer = Customer.objects.create(name="Acme")
    pool = services.agent_pool_create(customer=customer, name="HQ")
    first, first_id = enrolled(live_server.url, code_from_admin(admin_client, pool), "files-01",
                               tmp_path)  # fmt: skip
    second, _ = enrolled(live_server.url, code_from_admin(admin_client, pool), "files-02",
                         tmp_path)  # fmt: skip
    share, dest = tmp_path / "share", tmp_path / "dest"
    for name in ("a.txt", "docs/b.txt", "docs/c.txt"):
        (share / name).parent.mkdir(parents=True, exist_ok=True)
        (share / name).write_bytes(name.encode() * 100)
    job = services.job_create(
        customer=customer, name="HQ files", agent_pool=pool,
        source=services.endpoint_create(name="share", url=share.as_uri(), customer=customer),
        destination=services.endpoint_create(name="dest", url=dest.as_uri(), customer=customer),
    )  # fmt: skip
    with Steps() as steps:
        services.job_start(job=job)
        steps.run()
        scan = first.client.post("work/", {"status": first.status()})
        assert scan["kind"] == "scan"
        first.scan(scan)  # the agent's own scan, posted to the server
        work = first.client.post("work/", {"status": first.status()})
        assert work["kind"] == "batch" and work["tasks"]
        held = Batch.objects.get(pk=work["batch_id"])
        assert held.state == "leased" and held.lease_owner == work["lease"]

        answer = admin_client.post(
            AGENTS, {"action": "revoke", "_selected_action": [first_id]}, follow=True
        )
        assert "Revoked 1 agent(s)." in answer.content.decode()
        assert cells(admin_client.get(AGENTS).content.decode(), "files-01")["online"] == "revoked"
        for path in ("heartbeat/", "work/"):  # its next call
            with pytest.raises(AgentError) as refused:
                first.client.post(path, {"status": first.status()})
            assert refused.value.status == 401 and "revoked" in str(refused.value)

        again = second.client.post("work/", {"status": second.status()})  # leasable again
        assert (again["kind"], again["batch_id"]) == ("batch", held.pk)
        assert again["lease"] != work["lease"]
        second.batch(again)
        while (more := second.client.post("work/"))["kind"] == "batch":  # any others
            second.batch(more)
        steps.run()
    assert MigrationJob.objects.get(pk=job.pk).state == "completed"
    for name in ("a.txt", "docs/b.txt", "docs/c.txt"):
        assert (dest / name).read_bytes() == name.encode() * 100


def heartbeat_of_a_process(server: str, token: str, spool: str, batch: int, nbytes: int) -> None:
    """One process of `run --workers N`: its own status (its batch, its rate), posted."""
    agent = AgentWorker(Client(server, token), spool=spool)
    now = time.monotonic()
    agent.rate.add(now - 10, now, nbytes)
    agent.holding = {"batch": batch, "files": batch % 10}
    agent.client.post("heartbeat/", {"status": agent.status()})


def test_the_list_shows_the_totals_of_all_the_agents_processes(admin_client, live_server,
                                                               tmp_path, settings):  # fmt: skip
    settings.MIGRATOR_AGENT_POLL_SECONDS = 1  # a process unheard of for 3 s is forgotten
    pool = services.agent_pool_create(customer=Customer.objects.create(name="Acme"), name="HQ")
    agent, _ = enrolled(live_server.url, code_from_admin(admin_client, pool), "files-01", tmp_path)
    # an older agent's single status still reads as before
    old = {"version": "0.9", "host": "old-box", "free_disk": 5 << 30, "bytes_per_s": 1_000_000,
           "holding": {"batch": 3, "files": 2}}  # fmt: skip
    agent.client.post("heartbeat/", {"status": old})
    row = cells(admin_client.get(AGENTS).content.decode(), "files-01")
    assert (row["version"], row["host"], row["throughput"], row["holding"]) == (
        "0.9",
        "old-box",
        "1.0 MB/s",
        "batch 3 (2 files)",
    )

    fork = multiprocessing.get_context("fork")
    for batch, nbytes in ((12, 10_000_000), (13, 15_000_000)):  # two processes, one token
        proc = fork.Process(target=heartbeat_of_a_process,
                            args=(live_server.url, agent.client.token, str(tmp_path), batch,
                                  nbytes))  # fmt: skip
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
    row = cells(admin_client.get(AGENTS).content.decode(), "files-01")
    assert sorted(row["holding"].split("; ")) == ["batch 12 (2 files)", "batch 13 (3 files)"]
    assert (row["online"], row["version"], row["host"], row["throughput"]) == (
        "online", VERSION, socket.gethostname(), "2.5 MB/s"  # 1 MB/s + 1.5 MB/s
    )  # fmt: skip
    assert re.fullmatch(r"\d+\.\d [KMGT]B", row["free_disk"])
    stored = Agent.objects.get(name="files-01").status
    assert len(stored["processes"]) == 2

    time.sleep(3.5)  # both processes gone quiet; this one still works
    agent.holding = {"batch": 14, "files": 1}
    agent.client.post("heartbeat/", {"status": agent.status()})
    row = cells(admin_client.get(AGENTS).content.decode(), "files-01")
    assert (row["holding"], row["throughput"]) == ("batch 14 (1 files)", "—")
