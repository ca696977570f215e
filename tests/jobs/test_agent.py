"""The on-premises agent end to end: a live server (runserver) with a worker cluster, and
agents as separate processes that have no Django on their path, enrolled through the real
enrolment flow; local folders at the agent's side."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from .conftest import REPO, Stack, accounting, make_tree, setup, tree_of, wait_until


def test_an_enrolled_agent_scans_and_copies_a_job_the_server_cannot_reach(stack, tmp_path):
    src, dst = tmp_path / "site" / "share", tmp_path / "site" / "copy"
    expected = make_tree(src, files=60, folders=3)
    job_id, (code,) = setup(stack, src, dst)
    enrolled = stack.enroll("agent1", code)
    assert enrolled.returncode == 0, enrolled.stderr
    config = tmp_path / "agent1" / "a.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    token = json.loads(config.read_text())["token"]
    # the server keeps only a hash of it
    hashes = stack.cli.query("SELECT token_hash FROM jobs_agent")
    assert token not in {h for (h,) in hashes} and len(hashes[0][0]) == 64
    again = stack.enroll("agent2", code)
    assert again.returncode == 2 and "used already" in again.stderr
    agent = stack.start_agent("agent1")
    assert stack.finished(job_id) == "completed", (tmp_path / "agent1.err").read_text()[-2000:]
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied, failed, pending) == (60, 60, 0, 0)
    assert tree_of(dst) == expected
    rows = stack.cli.query(
        "SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
        "WHERE kind = 'file' AND job_id = ?",
        job_id,
    )
    assert rows == [(60, 60)]
    status = json.loads(stack.cli.query("SELECT status FROM jobs_agent")[0][0])
    assert status["version"] and "free_disk" in status
    # what the agent's process had: no Django settings, no database, no cloud credential
    environ = Path(f"/proc/{agent.pid}/environ").read_bytes().split(b"\0")
    names = {e.split(b"=", 1)[0] for e in environ if e}
    assert not names & {
        b"DATABASE_URL",
        b"DJANGO_SETTINGS_MODULE",
        b"GOOGLE_APPLICATION_CREDENTIALS",
        b"MIGRATOR_FERNET_KEYS",
    }


def test_kill_9_of_an_agent_mid_batch_another_agent_of_the_pool_finishes(stack, tmp_path):
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = make_tree(src, files=120, folders=4, size=4000)
    job_id, codes = setup(stack, src, dst, bw=120_000, agents=2)
    for name, code in zip(("a1", "a2"), codes, strict=True):
        assert stack.enroll(name, code).returncode == 0
    first = stack.start_agent("a1")

    def a1_holds_a_batch() -> bool:
        rows = stack.cli.query(
            "SELECT COUNT(*) FROM jobs_batch WHERE state = 'leased' AND lease_owner LIKE 'agent:%'"
        )
        copied = (
            accounting(stack, job_id)[1]
            if stack.cli.query("SELECT 1 FROM jobs_pass WHERE job_id = ?", job_id)
            else 0
        )
        return rows[0][0] > 0 and copied >= 20

    wait_until(a1_holds_a_batch, 90, "the first agent mid-job")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    copied_at_kill = accounting(stack, job_id)[1]
    assert copied_at_kill < 120
    stack.start_agent("a2")
    assert stack.finished(job_id, timeout=240) == "completed"
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert seen == 120 and copied + unchanged == 120 and (failed, pending) == (0, 0)
    assert tree_of(dst) == expected  # every file whole, once; no temp file left
    rows = stack.cli.query(
        "SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
        "WHERE kind = 'file' AND job_id = ?",
        job_id,
    )
    assert rows == [(120, 120)]


def test_the_server_restarted_while_the_agent_works_nothing_counted_twice(stack, tmp_path):
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = make_tree(src, files=80, folders=2, size=4000)
    job_id, (code,) = setup(stack, src, dst, bw=100_000)
    assert stack.enroll("a1", code).returncode == 0
    stack.start_agent("a1")
    wait_until(
        lambda: (
            stack.cli.query("SELECT copied FROM jobs_pass WHERE job_id = ?", job_id)
            and accounting(stack, job_id)[1] >= 20
        ),
        90,
        "the first copies",
    )
    stack.stop_server()
    time.sleep(3)  # the agent keeps copying and retries its posts meanwhile
    stack.start_server()
    assert stack.finished(job_id, timeout=240) == "completed"
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied + unchanged, failed, pending) == (80, 80, 0, 0)
    assert tree_of(dst) == expected
    rows = stack.cli.query(
        "SELECT COUNT(*), COUNT(DISTINCT source_path) FROM jobs_fileitem "
        "WHERE kind = 'file' AND job_id = ?",
        job_id,
    )
    assert rows == [(80, 80)]


def test_a_revoked_agent_is_refused_and_an_expired_code_says_so(stack, tmp_path):
    src = tmp_path / "share"
    make_tree(src, files=2)
    job_id, (code,) = setup(stack, src, tmp_path / "copy")
    stack.shell(
        "from jobs.models import MigrationJob; "
        f"MigrationJob.objects.filter(pk={job_id}).update(state='paused')"
    )
    assert stack.enroll("a1", code).returncode == 0
    stack.shell(
        "from jobs import services; from jobs.models import Agent; "
        "services.agent_revoke(agent=Agent.objects.get())"
    )
    proc = stack.start_agent("a1", "--idle-exit", "5")
    assert proc.wait(timeout=60) == 3
    assert "revoked" in (tmp_path / "a1.err").read_text()
    expired = stack.shell(
        "from datetime import timedelta; from jobs import services; "
        "from jobs.models import AgentPool; "
        "print(services.enrollment_code_create(pool=AgentPool.objects.get(), "
        "ttl=timedelta(seconds=-1)))"
    )
    late = stack.enroll("a2", expired)
    assert late.returncode == 2 and "expired" in late.stderr
    unknown = stack.enroll("a3", "mgr-enroll-made-up")
    assert unknown.returncode == 2 and "not known" in unknown.stderr


def test_smb_source_to_gcs_through_the_agent_which_never_holds_a_gcs_key(
    stack, samba_dc, gcs_server, tmp_path
):
    """The issue's end to end: the Samba DC's share as the source, the GCS server as the
    destination; the agent streams each object through an upload session the server made,
    its environment and config have no GCS credential or address, md5s equal the source."""
    from .conftest import make_smb_tree, smb_source

    name, disk = smb_source(samba_dc)
    expected = make_smb_tree(disk, files=15, long_path=False)
    bucket = gcs_server.make_bucket()
    job_id, (code,) = setup(stack, samba_dc.smb_url("data", name), f"gs://{bucket}/in",
                            secret=samba_dc.password_for(samba_dc.admin_user))  # fmt: skip
    assert stack.enroll("agent1", code).returncode == 0
    agent = stack.start_agent("agent1")
    assert stack.finished(job_id) == "completed", (tmp_path / "agent1.err").read_text()[-2000:]
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied, failed, pending) == (len(expected), len(expected), 0, 0)
    client = gcs_server.client()
    blobs = {b.name: b for b in client.list_blobs(bucket)}
    assert set(blobs) == {f"in/{rel}" for rel in expected}
    for rel, data in expected.items():
        md5 = base64.b64decode(blobs[f"in/{rel}"].md5_hash).hex()
        assert md5 == hashlib.md5(data).hexdigest(), rel
        assert client.bucket(bucket).blob(f"in/{rel}").download_as_bytes() == data
    environ = Path(f"/proc/{agent.pid}/environ").read_bytes()
    assert b"STORAGE_EMULATOR_HOST" not in environ and b"GOOGLE_" not in environ
    config = (tmp_path / "agent1" / "a.json").read_text()
    assert "gs://" not in config and "STORAGE" not in config


def test_results_kept_on_disk_while_the_server_is_away_are_sent_after_a_restart(stack, tmp_path):
    """The server goes away; the agent finishes a batch and keeps its outcomes on disk;
    the agent is killed too. Both start again: the kept outcomes are sent first, so no
    batch is copied twice (every batch leased once) and nothing is lost."""
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = make_tree(src, files=40, folders=1, size=4000)
    # a batch of 10 takes ~7 s: the server is stopped well inside one, even on a busy machine
    job_id, (code,) = setup(stack, src, dst, bw=6_000)
    assert stack.enroll("a1", code).returncode == 0
    agent = stack.start_agent("a1", "--workers", "1")
    wait_until(  # a batch copied, and the next one leased (the agent is copying it)
        lambda: (
            accounting(stack, job_id)[1] >= 10
            and stack.cli.query("SELECT 1 FROM jobs_batch WHERE state = 'leased'")
            if stack.cli.query("SELECT 1 FROM jobs_pass WHERE job_id = ?", job_id)
            else False
        ),
        90,
        "a first batch, and the next one leased",
    )
    stack.stop_server()
    spool = tmp_path / "a1" / "spool"
    wait_until(lambda: spool.is_dir() and any(spool.glob("*.json")), 60, "a result kept on disk")
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(timeout=10)
    stack.start_server()
    stack.start_agent("a1", "--workers", "1")
    assert stack.finished(job_id, timeout=240) == "completed"
    assert not list(spool.glob("*.json"))
    seen, copied, unchanged, failed, pending = accounting(stack, job_id)
    assert (seen, copied, failed, pending) == (40, 40, 0, 0)
    assert tree_of(dst) == expected
    attempts = stack.cli.query("SELECT attempts FROM jobs_batch")
    assert attempts and all(a == 1 for (a,) in attempts), attempts


# --- permissions: SMB ACLs read, resolved and applied at the agent's site ---------------------

PERMISSIONS_SETUP = """
import json
from accounts.models import Customer
from jobs import services
c = Customer(name="AD customer", directory_kind="ad", directory_uri={ldap!r},
             directory_bind_dn={bind_dn!r}, directory_user_search_base={base!r})
c.set_directory_bind_password({password!r})
c.save()
pool = services.agent_pool_create(customer=c, name="site-a")
src = services.endpoint_create(name="share", url={src!r}, customer=c, secret={password!r})
jobs = {{}}
for name, url, agents in {routes!r}:
    d = services.endpoint_create(name=name, url=url, customer=c, secret={password!r})
    job = services.job_create(customer=c, name=name, source=src, destination=d,
                              options={options!r}, agent_pool=pool if agents else None)
    services.job_start(job=job)
    jobs[name] = job.pk
print(json.dumps({{"jobs": jobs, "code": services.enrollment_code_create(pool=pool)}}))
"""


def ad_jobs(stack: Stack, dc, source: str, routes: list[tuple[str, str, bool]],
            options: dict) -> tuple[dict[str, int], str]:  # fmt: skip
    """An AD customer (the Samba DC's directory), and one started job per route (name,
    destination URL, through its agent pool or not) from the folder `source` of [data]:
    {name: job id} and an enrolment code of the pool."""
    out = json.loads(stack.shell(PERMISSIONS_SETUP.format(
        ldap=dc.ldap_uri, bind_dn=f"CN=Administrator,CN=Users,{dc.base_dn}", base=dc.base_dn,
        password=dc.admin_password, src=dc.smb_url("data", source), routes=routes,
        options=options,
    )))  # fmt: skip
    return out["jobs"], out["code"]


def permissions_report(stack: Stack, job_id: int, *args: str) -> list[list[str]]:
    """`manage.py migrator_report JOB --report permissions` on the server's database."""
    proc = subprocess.run(
        [sys.executable, "manage.py", "migrator_report", str(job_id), "--report", "permissions",
         *args],
        cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return list(csv.reader(io.StringIO(proc.stdout)))


def acl_jobs_finished(stack, tmp_path: Path, jobs: dict[str, int]) -> dict[str, tuple]:
    """Wait for the permission jobs (the "agent" one by agent1, the "cluster" one by the
    cluster) to complete; check the agent's batches were its own; each job's counters."""
    for name, job_id in jobs.items():
        assert stack.finished(job_id) == "completed", (name, stack.cli.query(
            "SELECT error FROM jobs_migrationjob WHERE id = ?", job_id),
            (tmp_path / "agent1.err").read_text()[-2000:])  # fmt: skip
    # the agent job's batches were copied by the agent (the cluster leaves them alone)
    log = (tmp_path / "agent1" / "agent.log").read_text()
    batches = stack.cli.query("SELECT id FROM jobs_batch WHERE job_id = ?", jobs["agent"])
    assert batches and all(f"batch {pk}: " in log for (pk,) in batches)
    return {
        name: stack.cli.query(
            "SELECT seen, copied, failed, pending, acl_applied, acl_narrowed, acl_denied, "
            "acl_unmapped FROM jobs_pass WHERE job_id = ?",
            job_id,
        )[0]
        for name, job_id in jobs.items()
    }


def test_smb_acls_go_through_the_agent_as_the_cluster_migrates_them(
    stack, samba_dc, acl_share, tmp_path
):
    """The [data] share's ACL cases to folders of the [target] share, permissions on, the
    same job once through an agent (its SIDs resolved by the agent, at the customer's
    site, with the customer's AD settings the server hands it) and once by the cluster:
    the same permissions report, row for row, and the same descriptors at the target."""
    from migrator.acl.apply import mapped_descriptor, same_descriptor
    from migrator.storage import connector_for

    from .factories import CASES, FILES, RULES, new_folder

    dc = samba_dc
    targets = {"agent": new_folder(dc, "target"), "cluster": new_folder(dc, "target")}
    routes = [(name, dc.smb_url("target", folder), name == "agent")
              for name, folder in targets.items()]  # fmt: skip
    jobs, code = ad_jobs(stack, dc, acl_share, routes, {"permissions": RULES})
    assert stack.enroll("agent1", code).returncode == 0
    stack.start_agent("agent1")
    figures = acl_jobs_finished(stack, tmp_path, jobs)
    # every file accounted; every file and folder got its descriptor; the deny on denied/
    # (and its file) kept and reported, like the deleted user's SID
    assert figures["agent"] == figures["cluster"] == (7, 7, 0, 0, 14, 0, 2, 2)
    records = stack.cli.query(
        "SELECT COUNT(*), SUM(items) FROM jobs_aclrecord WHERE job_id = ?", jobs["agent"]
    )
    assert records == [(14, 14)]  # each distinct descriptor once, each item linked once

    reports = {name: permissions_report(stack, job_id) for name, job_id in jobs.items()}
    rows = reports["agent"]
    state = rows[0].index("state")  # a folder a file's write made first is "unchanged"
    assert {r[state] for r in rows[1:]} <= {"copied", "unchanged"}
    assert [r[:state] + r[state + 1 :] for r in rows] == [
        r[:state] + r[state + 1 :] for r in reports["cluster"]
    ]
    body = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert sorted(body) == sorted([*CASES, *FILES])
    assert "EXAMPLE\\Finance: read & execute" in body["finance"]["source_entries"]
    assert "EXAMPLE\\bob: deny full control (kept)" in body["denied"]["denied"]
    assert f"{dc.sids['deleted']} (orphaned): orphaned SID" in body["orphaned"]["unmapped"]
    assert body["alice-only"]["inheritance"] == "broken (protected)"
    issues = {name: permissions_report(stack, job_id, "--list", "issues")
              for name, job_id in jobs.items()}  # fmt: skip
    assert issues["agent"] == issues["cluster"]
    assert [(r[0], r[3]) for r in issues["agent"][1:]] == [("deny", "2"), ("unmapped", "2")]

    with (
        connector_for(dc.smb_url("data", acl_share), dc.admin_password) as src,
        connector_for(dc.smb_url("target", targets["agent"]), dc.admin_password) as dst,
    ):
        for path in sorted([*CASES, *FILES]):
            assert same_descriptor(dst.read_acl(path), mapped_descriptor(src.read_acl(path), {}))
        assert dst.read_acl("alice-only").owner == dc.sids["alice"]

    # the directory's password (the share's too) was held in memory only: not in the
    # agent's config, log or spool
    kept = [p for p in (tmp_path / "agent1").rglob("*") if p.is_file()]
    assert any(p.name == "agent.log" for p in kept)
    for path in [*kept, tmp_path / "agent1.err"]:
        assert dc.admin_password not in path.read_text(errors="replace"), path


def test_an_assessment_through_the_agent_copies_nothing_and_counts_sids_at_its_site(
    stack, samba_dc, acl_share, tmp_path
):
    """An assessment of an agent job: the agent scans the [data] share's ACL cases and
    surveys their descriptors, resolving the SIDs in the customer's AD from its site; the
    figures are those a worker makes (test_permissions), nothing is copied."""
    from .factories import RULES

    dst = tmp_path / "dst"
    options = {"assess_only": True, "permissions": RULES}
    jobs, code = ad_jobs(stack, samba_dc, acl_share, [("agent", dst.as_uri(), True)], options)
    job_id = jobs["agent"]
    assert stack.enroll("agent1", code).returncode == 0
    stack.start_agent("agent1")
    wait_until(lambda: stack.job_state(job_id) in ("assessed", "failed"), 180, "the assessment")
    assert stack.job_state(job_id) == "assessed", (tmp_path / "agent1.err").read_text()[-2000:]
    (raw,) = stack.cli.query("SELECT assessment FROM jobs_pass WHERE job_id = ?", job_id)[0]
    figures = json.loads(raw) if isinstance(raw, str) else raw
    assert (figures["files"], figures["folders"]) == (7, 7)
    assert figures["estimate"]["seconds"] is not None  # from a read of sample files
    perms = figures["permissions"]
    assert (perms["items"], perms["distinct_acls"], perms["unreadable"]) == (14, 14, 0)
    assert perms["distinct_sids"] == 9
    assert (perms["orphaned"], perms["unmapped"]) == (1, 2)
    assert perms["orphaned_sids"][0][0] == samba_dc.sids["deleted"]
    assert (perms["with_deny"], perms["protected_folders"]) == (2, 1)
    assert "directory_error" not in perms
    # an assessment copies nothing: no batch, nothing at the destination
    assert stack.cli.query("SELECT COUNT(*) FROM jobs_batch WHERE job_id = ?", job_id) == [(0,)]
    assert not dst.exists() or not list(dst.iterdir())
    assert "scanned pass" in (tmp_path / "agent1" / "agent.log").read_text()


def test_gcs_acls_through_the_agent_are_set_by_the_server_as_the_cluster_sets_them(
    stack, samba_dc, acl_share, gcs_server, tmp_path
):
    """The [data] share's ACL cases to a GCS bucket, permissions on, once through an agent
    (SIDs resolved and plans made at its site; the object ACLs set by the server, which
    holds the bucket's key) and once by the cluster: the same object ACLs in the bucket,
    the same counters and report, and the agent never held a GCS credential."""
    from .factories import FILES, RULES, object_acls

    dc = samba_dc
    bucket = gcs_server.make_bucket()
    routes = [(name, f"gs://{bucket}/{name}", name == "agent") for name in ("agent", "cluster")]
    jobs, code = ad_jobs(stack, dc, acl_share, routes, {"permissions": RULES})
    assert stack.enroll("agent1", code).returncode == 0
    agent = stack.start_agent("agent1")
    figures = acl_jobs_finished(stack, tmp_path, jobs)
    # every file accounted; each object got its ACL (folders are no objects); the cluster's
    # narrowings, denies and unmapped SIDs (test_permissions' SMB → GCS case)
    assert figures["agent"] == figures["cluster"] == (7, 7, 0, 0, 7, 8, 2, 2)

    client = gcs_server.client()
    acls = object_acls(gcs_server, bucket, "agent/")
    assert acls == object_acls(gcs_server, bucket, "cluster/")
    assert sorted(acls) == sorted(FILES)
    assert {"entity": "group-finance@example.test", "role": "READER"} in acls["finance/report.txt"]
    assert {"entity": "user-alice@example.test", "role": "OWNER"} in acls["alice-only/diary.txt"]

    reports = {name: permissions_report(stack, job_id) for name, job_id in jobs.items()}
    assert reports["agent"] == reports["cluster"]
    issues = {name: permissions_report(stack, job_id, "--list", "issues")
              for name, job_id in jobs.items()}  # fmt: skip
    assert issues["agent"] == issues["cluster"]
    summaries = {name: dict(permissions_report(stack, job_id, "--list", "summary")[1:])
                 for name, job_id in jobs.items()}  # fmt: skip
    assert summaries["agent"]["applied"] == summaries["cluster"]["applied"] == "7"

    # an object's ACL changed at the destination; a permissions pass puts it back, for the
    # objects already there (the server finds them unchanged: the agent plans them still)
    for name in jobs:
        blob = client.bucket(bucket).blob(f"{name}/finance/report.txt")
        blob.acl.reload()
        blob.acl.group("finance@example.test").revoke_read()
        blob.acl.save()
    assert (
        object_acls(gcs_server, bucket, "agent/")["finance/report.txt"]
        != acls["finance/report.txt"]
    )
    stack.shell(
        "from jobs import services; from jobs.models import MigrationJob\n"
        f"for pk in {sorted(jobs.values())!r}:\n"
        "    services.job_start_permissions(job=MigrationJob.objects.get(pk=pk))\n"
        "print('ok')"
    )
    for name, job_id in jobs.items():
        assert stack.finished(job_id) == "completed", name
    again = {
        name: stack.cli.query(
            "SELECT kind, seen, copied, unchanged, failed, pending, acl_applied FROM jobs_pass "
            "WHERE job_id = ? AND number = 2",
            job_id,
        )
        for name, job_id in jobs.items()
    }
    assert again["agent"] == again["cluster"] == [("permissions", 7, 0, 7, 0, 0, 7)]
    assert (
        object_acls(gcs_server, bucket, "agent/")
        == object_acls(gcs_server, bucket, "cluster/")
        == acls
    )

    # no GCS credential or address at the agent: not in its environment, config or files
    environ = Path(f"/proc/{agent.pid}/environ").read_bytes()
    assert b"STORAGE_EMULATOR_HOST" not in environ and b"GOOGLE_" not in environ
    config = (tmp_path / "agent1" / "a.json").read_text()
    assert "gs://" not in config and "STORAGE" not in config
