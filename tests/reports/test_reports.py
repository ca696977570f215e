"""Job reports as a customer viewer and as staff see them: pages, filters, CSV, isolation."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Customer
from jobs import services
from jobs.models import Event, MigrationJob
from reports.registry import REPORTS
from tests.jobs.conftest import REPO, base_env, current_db_url
from tests.jobs.factories import RULES, Steps, run_job, smb_job, viewer

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = '=HYPERLINK("x")<img src=x onerror=alert(1)>, "q".txt'


@pytest.fixture
def finished_job(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "report.pdf").write_bytes(b"%PDF" * 100)
    (src / "docs" / "notes.txt").write_text("notes")
    (src / HOSTILE).write_text("hostile")
    (src / "a:b.txt").write_text("renamed on windows")
    (src / "Thumbs.db").write_text("junk")
    (src / "Über café 日本.txt").write_text("not ASCII")  # the CSVs are UTF-8 everywhere
    (dst / "docs").mkdir(parents=True)
    (dst / "docs" / "notes.txt").mkdir()  # a folder in the way: that file fails
    customer = Customer.objects.create(name="Acme Corp")
    s = services.endpoint_create(name="s", url=src.as_uri(), customer=customer)
    d = services.endpoint_create(name="d", url=dst.as_uri(), customer=customer)
    job = services.job_create(
        customer=customer,
        name="Acme file server",
        source=s,
        destination=d,
        options={"profile": "windows"},
    )
    with Steps() as steps:
        services.job_start(job=job)
        steps.run()
    Event.objects.create(job=job, level="info", message="internal detail", staff_only=True)
    job.refresh_from_db()
    return job


def read_csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body)))


def test_viewer_reads_every_report_and_hostile_names_are_escaped(finished_job, django_user_model):
    client = viewer(django_user_model, "ann", finished_job.customer)
    for report in REPORTS:
        response = client.get(reverse("reports:job_report", args=[finished_job.pk, report]))
        assert response.status_code == 200, report
        page = response.content.decode()
        assert "<img src=x onerror" not in page
        assert "internal detail" not in page  # staff-only event
    files = client.get(reverse("reports:job_report", args=[finished_job.pk, "files"])).content
    assert b"&lt;img src=x onerror=alert(1)&gt;" in files
    summary = client.get(reverse("reports:job", args=[finished_job.pk])).content.decode()
    assert "Completed with errors" in summary and "Top errors" in summary
    assert "<svg" in summary and "Files by state as a table" in summary


def test_files_filters_and_csv_round_trip(finished_job, django_user_model):
    client = viewer(django_user_model, "ann", finished_job.customer)
    url = reverse("reports:job_report", args=[finished_job.pk, "files"])
    page = client.get(url, {"ext": "pdf"}).content.decode()
    assert "report.pdf" in page and "notes.txt" not in page
    page = client.get(url, {"state": "failed"}).content.decode()
    assert "notes.txt" in page and "report.pdf" not in page
    page = client.get(url, {"prefix": "docs/", "sort": "path"}).content.decode()
    assert "HYPERLINK" not in page
    assert "report.pdf" in page and "Thumbs.db" not in page

    response = client.get(url, {"format": "csv"})
    assert response["Content-Disposition"] == (
        f'attachment; filename="job-{finished_job.pk}-files.csv"'
    )
    rows = read_csv(response)
    assert rows[0][:3] == ["source_path", "dest_path", "kind"]
    hostile = next(r for r in rows if "HYPERLINK" in r[0])
    assert hostile[0] == "'" + HOSTILE  # neutralised; commas, quotes survive the reader
    by_source = {r[0]: r for r in rows[1:]}
    assert by_source["a:b.txt"][1] == "a_b.txt" and "forbidden_char" in by_source["a:b.txt"][10]
    assert by_source["Thumbs.db"][5] == "excluded" and by_source["Thumbs.db"][6] == "junk_file"


def test_errors_and_renames_reports(finished_job, django_user_model):
    client = viewer(django_user_model, "ann", finished_job.customer)
    errors = read_csv(
        client.get(
            reverse("reports:job_report", args=[finished_job.pk, "errors"]), {"format": "csv"}
        )
    )
    assert [r[0] for r in errors[1:]] == ["docs/notes.txt"]
    renames = read_csv(
        client.get(
            reverse("reports:job_report", args=[finished_job.pk, "renames"]), {"format": "csv"}
        )
    )
    assert {r[0] for r in renames[1:]} >= {"a:b.txt", "Thumbs.db"}
    events = read_csv(
        client.get(
            reverse("reports:job_report", args=[finished_job.pk, "events"]), {"format": "csv"}
        )
    )
    assert all("internal detail" not in r[2] for r in events[1:])
    summary = read_csv(
        client.get(reverse("reports:job", args=[finished_job.pk]), {"format": "csv"})
    )
    assert ["failed", "1"] in summary and ["state", "Completed with errors"] in summary


def test_another_customer_gets_404_for_every_report_and_csv(finished_job, django_user_model):
    other = Customer.objects.create(name="Globex")
    client = viewer(django_user_model, "bob", other)
    for report in REPORTS:
        url = reverse("reports:job_report", args=[finished_job.pk, report])
        assert client.get(url).status_code == 404
        assert client.get(url, {"format": "csv"}).status_code == 404
    assert (
        client.get(reverse("reports:job_report", args=[finished_job.pk, "nope"])).status_code == 404
    )


def migrator_report(job_id: int, report: str, *args: str) -> bytes:
    """What `manage.py migrator_report` writes to stdout, as bytes."""
    out = subprocess.run(
        [sys.executable, "manage.py", "migrator_report", str(job_id), "--report", report, *args],
        cwd=REPO, env=base_env(current_db_url()), capture_output=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def assert_cli_writes_the_web_csv(client: Client, job: MigrationJob, *, lists: bool) -> dict:
    """Every report of `job` (and, with `lists`, every list of each): the command's CSV is
    the staff's download, byte for byte. Returns {(report, list): rows} to look into."""
    found = {}
    for kind, report in REPORTS.items():
        for listing in ["", *(report.lists() if lists else ())]:
            params = {"format": "csv", **({"list": listing} if listing else {})}
            response = client.get(reverse("reports:job_report", args=[job.pk, kind]), params)
            assert response.status_code == 200, (kind, listing)
            web = b"".join(response.streaming_content)
            cli = migrator_report(job.pk, kind, *(["--list", listing] if listing else []))
            assert cli == web, (kind, listing)
            found[kind, listing] = list(csv.reader(io.StringIO(web.decode("utf-8"))))
    return found


def test_migrator_report_command_writes_the_same_csv(finished_job, admin_client):
    rows = assert_cli_writes_the_web_csv(admin_client, finished_job, lists=False)
    errors = rows["errors", ""]
    assert errors[0][0] == "source_path" and [r[0] for r in errors[1:]] == ["docs/notes.txt"]
    files = [r[0] for r in rows["files", ""][1:]]
    assert "Über café 日本.txt" in files and "'" + HOSTILE in files  # as UTF-8, neutralised
    assert {r[0] for r in rows["renames", ""][1:]} >= {"a:b.txt", "Thumbs.db"}
    assert ["state", "Completed with errors"] in rows["summary", ""]
    assert [r[0] for r in rows["passes", ""][1:]] == ["1"]
    assert any(r[2] == "internal detail" for r in rows["events", ""])  # staff: all events
    assert rows["assessment", ""][0] == ["group", "item", "value"]
    assert rows["permissions", ""] == [list(rows["permissions", ""][0])]  # no ACLs: header
    assert rows["permissions", ""][0][0] == "path"


def test_migrator_report_writes_the_web_csv_of_an_assessed_smb_job_with_permissions(
    samba_dc,
    acl_share,
    tmp_path,
    admin_client,
):
    """An SMB source with its ACLs: assessed (pass 1), then copied (pass 2), so every report
    and every list has rows; each is the same from the command and the page."""
    job = smb_job(samba_dc, acl_share, (tmp_path / "dst").as_uri(),
                  {"assess_only": True, "permissions": RULES})  # fmt: skip
    assert run_job(job).state == "assessed"
    MigrationJob.objects.filter(pk=job.pk).update(options={"permissions": RULES})
    job = run_job(job)
    assert job.state == "completed"

    rows = assert_cli_writes_the_web_csv(admin_client, job, lists=True)
    assert [r[0] for r in rows["passes", ""][1:]] == ["1", "2"]
    assert ["total", "files", "7"] in rows["assessment", ""]
    assert len(rows["assessment", "unmapped_identities"]) == 3  # the deleted user, the foreign
    assert len(rows["permissions", ""]) == 15  # header and the 14 items with an ACL
    assert len(rows["permissions", "issues"]) > 1 and len(rows["permissions", "summary"]) > 1


def test_assessment_page_lists_and_one_click_migration(tmp_path, django_user_model, client):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("CON.txt", "a:b.txt", "ok.txt", "sub/x.csv"):
        (src / name).write_text(name)
    customer = Customer.objects.create(name="Initech")
    s = services.endpoint_create(name="s", url=src.as_uri(), customer=customer)
    d = services.endpoint_create(name="d", url=(tmp_path / "dst").as_uri(), customer=customer)
    job = services.job_create(
        customer=customer,
        name="Initech (assessment)",
        source=s,
        destination=d,
        options={"profile": "windows", "assess_only": True},
    )
    with Steps() as steps:
        services.job_start(job=job)
        steps.run()
    job.refresh_from_db()
    assert job.state == "assessed"
    staff = django_user_model.objects.create_superuser("eng", "e@example.test", "A-long-pass-9")
    client.force_login(staff)
    page = client.get(reverse("reports:job_report", args=[job.pk, "assessment"])).content.decode()
    assert "reserved_name" in page and "forbidden_char" in page and "Files by size" in page
    rows = read_csv(
        client.get(
            reverse("reports:job_report", args=[job.pk, "assessment"]),
            {"format": "csv", "list": "renames"},
        )
    )
    assert ["reserved_name", "CON.txt", "CON_.txt"] in [r[:3] for r in rows] or any(
        r[0] == "reserved_name" and r[1] == "CON.txt" for r in rows
    )
    response = client.post(reverse("admin:jobs_migrationjob_from_assessment", args=[job.pk]))
    assert response.status_code == 302
    created = MigrationJob.objects.exclude(pk=job.pk).get()
    assert created.options == {"profile": "windows"} and created.state == "draft"
    assert created.name == "Initech (migration)"


def test_viewer_accepts_a_finished_migration_and_staff_see_it(
    finished_job, django_user_model, client
):
    ann = viewer(django_user_model, "ann", finished_job.customer)
    summary = ann.get(reverse("reports:job", args=[finished_job.pk])).content.decode()
    assert "Accept this migration" in summary
    response = ann.post(reverse("reports:job_accept", args=[finished_job.pk]), {"note": "ok"})
    assert response.status_code == 302
    again = ann.post(reverse("reports:job_accept", args=[finished_job.pk]), follow=True)
    assert "already accepted" in again.content.decode()
    page = ann.get(reverse("reports:job_completion", args=[finished_job.pk])).content.decode()
    assert "Accepted by <strong>ann</strong>" in page and "Files seen" in page

    staff = django_user_model.objects.create_superuser("eng", "e@example.test", "A-long-pass-9")
    client.force_login(staff)
    admin_page = client.get(reverse("admin:jobs_migrationjob_change", args=[finished_job.pk]))
    assert "accepted by the customer" in admin_page.content.decode().lower()
    assert ">ann at " in admin_page.content.decode()
    assert client.post(reverse("reports:job_accept", args=[finished_job.pk])).status_code == 404

    outsider = viewer(django_user_model, "zed", Customer.objects.create(name="Other"))
    assert outsider.post(reverse("reports:job_accept", args=[finished_job.pk])).status_code == 404
    url = reverse("reports:job_completion", args=[finished_job.pk])
    assert outsider.get(url).status_code == 404


def test_search_by_path_across_visible_jobs_only(finished_job, django_user_model):
    ann = viewer(django_user_model, "ann", finished_job.customer)
    page = ann.get(reverse("reports:search"), {"q": "docs/rep"}).content.decode()
    assert "docs/report.pdf" in page and "Acme file server" in page
    outsider = viewer(django_user_model, "zed", Customer.objects.create(name="Other"))
    page = outsider.get(reverse("reports:search"), {"q": "docs/"}).content.decode()
    assert "report.pdf" not in page and "no path starts with" in page


def test_search_by_name_in_any_case_anywhere_in_visible_jobs_only(finished_job, django_user_model):
    ann = viewer(django_user_model, "ann", finished_job.customer)
    page = ann.get(reverse("reports:search"), {"q": "REPORT"}).content.decode()
    assert "docs/report.pdf" in page and "Acme file server" in page
    page = ann.get(reverse("reports:search"), {"q": "docs"}).content.decode()
    assert page.count('prefix=docs"') == 1  # the folder, found by name and by path: once
    assert 'prefix=docs/notes.txt"' in page  # and what is in it, by path
    outsider = viewer(django_user_model, "zed", Customer.objects.create(name="Other"))
    page = outsider.get(reverse("reports:search"), {"q": "report"}).content.decode()
    assert "report.pdf" not in page and "No file or folder name" in page


def test_a_lost_connection_names_its_host_to_staff_only(tmp_path, django_user_model, settings,
                                                        monkeypatch):  # fmt: skip
    """A destination that drops the connection for one file: staff read the host in the
    file's message, the events and the CSV; the customer reads the reason in words."""
    from migrator.storage import Transient
    from migrator.storage.local import LocalConnector

    settings.MIGRATOR_RETRY_ATTEMPTS = 1
    settings.MIGRATOR_BATCH_ATTEMPTS = 1  # fail it now, not after later tries of its batch
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "lost.txt").write_text("lost")
    (src / "docs" / "kept.txt").write_text("kept")
    write = LocalConnector.write

    def dropping(self, path, stream, entry):
        if path.endswith("lost.txt"):
            raise Transient(path, "connection to nas01.corp.example:445 lost: reset by peer")
        return write(self, path, stream, entry)

    monkeypatch.setattr(LocalConnector, "write", dropping)
    customer = Customer.objects.create(name="Acme Corp")
    s = services.endpoint_create(name="s", url=src.as_uri(), customer=customer)
    d = services.endpoint_create(name="d", url=dst.as_uri(), customer=customer)
    job = services.job_create(customer=customer, name="NAS", source=s, destination=d)
    with Steps() as steps:
        services.job_start(job=job)
        steps.run()
    customer_view = viewer(django_user_model, "ann", customer)
    staff = Client()
    staff.force_login(django_user_model.objects.create_superuser("eng", "e@x.test", "pw-9-long"))
    pages = {
        who: "".join(
            client.get(
                reverse("reports:job_report", args=[job.pk, report]), params
            ).content.decode()
            if not params
            else b"".join(
                client.get(
                    reverse("reports:job_report", args=[job.pk, report]), params
                ).streaming_content
            ).decode()
            for report, params in [
                ("files", {}),
                ("errors", {}),
                ("events", {}),
                ("files", {"format": "csv"}),
                ("events", {"format": "csv"}),
            ]
        )  # fmt: skip
        for who, client in (("customer", customer_view), ("staff", staff))
    }
    assert "nas01.corp.example" in pages["staff"]
    assert "nas01.corp.example" not in pages["customer"]
    assert "Destination unavailable (after retries)" in pages["customer"]
    assert "lost.txt" in pages["customer"]  # the file itself is reported, with its reason
