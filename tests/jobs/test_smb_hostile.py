"""Hostile input at the real Samba AD DC: a folder whose listing the server refuses in the
middle of a scan, and names that differ only by case or Unicode normalisation arriving at
a destination that folds them (an SMB share). Jobs run in-process through the services;
what is checked is what a user sees: the manifest's rows, the error groups, the renames
report, the files at the destination and the pass's counts."""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import Counter

import pytest
import smbclient
from django.urls import reverse
from smbprotocol.exceptions import SMBOSError

from accounts.models import Customer
from jobs import selectors, services
from jobs.choices import JobState
from jobs.models import Event, FileItem, MigrationJob, Pass

from .conftest import tree_of
from .factories import run_job

pytestmark = pytest.mark.django_db(transaction=True)

COUNTS = ("copied", "unchanged", "excluded", "failed", "pending")


def smb_job(samba_dc, source: str, destination: str, user: str) -> MigrationJob:
    customer, _ = Customer.objects.get_or_create(name="Example Corp")
    secret = samba_dc.password_for(user)
    endpoints = [
        services.endpoint_create(
            name=name, url=url, customer=customer, secret=secret if url.startswith("smb:") else None
        )
        for name, url in (("source", source), ("destination", destination))
    ]
    return services.job_create(customer=customer, name="share", source=endpoints[0],
                               destination=endpoints[1])  # fmt: skip


def assert_accounted(p: Pass) -> None:
    """seen = copied + unchanged + excluded + failed + pending, nothing left pending, and
    one manifest row per item."""
    assert p.seen == sum(getattr(p, k) for k in COUNTS), {k: getattr(p, k) for k in COUNTS}
    assert p.pending == 0
    assert p.seen == FileItem.objects.filter(job_pass=p, kind="file").count()
    assert p.folders_seen == FileItem.objects.filter(job_pass=p, kind="dir").count()
    paths = Counter(FileItem.objects.filter(job_pass=p).values_list("source_path", flat=True))
    assert [path for path, n in paths.items() if n > 1] == []


# --- a folder whose listing the server refuses, mid-scan --------------------------------------

# Folders in scan order around the refused one, with files before and after it.
BEFORE_AND_AFTER = {
    "0 first.txt": b"top, before everything",
    "projects/2024/a.txt": b"a" * 3000,
    "projects/2024/b.txt": b"b" * 5000,
    "projects/2026/c.txt": b"c" * 7000,
    "projects/readme.txt": b"after the refused folder, in its parent",
    "zz last.txt": b"top, after everything",
}
REFUSED = "projects/2025"
INSIDE = {f"{REFUSED}/budget.xlsx": b"secret numbers", f"{REFUSED}/q1/plan.txt": b"plan"}
# bob may not list the folder (FILE_LIST_DIRECTORY, this folder only); everything else as
# its parent: Domain Users modify, Administrator full. A deny comes first, as Windows keeps it.
NO_LISTING_FOR_BOB = "O:LAG:DUD:AI(D;;0x1;;;{bob})(A;OICI;0x1301bf;;;DU)(A;OICI;0x1f01ff;;;LA)"


def test_a_folder_the_server_will_not_list_is_one_failed_row_and_the_rest_arrives(
    samba_dc, tmp_path
):
    base = samba_dc.make_folder("data")
    for rel, data in {**BEFORE_AND_AFTER, **INSIDE}.items():
        samba_dc.put_file("data", f"{base}/{rel}", data)
    samba_dc.set_acl("data", f"{base}/{REFUSED}", NO_LISTING_FOR_BOB)
    # what the server enforces, as bob: he sees the folder in its parent, cannot list it
    bob = samba_dc.smbclient_kwargs("bob")
    assert "2025" in smbclient.listdir(samba_dc.unc("data", f"{base}/projects"), **bob)
    with pytest.raises(SMBOSError, match="(?i)access"):
        smbclient.listdir(samba_dc.unc("data", f"{base}/{REFUSED}"), **bob)
    dst = tmp_path / "dst"

    job = run_job(
        smb_job(samba_dc, samba_dc.smb_url("data", base, user="bob"), dst.as_uri(), "bob")
    )

    assert job.state == JobState.COMPLETED_WITH_ERRORS
    p, files = job.current_pass, len(BEFORE_AND_AFTER)
    assert (p.seen, p.copied, p.failed, p.folders_failed) == (files, files, 0, 1)
    assert_accounted(p)
    failed = list(
        FileItem.objects.filter(job_pass=p, state="failed").values_list(
            "source_path", "kind", "reason", "rules"
        )
    )
    assert failed == [(REFUSED, "dir", "access_denied", "")]  # no rename of its own
    rows = set(FileItem.objects.filter(job_pass=p).values_list("source_path", flat=True))
    assert rows == {*BEFORE_AND_AFTER, "projects", "projects/2024", REFUSED, "projects/2026"}
    # every other file whole, nothing of (nor for) the refused folder invented
    assert tree_of(dst) == BEFORE_AND_AFTER
    assert not (dst / REFUSED).exists()
    # the error group and its words, and the error event on the folder
    (group,) = selectors.error_groups(job_pass=p)
    assert (group.reason, group.count, group.files, group.examples) == (
        "access_denied", 1, 0, [REFUSED]
    )  # fmt: skip
    assert "may not read it" in group.cause and "Grant the migration account read" in group.fix
    assert Event.objects.filter(job=job, level="error", path=REFUSED).exists()


# --- names a case-insensitive destination folds together --------------------------------------

NFC, NFD = unicodedata.normalize("NFC", "café.txt"), unicodedata.normalize("NFD", "café.txt")
TWINS = {
    "Report.txt": b"title case",
    "report.txt": b"lower case",
    "REPORT.TXT": b"upper case",
    NFC: b"composed e-acute",
    NFD: b"e and a combining acute",
    "Docs/a.txt": b"in Docs",
    "docs/a.txt": b"in docs",
}


def smb_tree(samba_dc, share: str, folder: str) -> dict[str, bytes]:
    """Every file under `folder`, read back over SMB: {relative path: bytes}."""
    kw = samba_dc.smbclient_kwargs()
    top = samba_dc.unc(share, folder)
    found = {}
    for root, _dirs, files in smbclient.walk(top, **kw):
        for name in files:
            full = f"{root}\\{name}"
            with smbclient.open_file(full, "rb", **kw) as f:
                found[full[len(top) + 1 :].replace("\\", "/")] = f.read()
    return found


def read_csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.DictReader(io.StringIO(body)))


def test_names_differing_by_case_or_normalisation_each_arrive_at_an_smb_share(
    samba_dc, tmp_path, admin_client
):
    # the share folds case: A.txt is what a.txt opens
    kw = samba_dc.smbclient_kwargs()
    probe = samba_dc.make_folder("target")
    with smbclient.open_file(samba_dc.unc("target", f"{probe}/A.txt"), "wb", **kw) as f:
        f.write(b"upper")
    with smbclient.open_file(samba_dc.unc("target", f"{probe}/a.txt"), "rb", **kw) as f:
        assert f.read() == b"upper"
    src = tmp_path / "src"
    for rel, data in TWINS.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    assert len({p.name for p in src.iterdir()}) == 7  # 5 files, 2 folders: all distinct here
    target = samba_dc.make_folder("target")
    url = samba_dc.smb_url("target", target)

    job = run_job(smb_job(samba_dc, src.as_uri(), url, samba_dc.admin_user))

    assert job.state == JobState.COMPLETED, job.error
    p = job.current_pass
    assert (p.seen, p.copied, p.failed) == (len(TWINS), len(TWINS), 0)
    assert_accounted(p)
    dest_of = dict(
        FileItem.objects.filter(job_pass=p, kind="file").values_list("source_path", "dest_path")
    )
    assert set(dest_of) == set(TWINS)
    # each source file is its own object at the share, with its own bytes
    arrived = smb_tree(samba_dc, "target", target)
    assert arrived == {dest_of[rel]: data for rel, data in TWINS.items()}
    folded = {unicodedata.normalize("NFC", d).casefold() for d in arrived}
    assert len(folded) == len(TWINS)  # distinct even case- and normalisation-insensitively
    # the renames report names each collision with its rule; 1 of 3 "report"s, 1 of 2
    # "café"s and 1 of 2 "docs" folders keep their name
    renames = read_csv(
        admin_client.get(reverse("reports:job_report", args=[job.pk, "renames"]), {"format": "csv"})
    )
    collided = {r["source_path"]: r for r in renames if "collision" in r["rules"].split(",")}
    assert len(collided) == 4, renames
    assert len([s for s in collided if s.casefold() == "report.txt"]) == 2
    assert len([s for s in collided if unicodedata.normalize("NFC", s) == NFC]) == 1
    assert len([s for s in collided if s.casefold() == "docs"]) == 1
    for source_path, row in collided.items():
        assert row["dest_path"] != source_path and "~" in row["dest_path"]
        assert row["renamed_from"] == source_path
    assert summary_renamed(job)["collision"] == 4

    again = run_job(job)  # a second pass finds every object where the first put it
    p2 = again.current_pass
    assert (p2.number, p2.copied, p2.unchanged, p2.failed) == (2, 0, len(TWINS), 0)
    assert smb_tree(samba_dc, "target", target) == arrived


def summary_renamed(job: MigrationJob) -> dict[str, int]:
    return selectors.job_summary(job=job)["renamed"]
