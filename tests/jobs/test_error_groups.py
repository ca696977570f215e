"""Failures grouped by cause, each with what to do: real jobs over a real local folder (a
destination folder made immutable with chattr: access denied even for root; paths too
long for the windows profile; folders in the way) and over the Samba DC (folders bob may
not read, by their NT ACL). The groups, their counts and examples, the words a customer
reads (never a host or a share), the CSV of the groups, and retrying one group only."""

from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from accounts.models import AuditEntry, Customer
from jobs import fixes, selectors, services
from jobs.choices import Reason
from jobs.models import Batch, Event, FileItem
from tests.jobs.factories import Steps, new_job, viewer
from tests.jobs.factories import run_job as run

pytestmark = pytest.mark.django_db(transaction=True)

LONG = "/".join(f"{i:02d} a folder name that is rather long" for i in range(7))
DENIED = ["Finance/2024/q1/a.txt", "Finance/2024/q1/b.txt", "Finance/2024/q2/c.txt"]
TOO_LONG = [f"Deep/{LONG}/x.txt", f"Deep/{LONG}/y.txt"]
IN_THE_WAY = ["docs/notes.txt", "=SUM(1)/cell.txt"]  # a folder of that name at the dest
COPIED = ["docs/keep.txt", "ok.txt"]
PROTECTED = "Finance/2024"  # immutable at the destination


def chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True)


@pytest.fixture
def failing_job(tmp_path):
    """A finished job with three causes of failure, and the destination folder that
    refuses writes (made writable again at the end, so pytest can remove it)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for rel in DENIED + TOO_LONG + IN_THE_WAY + COPIED:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(f"content of {rel}")
    for rel in IN_THE_WAY:
        (dst / rel).mkdir(parents=True)
    (dst / PROTECTED).mkdir(parents=True)
    chattr("+i", dst / PROTECTED)  # root too gets EPERM creating anything in it
    try:
        job = new_job(src.as_uri(), dst.as_uri(), options={"profile": "windows"})
        yield run(job), dst
    finally:
        chattr("-i", dst / PROTECTED)


def by_reason(groups) -> dict[str, list[selectors.ErrorGroup]]:
    found: dict[str, list[selectors.ErrorGroup]] = {}
    for g in groups:
        found.setdefault(g.reason, []).append(g)
    return found


def read_csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body)))


def test_failures_are_grouped_by_cause_largest_first_with_words(failing_job):
    job, _dst = failing_job
    assert job.state == "completed_with_errors"
    groups = selectors.error_groups(job_pass=job.current_pass, profile="windows")
    found = by_reason(groups)
    # the one whose parent folder is the protected one may fail on its own (its mtime)
    assert set(found) <= {"access_denied", "path_too_long", "unsafe_path", "io_error"}

    (denied,) = found["access_denied"]
    assert groups[0] is denied  # the largest
    assert (denied.folder, denied.error) == ("Finance/2024", "permission denied: <path>")
    assert denied.files == 3 and denied.count == 5  # 3 files and the 2 folders q1, q2
    assert denied.bytes == sum(len(f"content of {p}") for p in DENIED)
    assert denied.examples == ["Finance/2024/q1", "Finance/2024/q1/a.txt", "Finance/2024/q1/b.txt"]
    assert denied.fix == (
        "Grant the migration account read on “Finance/2024” (and write at the destination), "
        "then Retry failed."
    )
    # first and last seen: when the batch that failed them finished
    finished = Batch.objects.filter(job_pass=job.current_pass).values_list("finished_at", flat=True)
    assert denied.first_seen in set(finished) and denied.last_seen in set(finished)

    (long,) = found["path_too_long"]
    assert (long.folder, long.files, long.count) == (f"Deep/{LONG.split('/')[0]}", 2, 3)
    assert long.examples[1:] == TOO_LONG
    assert long.first_seen == long.last_seen == job.current_pass.started_at  # met by the scan
    assert "pick the sharepoint profile (400 characters) or posix (no limit)" in long.fix
    assert long.fix.startswith(f"Shorten the folder “Deep/{LONG.split('/')[0]}”")

    in_the_way = {g.folder: g for g in found["unsafe_path"]}
    assert set(in_the_way) == {"docs", "=SUM(1)"}  # two folders: two groups
    assert in_the_way["docs"].examples == ["docs/notes.txt"]
    assert in_the_way["docs"].error == "a folder has that name at the destination: <path>"
    assert in_the_way["docs"].cause == "A folder at the destination has the file's name."

    for other in found.get("io_error", []):
        assert other.examples == [PROTECTED] and other.files == 0
    counts = [g.count for g in groups]
    assert counts == sorted(counts, reverse=True)
    assert sum(counts) == job.current_pass.failed + job.current_pass.folders_failed


def test_errors_report_staff_read_the_error_customers_the_words(
    failing_job, admin_client, django_user_model
):
    job, _dst = failing_job
    url = reverse("reports:job_report", args=[job.pk, "errors"])
    staff_page = admin_client.get(url).content.decode()
    assert "Failures by cause" in staff_page
    assert "permission denied: &lt;path&gt;" in staff_page  # the normalised error text
    assert "Retry this group" in staff_page
    assert staff_page.index("Finance/2024") < staff_page.index("Shorten the folder")

    admin_page = admin_client.get(reverse("admin:jobs_migrationjob_change", args=[job.pk]))
    admin_page = admin_page.content.decode()
    assert "Failures by cause" in admin_page and "permission denied: &lt;path&gt;" in admin_page
    assert (
        'form="mg-retry-group" name="group"' in admin_page and 'id="mg-retry-group"' in admin_page
    )
    assert admin_page.index("Finance/2024") < admin_page.index("Shorten the folder")

    client = viewer(django_user_model, "ann", job.customer)
    page = client.get(url).content.decode()
    assert "Grant the migration account read on “Finance/2024”" in page
    assert "Shorten the folder" in page and "A folder at the destination" in page
    assert "permission denied: &lt;path&gt;" not in page and "Retry this group" not in page
    portal = client.get(reverse("portal:job", args=[job.pk])).content.decode()
    assert "Failures by cause" in portal and "Grant the migration account read" in portal
    assert "&lt;path&gt;" not in portal and "Retry this group" not in portal
    # a later page of the errors shows the rows only
    assert "Failures by cause" not in client.get(url, {"cursor": "1"}).content.decode()


def test_groups_csv_for_staff_customers_and_the_cli(
    failing_job, admin_client, django_user_model, capsys
):
    job, _dst = failing_job
    url = reverse("reports:job_report", args=[job.pk, "errors"])
    response = admin_client.get(url, {"format": "csv", "list": "groups"})
    assert response["Content-Disposition"] == (
        f'attachment; filename="job-{job.pk}-errors-groups.csv"'
    )
    staff_rows = read_csv(response)
    header = staff_rows[0]
    assert header == [
        "reason", "folder", "items", "files", "bytes", "first_seen", "last_seen", "example_1",
        "example_2", "example_3", "cause", "fix", "error",
    ]  # fmt: skip
    rows = {(r[0], r[1]): dict(zip(header, r, strict=True)) for r in staff_rows[1:]}
    denied = rows[("access_denied", "Finance/2024")]
    assert (denied["items"], denied["files"], denied["example_2"]) == ("5", "3", DENIED[0])
    assert denied["error"] == "permission denied: <path>"
    assert denied["fix"].startswith("Grant the migration account read on “Finance/2024”")
    # a folder named like a formula is neutralised, as in every CSV
    hostile = rows[("unsafe_path", "'=SUM(1)")]
    assert hostile["example_1"] == "'=SUM(1)/cell.txt"
    assert staff_rows[1][0] == "access_denied"  # largest first

    client = viewer(django_user_model, "ann", job.customer)
    customer_rows = read_csv(client.get(url, {"format": "csv", "list": "groups"}))
    assert customer_rows[0] == header[:-1]  # no error text column
    assert [r[:5] for r in customer_rows[1:]] == [r[:5] for r in staff_rows[1:]]
    assert client.get(url, {"format": "csv", "list": "nope"}).status_code == 404

    call_command("migrator_report", str(job.pk), "--report", "errors", "--list", "groups")
    assert list(csv.reader(io.StringIO(capsys.readouterr().out))) == staff_rows


def test_retry_one_group_resets_and_copies_only_its_files(failing_job, django_user_model):
    job, dst = failing_job
    chattr("-i", dst / PROTECTED)  # the cause is fixed: the folder is writable again
    staff = django_user_model.objects.create_superuser("eng", "eng@example.test", "Eng-pw-12345")
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    errors = reverse("reports:job_report", args=[job.pk, "errors"])
    page = client.get(errors).content.decode()
    denied = next(
        g for g in selectors.error_groups(job_pass=job.current_pass) if g.reason == "access_denied"
    )
    assert f'value="{denied.key}"' in page
    before = dict(
        FileItem.objects.filter(job=job, state="failed").exclude(reason="access_denied")
        .values_list("source_path", "message")
    )  # fmt: skip
    body = {"action": "action_retry_error_group", "_selected_action": str(job.pk),
            "group": denied.key}  # fmt: skip
    changelist = reverse("admin:jobs_migrationjob_changelist")
    assert client.post(changelist, body).status_code == 403  # no CSRF token: refused
    assert FileItem.objects.filter(job=job, state="pending").count() == 0

    token = client.cookies["csrftoken"].value
    with Steps() as steps:
        response = client.post(changelist, {**body, "csrfmiddlewaretoken": token})
        assert response.status_code == 302 and response["Location"] == errors
        pending = set(
            FileItem.objects.filter(job=job, state="pending").values_list("source_path", flat=True)
        )
        assert pending == set(DENIED)  # only that group's files, not its folders
        steps.run()
    job.refresh_from_db()
    assert job.state == "completed_with_errors"
    for rel in DENIED:
        assert (dst / rel).read_text() == f"content of {rel}"
        assert FileItem.objects.get(job=job, source_path=rel).state == "copied"
    after = dict(
        FileItem.objects.filter(job=job, state="failed").exclude(reason="access_denied")
        .values_list("source_path", "message")
    )  # fmt: skip
    assert after == before  # the other groups are as they were
    p = job.current_pass
    p.refresh_from_db()
    assert p.accounted and p.failed == len(TOO_LONG) + len(IN_THE_WAY)
    assert AuditEntry.objects.filter(object_id=str(job.pk), action="retry").exists()
    public = Event.objects.filter(job=job, staff_only=False, message__startswith="Retrying 3")
    assert public.get().message == (
        "Retrying 3 failed file(s) of one error group (Access denied in “Finance/2024”) by "
        "the support team."
    )
    # its folders stay failed (a retry copies files), so the group has nothing to retry
    with pytest.raises(services.JobStateError, match="no failed files that can be retried"):
        services.job_retry_failed(job=job, user=staff, group=denied.key)
    with pytest.raises(services.JobStateError, match="no such error group"):
        services.job_retry_failed(job=job, user=staff, group="0123456789abcdef")


def test_over_the_cap_the_rest_is_one_group_of_other_causes(failing_job):
    job, _dst = failing_job
    groups = selectors.error_groups(job_pass=job.current_pass, limit=2)
    assert len(groups) == 3 and groups[-1].other
    assert groups[-1].count == sum(g.count for g in selectors.error_groups(
        job_pass=job.current_pass)) - groups[0].count - groups[1].count  # fmt: skip
    assert groups[-1].reason_label == "Other causes"


# --- the table and the normalisation ----------------------------------------------------


def test_every_reason_code_has_words():
    assert {r.value for r in Reason if r.value} <= set(fixes.FIXES)
    for reason in fixes.FIXES:
        cause, fix = fixes.advice(reason, folder="x", attempts=3, profile="windows")
        assert cause and fix and "{" not in cause + fix
    cause, fix = fixes.advice("locked", folder="Sales", attempts=5)
    assert fix.startswith("Retried 5 times; ask users to close the files in “Sales”")


def test_normalised_errors_are_one_cause_whatever_the_item():
    one = fixes.normalise_error("permission denied: a/b.txt", "a/b.txt")
    two = fixes.normalise_error("permission denied: c/d.txt", "c/d.txt")
    assert one == two == "permission denied: <path>"
    # a bare name is a word of the message too: only the end is its path
    assert fixes.normalise_error("access denied: denied", "denied") == "access denied: <path>"
    assert fixes.normalise_error("[Errno 13] Permission denied: '/srv/x y/z.txt'") == (
        "[Errno <n>] Permission denied: <name>"
    )
    assert (
        fixes.normalise_error(
            "STATUS_ACCESS_DENIED 0xc0000022 on \\\\10.0.0.5\\data\\x.txt at 10.0.0.5:445"
        )
        == "STATUS_ACCESS_DENIED <hex> on <path> at <host>"
    )
    assert fixes.normalise_error("read smb://EXAMPLE;bob@host:445/data failed") == (
        "read <url> failed"
    )


# --- the real access denied of an SMB share: bob may not read three folders -------------

DENY_BOB_FILE = "O:LAG:DUD:PAI(D;;0x1f01ff;;;{bob})(A;;0x1301bf;;;DU)(A;;0x1f01ff;;;LA)"


def test_smb_folders_bob_may_not_read_are_one_group_customers_see_no_host(
    samba_dc, tmp_path, django_user_model, admin_client
):
    base = samba_dc.make_acl_folders("data")
    samba_dc.put_file("data", f"{base}/public/not-for-bob.txt", b"alice may\n")
    samba_dc.set_acl("data", f"{base}/public/not-for-bob.txt", DENY_BOB_FILE)
    customer = Customer.objects.create(name="Example Corp")
    url = samba_dc.smb_url("data", base, user="bob")
    source = services.endpoint_create(
        name="share", url=url, customer=customer, secret=samba_dc.password_for("bob")
    )
    destination = services.endpoint_create(
        name="dest", url=(tmp_path / "dst").as_uri(), customer=customer
    )
    job = run(services.job_create(customer=customer, name="share", source=source,
                                  destination=destination))  # fmt: skip
    groups = selectors.error_groups(job_pass=job.current_pass)
    assert [(g.reason, g.folder, g.count, g.files) for g in groups] == [
        ("access_denied", "", 3, 0),  # alice-only, denied, finance: their listing refused
        ("access_denied", "public", 1, 1),
    ]
    assert sorted(groups[0].examples) == ["alice-only", "denied", "finance"]
    assert groups[0].first_seen == job.current_pass.started_at  # met by the scan
    assert groups[1].examples == ["public/not-for-bob.txt"]
    assert "Grant the migration account read on the top folder" in groups[0].fix
    assert "Grant the migration account read on “public”" in groups[1].fix

    raw = FileItem.objects.filter(job=job, state="failed").values_list("message", flat=True)
    staff_page = admin_client.get(reverse("reports:job_report", args=[job.pk, "errors"]))
    assert escape(groups[0].error) in staff_page.content.decode()
    client = viewer(django_user_model, "ann", customer)
    pages = [
        client.get(reverse("portal:job", args=[job.pk])).content.decode(),
        client.get(reverse("reports:job_report", args=[job.pk, "errors"])).content.decode(),
        b"".join(
            client.get(
                reverse("reports:job_report", args=[job.pk, "errors"]),
                {"format": "csv", "list": "groups"},
            ).streaming_content
        ).decode(),
    ]
    for page in pages:
        assert "Grant the migration account read on" in page
        for secret in (samba_dc.host, f":{samba_dc.port}", "smb://", samba_dc.domain, base):
            assert secret not in page
    # the groups hold the words only (the rows and events around them show each item's
    # message as they did before: jobs.plain.item_message)
    card = pages[0].split('id="error-groups"')[1].split("Recent events")[0]
    for text in (card, pages[2]):
        assert not any(message and message in text for message in raw)


def test_readme_says_what_each_failure_reason_means():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## When something goes wrong")[1].split("\n## ")[0]
    codes = [r.value for r in Reason]
    failures = codes[1 : codes.index("symlink")] + ["deny_ace", "acl_failed",
                                                   "directory_unavailable"]  # fmt: skip
    missing = [code for code in failures if f"`{code}`" not in section]
    assert not missing, missing
    assert "Retry this group" in section and "migrator_run" in section
    assert "--list groups" in section
