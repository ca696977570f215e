"""Permissions migrated by real jobs, against the Samba AD DC and the GCS emulator: SMB→SMB
with effective access checked as alice and bob, SMB→GCS object ACLs and the manifest,
SMB→local manifest only, deny refusal, permissions-only passes, the report, identity CSVs,
the assessment's SID figures and batched directory lookups."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from urllib.parse import quote

import pytest
import smbclient
from django.urls import reverse
from smbprotocol.exceptions import SMBOSError

from jobs import permissions, services
from jobs.choices import JobState
from jobs.models import (
    AclRecord,
    DirectoryIdentity,
    Event,
    FileItem,
    IdentityOverride,
    Pass,
)
from migrator.acl import sd
from migrator.acl.apply import mapped_descriptor, same_descriptor
from migrator.acl.mapping import MappingCSVError
from migrator.acl.model import FULL_CONTROL
from migrator.engine.permissions import UNIFORM_ACCESS_MESSAGE
from migrator.storage import Entry, connector_for

from .conftest import REPO, base_env
from .factories import (
    ACCESS,
    CASES,
    FILES,
    RULES,
    customer_with_ad,
    descriptor,
    new_folder,
    object_acls,
    run_job,
    smb_job,
)


@contextlib.contextmanager
def session_as(dc, user: str) -> Iterator[dict]:
    """smbclient keyword arguments for a connection of `user`'s own, closed afterwards (a
    DC shared with other test sessions may restart: cached connections would be stale)."""
    cache: dict = {}
    smbclient.register_session(
        dc.host,
        username=f"{dc.domain}\\{user}",
        password=dc.password_for(user),
        port=dc.port,
        auth_protocol="ntlm",
        connection_cache=cache,
    )
    try:
        yield {"port": dc.port, "connection_cache": cache}
    finally:
        smbclient.reset_connection_cache(connection_cache=cache)


def can_open(dc, share: str, path: str, user: str) -> bool:
    with session_as(dc, user) as kwargs:
        try:
            with smbclient.open_file(dc.unc(share, path), mode="rb", **kwargs) as f:
                f.read()
        except (SMBOSError, PermissionError) as exc:
            if "denied" in str(exc).lower() or isinstance(exc, PermissionError):
                return False
            raise
    return True


def read_as_admin(dc, share: str, path: str) -> bytes:
    with session_as(dc, dc.admin_user) as kwargs:
        f = smbclient.open_file(dc.unc(share, path), mode="rb", **kwargs)
        with f:
            return f.read()


def access_of(dc, share: str, base: str) -> dict[str, set[str]]:
    return {
        path: {user for user in ("alice", "bob") if can_open(dc, share, f"{base}/{path}", user)}
        for path in FILES
    }


def directory_url(dc) -> str:
    bind = quote(f"{dc.admin_user}@{dc.realm}", safe="")
    return f"ldap://{bind}@{dc.host}:389/{quote(dc.base_dn)}"


@dataclass
class Run:
    code: int
    json: dict
    stdout: str
    stderr: str


def run(cli, dc, *args: str, **env) -> Run:
    result = cli.run(
        *args,
        "--json",
        MIGRATOR_SMB_PASSWORD=dc.admin_password,
        MIGRATOR_LDAP_PASSWORD=dc.admin_password,
        **env,
    )
    try:
        summary = result.json
    except (ValueError, IndexError):
        summary = {}
    return Run(result.code, summary, result.stdout, result.stderr)


def report_rows(cli, job_id: int, *args: str) -> list[list[str]]:
    """`manage.py migrator_report JOB --report permissions` on the CLI's database."""
    proc = subprocess.run(
        [sys.executable, "manage.py", "migrator_report", str(job_id), "--report", "permissions",
         *args],
        cwd=REPO, env=base_env(cli.db, **cli.env_extra), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return list(csv.reader(io.StringIO(proc.stdout)))


def smb_args(dc, source: str, destination: str, *extra: str) -> tuple[str, ...]:
    return ("--source", dc.smb_url("data", source), "--destination", destination,
            "--permissions", "--directory", directory_url(dc), *extra)  # fmt: skip


ALL_PATHS = sorted([*CASES, *FILES])


# --- SMB → SMB ------------------------------------------------------------------------------


def test_smb_to_smb_alice_and_bob_keep_the_access_they_had(cli, samba_dc, acl_share):
    assert access_of(samba_dc, "data", acl_share) == ACCESS  # the cases are what we think
    target = new_folder(samba_dc, "target")
    args = smb_args(samba_dc, acl_share, samba_dc.smb_url("target", target))

    first = run(cli, samba_dc, *args)

    assert first.code == 0, first.stdout + first.stderr[-3000:]
    summary = first.json
    assert (summary["state"], summary["copied"], summary["failed"]) == ("completed", 7, 0)
    # every file and folder got its descriptor; SMB keeps every entry (nothing narrowed);
    # the deny on denied/ (and its file) is kept and reported, like the deleted user's SID
    assert (summary["acl_applied"], summary["acl_narrowed"]) == (14, 0)
    assert (summary["acl_denied"], summary["acl_unmapped"]) == (2, 2)
    assert summary["acl_manifest"] == ""  # the descriptors live on the server itself
    assert access_of(samba_dc, "target", target) == ACCESS
    with (
        connector_for(samba_dc.smb_url("data", acl_share), samba_dc.admin_password) as src,
        connector_for(samba_dc.smb_url("target", target), samba_dc.admin_password) as dst,
    ):
        for path in ALL_PATHS:
            want = mapped_descriptor(src.read_acl(path), {})
            got = dst.read_acl(path)
            assert same_descriptor(got, want), path  # owner, group, flags, deny, protection
        assert dst.read_acl("alice-only").owner == samba_dc.sids["alice"]
        assert dst.read_acl("alice-only").protected
        secret = dst.read_acl("denied/secret.txt").dacl
        assert (secret[0].type, secret[0].sid) == ("deny", samba_dc.sids["bob"])
        assert secret[0].flags & sd.INHERITED_ACE

    rows = report_rows(cli, summary["job_id"])
    header, body = rows[0], {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert header[:2] == ["path", "destination_path"]
    assert sorted(body) == ALL_PATHS
    assert "EXAMPLE\\bob: deny full control (kept)" in body["denied"]["denied"]
    assert "EXAMPLE\\Engineering: modify" in body["engineering"]["source_entries"]
    assert body["alice-only"]["inheritance"] == "broken (protected)"
    deleted = samba_dc.sids["deleted"]
    assert f"{deleted} (orphaned): orphaned SID" in body["orphaned"]["unmapped"]

    # a catch-up pass: nothing changed, so nothing is copied and no descriptor is written
    # again (a permissions-only pass re-applies them: the next test), the share as it was
    again = run(cli, samba_dc, *args)
    assert again.code == 0, again.stderr[-3000:]
    assert (again.json["copied"], again.json["unchanged"], again.json["acl_applied"]) == (0, 7, 0)
    assert again.json["delta_new"] == again.json["delta_changed"] == 0
    assert access_of(samba_dc, "target", target) == ACCESS


def test_permissions_only_pass_reapplies_changed_permissions_without_copying(
    cli, samba_dc, acl_share
):
    target = new_folder(samba_dc, "target")
    args = smb_args(samba_dc, acl_share, samba_dc.smb_url("target", target))
    assert run(cli, samba_dc, *args).code == 0
    readme = "public/readme.txt"
    assert can_open(samba_dc, "target", f"{target}/{readme}", "bob")

    # at the source public/readme.txt changes, then bob is denied it
    with connector_for(samba_dc.smb_url("data", acl_share), samba_dc.admin_password) as src:
        src.write(readme, io.BytesIO(b"changed\n"), Entry(readme, "file", 8, 0))
        acl = src.read_acl(readme)
        deny_bob = sd.Ace("deny", samba_dc.sids["bob"], FULL_CONTROL, 0)
        src.write_acl(readme, mapped_descriptor(replace(acl, dacl=(deny_bob, *acl.dacl)), {}))
        try:
            only = run(cli, samba_dc, *args, "--permissions-only")
        finally:
            data = FILES[readme]  # written anew, it inherits its folder's entries again
            src.write(readme, io.BytesIO(data), Entry(readme, "file", len(data), 0))
            assert src.read_acl(readme) == acl

    assert only.code == 0, only.stdout + only.stderr[-3000:]
    assert (only.json["copied"], only.json["unchanged"], only.json["pass"]) == (0, 7, 2)
    assert only.json["acl_applied"] == 14
    assert only.json["acl_denied"] == 3  # denied/, denied/secret.txt and now the readme
    assert not can_open(samba_dc, "target", f"{target}/{readme}", "bob")
    assert can_open(samba_dc, "target", f"{target}/{readme}", "alice")
    # the data was left as it was
    assert read_as_admin(samba_dc, "target", f"{target}/{readme}") == FILES[readme]
    passes = cli.query("SELECT number, kind FROM jobs_pass ORDER BY number")
    assert passes == [(1, "copy"), (2, "permissions")]


# --- SMB → GCS ------------------------------------------------------------------------------

ADMIN_OWNER = {"entity": "user-administrator@example.test", "role": "OWNER"}
DOMAIN_USERS = {"entity": "group-domain-users@example.test", "role": "READER"}
EXPECTED_ACLS = {
    "finance/report.txt": [{"entity": "group-finance@example.test", "role": "READER"}],
    "alice-only/diary.txt": [{"entity": "user-alice@example.test", "role": "OWNER"}],
    "denied/secret.txt": [DOMAIN_USERS],  # modify narrowed to READER; bob's deny reported
    "public/readme.txt": [DOMAIN_USERS],
    "engineering/design.txt": [{"entity": "group-engineering@example.test", "role": "READER"}],
    "orphaned/old-report.txt": [DOMAIN_USERS],  # the deleted and the foreign SID: unmapped
    "special/notes.txt": [{"entity": "group-finance@example.test", "role": "READER"}],
}
MAP_DOMAINS = ("--map-domain", "example.test", "--group-domain", "example.test")


def manifest_of(text: str) -> dict[str, dict]:
    lines = [json.loads(line) for line in text.splitlines()]
    return {entry["path"]: entry for entry in lines}


def test_smb_to_gcs_object_acls_manifest_and_report(cli, samba_dc, acl_share, gcs_server):
    bucket = gcs_server.make_bucket()
    dest = f"gs://{bucket}/in"

    first = run(cli, samba_dc, *smb_args(samba_dc, acl_share, dest, *MAP_DOMAINS))

    assert first.code == 0, first.stdout + first.stderr[-3000:]
    s = first.json
    assert (s["copied"], s["failed"], s["acl_applied"]) == (
        7,
        0,
        7,
    )  # files: folders are no objects
    # narrowed: modify on denied/, public/, engineering/ and the special mask, with their files
    assert (s["acl_narrowed"], s["acl_denied"], s["acl_unmapped"]) == (8, 2, 2)
    expected = {p: sorted([*acl, ADMIN_OWNER], key=lambda e: e["entity"])
                for p, acl in EXPECTED_ACLS.items()}  # fmt: skip
    assert object_acls(gcs_server, bucket, "in/") == expected

    name = f"in/.migrator/permissions-job-{s['job_id']}.jsonl"
    assert s["acl_manifest"] == f"gs://{bucket}/{name}"
    text = gcs_server.client().bucket(bucket).blob(name).download_as_text()
    manifest = manifest_of(text)
    assert sorted(manifest) == ALL_PATHS  # one object per path, folders too
    secret = manifest["denied/secret.txt"]
    assert {"identity": "domain-users@example.test", "type": "group", "level": "write"}.items() <= (
        secret["grants"][0].items()
    )
    assert [d["entry"] for d in secret["denied"]] == ["EXAMPLE\\bob: deny full control, inherited"]
    assert secret["narrowed"][0]["level"] == "read"
    deleted, foreign = samba_dc.sids["deleted"], samba_dc.sids["foreign"]
    unmapped = {u["sid"]: u["kind"] for u in manifest["orphaned"]["unmapped"]}
    assert unmapped == {deleted: "orphaned", foreign: "foreign"}
    assert manifest["alice-only"]["protected"] is True
    assert manifest["alice-only"]["owner"] == "alice@example.test"

    # the report lists every deny, narrowing and unmapped SID, with the items concerned
    issues = report_rows(cli, s["job_id"], "--list", "issues")
    assert issues[0] == ["what", "entry", "reason", "items"]
    listed = {(row[0], row[1]): int(row[3]) for row in issues[1:]}
    assert listed[("deny", "EXAMPLE\\bob: deny full control")] == 2
    assert listed[("narrowed", "EXAMPLE\\Domain Users: modify")] == 4  # denied/, public/ + files
    assert listed[("narrowed", "EXAMPLE\\Engineering: modify")] == 2
    assert listed[("narrowed", "EXAMPLE\\Finance: read & execute, write")] == 2
    assert listed[("unmapped", f"{deleted} (orphaned)")] == 2
    assert listed[("unmapped", f"{foreign} (foreign)")] == 2
    summary = dict(report_rows(cli, s["job_id"], "--list", "summary")[1:])
    assert (summary["distinct_acls"], summary["applied"], summary["denied"]) == ("14", "7", "2")
    rows = report_rows(cli, s["job_id"])
    by_path = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert "→ finance@example.test (READER)" in by_path["finance/report.txt"]["grants"]
    assert "not expressible: reported" in by_path["denied/secret.txt"]["denied"]

    # a catch-up pass: nothing changed, nothing copied, no ACL set again; the objects keep theirs
    again = run(cli, samba_dc, *smb_args(samba_dc, acl_share, dest, *MAP_DOMAINS))
    assert (again.json["copied"], again.json["unchanged"], again.json["acl_applied"]) == (0, 7, 0)
    assert object_acls(gcs_server, bucket, "in/") == expected


def test_identity_csv_maps_what_the_rules_cannot(cli, samba_dc, acl_share, gcs_server, tmp_path):
    bucket = gcs_server.make_bucket()
    mapping = tmp_path / "identities.csv"
    foreign = samba_dc.sids["foreign"]
    mapping.write_text(
        "source,target,type\n"
        f"{foreign},partner@partner.example,user\n"
        "EXAMPLE\\Finance,finance-team@example.com,group\n"
    )
    args = smb_args(samba_dc, acl_share, f"gs://{bucket}/in", *MAP_DOMAINS,
                    "--identity-map", str(mapping))  # fmt: skip

    result = run(cli, samba_dc, *args)

    assert result.code == 0, result.stdout + result.stderr[-3000:]
    acls = object_acls(gcs_server, bucket, "in/")
    assert {"entity": "user-partner@partner.example", "role": "READER"} in acls[
        "orphaned/old-report.txt"
    ]
    assert {"entity": "group-finance-team@example.com", "role": "READER"} in acls[
        "finance/report.txt"
    ]
    assert result.json["acl_unmapped"] == 2  # the deleted user's SID still maps to nobody
    overrides = cli.query("SELECT source, target, type, line FROM jobs_identityoverride")
    assert sorted(overrides, key=lambda o: o[3]) == [
        (foreign, "partner@partner.example", "user", 2),
        ("example\\finance", "finance-team@example.com", "group", 3),
    ]


def test_uniform_bucket_level_access_is_reported_once_not_failing_files(
    cli, samba_dc, acl_share, gcs_server
):
    bucket_name = gcs_server.make_bucket()
    bucket = gcs_server.client().bucket(bucket_name)
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    bucket.patch()

    result = run(cli, samba_dc, *smb_args(samba_dc, acl_share, f"gs://{bucket_name}/u"))

    assert result.code == 0, result.stdout + result.stderr[-3000:]
    s = result.json
    assert (s["copied"], s["failed"], s["acl_applied"]) == (7, 0, 0)
    assert all(not acl for acl in object_acls(gcs_server, bucket_name, "u/").values())
    events = cli.query("SELECT level, message FROM jobs_event WHERE message LIKE '%uniform%'")
    assert events == [("warning", UNIFORM_ACCESS_MESSAGE)]
    name = f"u/.migrator/permissions-job-{s['job_id']}.jsonl"
    assert len(manifest_of(bucket.blob(name).download_as_text())) == 14


# --- SMB → local ----------------------------------------------------------------------------


def test_smb_to_local_writes_the_manifest_only(cli, samba_dc, acl_share, tmp_path):
    dst = tmp_path / "dst"

    result = run(cli, samba_dc, *smb_args(samba_dc, acl_share, dst.as_uri(), *MAP_DOMAINS))

    assert result.code == 0, result.stdout + result.stderr[-3000:]
    s = result.json
    assert (s["copied"], s["acl_applied"], s["acl_denied"]) == (7, 0, 2)
    path = dst / ".migrator" / f"permissions-job-{s['job_id']}.jsonl"
    assert s["acl_manifest"] == f"{dst.as_uri()}/.migrator/permissions-job-{s['job_id']}.jsonl"
    manifest = manifest_of(path.read_text())
    assert sorted(manifest) == ALL_PATHS
    # a destination that reproduces inheritance: explicit entries, with where they apply;
    # files holding inherited entries only carry none of their own
    finance = {g["identity"]: g for g in manifest["finance"]["grants"]}
    assert finance["finance@example.test"]["scope"] == "this_subfolders_files"
    assert manifest["finance/report.txt"]["grants"] == []
    assert manifest["alice-only"]["protected"] is True


def test_deny_policy_refuse_fails_what_a_deny_applies_to(cli, samba_dc, acl_share, tmp_path):
    dst = tmp_path / "dst"
    args = smb_args(samba_dc, acl_share, dst.as_uri(), "--deny-policy", "refuse")

    result = run(cli, samba_dc, *args)

    assert result.code == 1, result.stdout + result.stderr[-3000:]  # completed with errors
    s = result.json
    assert s["failed_by_reason"] == {"deny_ace": 1}
    assert s["folders_failed"] == 1
    assert s["acl_denied"] == 2
    failed = cli.query(
        "SELECT source_path, reason, message FROM jobs_fileitem WHERE state = 'failed' "
        "ORDER BY source_path"
    )
    assert [(p, r) for p, r, _ in failed] == [
        ("denied", "deny_ace"),
        ("denied/secret.txt", "deny_ace"),
    ]
    assert "EXAMPLE\\bob: deny full control" in failed[1][2]
    assert not (dst / "denied" / "secret.txt").exists()
    assert (dst / "public" / "readme.txt").read_bytes() == FILES["public/readme.txt"]
    rows = report_rows(cli, s["job_id"])
    by_path = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert by_path["denied/secret.txt"]["grants"].startswith("refused")


# --- identity CSV validation ----------------------------------------------------------------

BAD_CSV = (
    "source,target,type\n"
    "EXAMPLE\\alice,alice@example.com,user\n"
    "EXAMPLE\\bob,not-an-email,user\n"
    "EXAMPLE\\alice,other@example.com,user\n"
    "S-1-5-21-1,x@example.com,robot\n"
)


def test_cli_identity_csv_with_problems_stops_before_anything_starts(cli, samba_dc, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)
    args = ("--source", samba_dc.smb_url("data", "public"), "--destination",
            (tmp_path / "dst").as_uri(), "--identity-map", str(bad))  # fmt: skip

    result = run(cli, samba_dc, *args)

    assert result.code == 2
    assert result.stderr.count("\n") == 1
    for line in ("line 3: target 'not-an-email' is not an email address",
                 r"line 4: source 'EXAMPLE\\alice' is mapped twice (first on line 2)",
                 "line 5: type 'robot' is not one of user, group, domain"):  # fmt: skip
        assert line in result.stderr
    assert cli.query("SELECT COUNT(*) FROM jobs_migrationjob") == [(0,)]
    assert not (tmp_path / "dst").exists()


# --- in-process: the customer's directory, batching, assessment, report, admin --------------


@pytest.mark.django_db(transaction=True)
def test_many_files_few_acls_cost_a_few_directory_searches(samba_dc, tmp_path, settings):
    settings.MIGRATOR_BATCH_FILES = 20
    base = new_folder(samba_dc, "data")
    sids = samba_dc.sids
    with connector_for(samba_dc.smb_url("data", base), samba_dc.admin_password) as share:
        for folder in ("finance", "engineering", "orphaned"):
            entries, protected = CASES[folder]
            share.mkdir(folder)
            share.write_acl(folder, descriptor(sids, entries, protected, "Administrator"))
            for i in range(30):
                path = f"{folder}/f{i:02}.txt"
                share.write(path, io.BytesIO(b"x"), Entry(path, "file", 1, 0))
    job = smb_job(samba_dc, base, (tmp_path / "dst").as_uri(), {"permissions": RULES})

    job = run_job(job)

    assert job.state == JobState.COMPLETED
    p = Pass.objects.get(job=job)
    assert (p.seen, p.batches_total) == (90, 5)
    assert FileItem.objects.filter(job_pass=p, acl__isnull=False).count() == 93
    # 3 folders and their files: 6 distinct descriptors, translated once each
    assert AclRecord.objects.filter(job_pass=p).count() == 6
    assert sum(AclRecord.objects.filter(job_pass=p).values_list("items", flat=True)) == 93
    directory = permissions._directories[(job.pk, p.pk)]
    assert directory.uri == samba_dc.ldap_uri  # the customer's directory
    # the domain's names (3 searches), then one batched search per batch meeting new SIDs
    assert directory.searches <= 6
    # a manifest for a destination that inherits: orphaned/'s own entries name the deleted
    # user and the foreign SID; its files only inherit them
    assert p.acl_unmapped == 1


@pytest.mark.django_db(transaction=True)
def test_assessment_counts_sids_orphaned_and_unmapped(samba_dc, acl_share, tmp_path):
    options = {"assess_only": True, "permissions": RULES}
    job = smb_job(samba_dc, acl_share, (tmp_path / "dst").as_uri(), options)

    job = run_job(job)

    assert job.state == JobState.ASSESSED
    figures = Pass.objects.get(job=job).assessment["permissions"]
    assert (figures["items"], figures["distinct_acls"], figures["unreadable"]) == (14, 14, 0)
    # Administrator, Domain Users, BUILTIN\Administrators (owner of files), alice, bob,
    # Finance, Engineering, the deleted user's and the foreign SID
    assert figures["distinct_sids"] == 9
    assert (figures["orphaned"], figures["unmapped"]) == (1, 2)
    assert figures["orphaned_sids"][0][0] == samba_dc.sids["deleted"]
    assert {sid for _, sid, _ in figures["unmapped_identities"]} == {
        samba_dc.sids["deleted"],
        samba_dc.sids["foreign"],
    }
    assert (figures["with_deny"], figures["protected_folders"]) == (2, 1)
    assert "directory_error" not in figures
    assert not list((tmp_path / "dst").glob("*"))  # an assessment copies nothing


@pytest.mark.django_db(transaction=True)
def test_report_page_and_csv_list_every_deny_narrowing_and_unmapped_sid(
    samba_dc, acl_share, gcs_server, admin_client, django_assert_max_num_queries
):
    bucket = gcs_server.make_bucket()
    job = run_job(smb_job(samba_dc, acl_share, f"gs://{bucket}/r", {"permissions": RULES}))
    assert job.state == JobState.COMPLETED

    url = reverse("reports:job_report", args=[job.pk, "permissions"])
    with django_assert_max_num_queries(25):
        page = admin_client.get(url)
    text = page.content.decode()
    assert page.status_code == 200
    for words in ("EXAMPLE\\bob: deny full control", "EXAMPLE\\Domain Users: modify",
                  "EXAMPLE\\Finance: read &amp; execute, write",
                  f"{samba_dc.sids['deleted']} (orphaned)",
                  f"{samba_dc.sids['foreign']} (foreign)"):  # fmt: skip
        assert words in text
    assert "Distinct ACLs <b>14</b>" in text
    issues = admin_client.get(url, {"issues": "1"}).content.decode()
    assert "finance/report.txt" not in issues and "denied/secret.txt" in issues

    csv_rows = list(csv.reader(io.StringIO(b"".join(
        admin_client.get(url, {"format": "csv"}).streaming_content).decode())))  # fmt: skip
    assert csv_rows[0][0] == "path" and len(csv_rows) == 15
    events = Event.objects.filter(job=job, message__startswith="Permissions manifest written")
    assert events.count() == 1


@pytest.mark.django_db(transaction=True)
def test_identity_csv_import_is_all_or_nothing(tmp_path):
    from .factories import new_job

    job = new_job((tmp_path / "s").as_uri(), (tmp_path / "d").as_uri())
    services.identity_overrides_import(
        job=job, data="source,target,type\nEXAMPLE\\alice,alice@example.com,user\n"
    )
    with pytest.raises(MappingCSVError) as caught:
        services.identity_overrides_import(job=job, data=BAD_CSV)
    assert [p.line for p in caught.value.problems] == [3, 4, 5]
    assert list(IdentityOverride.objects.values_list("source", "target")) == [
        ("example\\alice", "alice@example.com")
    ]


@pytest.mark.django_db(transaction=True)
def test_admin_identity_csv_upload_shows_problems_by_line(tmp_path, admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from .factories import new_job

    job = new_job((tmp_path / "s").as_uri(), (tmp_path / "d").as_uri())
    url = reverse("admin:jobs_migrationjob_identity_csv", args=[job.pk])
    bad = admin_client.post(url, {"csv_file": SimpleUploadedFile("m.csv", BAD_CSV.encode())})
    assert bad.status_code == 200
    assert "line 3: target &#x27;not-an-email&#x27; is not an email address" in bad.content.decode()
    assert not IdentityOverride.objects.exists()
    good = "source,target,type\nS-1-5-21-1-2-3-1201,partner@partner.example,user\n"
    ok = admin_client.post(url, {"csv_file": SimpleUploadedFile("m.csv", good.encode())})
    assert ok.status_code == 302
    assert IdentityOverride.objects.get(job=job).target == "partner@partner.example"
    page = admin_client.get(reverse("admin:jobs_migrationjob_change", args=[job.pk]))
    assert "partner@partner.example" in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_ad_users_export_to_the_identity_table_csv_and_scim(samba_dc, admin_client):
    customer = customer_with_ad(samba_dc)
    refresh = reverse("admin:jobs_directoryidentity_refresh")
    assert admin_client.post(refresh, {"customer": customer.pk}).status_code == 302

    users = {i.account: i for i in DirectoryIdentity.objects.filter(customer=customer, kind="user")}
    assert {"alice", "bob", "carol"} <= set(users)
    assert users["alice"].upn == "alice@example.test" and users["alice"].enabled
    assert users["carol"].enabled is False
    assert "Engineering" in users["bob"].nested_groups  # through Platform
    groups = {i.account for i in DirectoryIdentity.objects.filter(customer=customer, kind="group")}
    assert {"Finance", "Engineering", "Platform", "Partners"} <= groups

    listing = admin_client.get(
        reverse("admin:jobs_directoryidentity_changelist"), {"customer__id__exact": customer.pk}
    )
    assert "alice@example.test" in listing.content.decode()
    body = b"".join(
        admin_client.get(reverse("admin:jobs_directoryidentity_csv"),
                         {"customer": customer.pk}).streaming_content
    ).decode()  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(body)))
    alice = next(r for r in rows if r["account"] == "alice")
    assert (alice["sid"], alice["kind"]) == (samba_dc.sids["alice"], "user")
    scim = json.loads(b"".join(
        admin_client.get(reverse("admin:jobs_directoryidentity_scim"),
                         {"customer": customer.pk}).streaming_content))  # fmt: skip
    assert scim["totalResults"] == len(scim["Resources"]) == len(rows)
    resources = {r["externalId"]: r for r in scim["Resources"]}
    assert resources[samba_dc.sids["alice"]]["userName"] == "alice@example.test"
    assert resources[samba_dc.sids["carol"]]["active"] is False
    finance = resources[samba_dc.sids["Finance"]]
    assert finance["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:Group"]
    assert samba_dc.sids["alice"] in {m["value"] for m in finance["members"]}

    # read again: the same rows, none doubled
    assert admin_client.post(refresh, {"customer": customer.pk}).status_code == 302
    assert DirectoryIdentity.objects.filter(customer=customer).count() == len(rows)
