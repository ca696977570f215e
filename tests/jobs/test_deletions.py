"""Deleted at source, through real passes: a catch-up pass hands what has no source entry
to jobs.deletions, and the job's policy keeps it (default), deletes it (mirror: the
destination then equals the source, by an independent walk of both trees, local and in
the GCS emulator) or moves it to `.migrator-trash/<pass>/`; over the safety cap nothing
is deleted until staff confirm (admin, API) or skip."""

from __future__ import annotations

import csv
import io
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.choices import MembershipSource
from accounts.models import Customer, Membership
from jobs import deletions, selectors, services
from jobs.choices import JobState
from jobs.models import Deletion, Event, MigrationJob, Pass
from migrator.engine.deletes import Gone

from .conftest import make_tree
from .factories import Steps, agent_side, new_job, run_job, viewer

pytestmark = pytest.mark.django_db(transaction=True)


def walked(root: Path) -> set[str]:
    """Every file and folder under `root`, by os.walk (not by our connectors)."""
    found = set()
    for here, dirs, files in os.walk(root):
        rel = os.path.relpath(here, root)
        for name in dirs + files:
            found.add(name if rel == "." else f"{rel}/{name}")
    return found


def last_pass(job: MigrationJob) -> Pass:
    return Pass.objects.filter(job=job).order_by("-number").first()


def actions(p: Pass) -> dict[str, tuple[str, str]]:
    return {d.dest_path: (d.action, d.reason) for d in Deletion.objects.filter(job_pass=p)}


def accounted(p: Pass) -> bool:
    return p.seen == p.copied + p.unchanged + p.excluded + p.failed + p.pending


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    """A source of 20 files in 4 nested folders, a destination beside it, and a file
    outside both that nothing may touch."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, files=20)
    dst.mkdir()
    (tmp_path / "outside.txt").write_bytes(b"never touched")
    return src, dst


def delete_at_source(src: Path) -> list[str]:
    """Remove the deepest folder (with its files) and one more file; the files removed."""
    deepest = src / "d0" / "d1" / "d2" / "d3"
    gone = sorted(p.relative_to(src).as_posix() for p in deepest.rglob("*") if p.is_file())
    for path in deepest.rglob("*"):
        path.unlink()
    deepest.rmdir()
    (src / "d0" / "file-008.dat").unlink()
    return [*gone, "d0/file-008.dat"]


def test_mirror_leaves_the_destination_equal_to_the_source_locally(trees, tmp_path):
    src, dst = trees
    job = run_job(new_job(src.as_uri(), dst.as_uri(), options={"deletes": "mirror",
                                                               "max_delete": "50%"}))  # fmt: skip
    assert job.state == JobState.COMPLETED
    gone = delete_at_source(src)
    (dst / "d0" / "extra.txt").write_bytes(b"put there by someone else")

    job = run_job(job)

    p = last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    assert walked(dst) == walked(src)
    assert (tmp_path / "outside.txt").read_bytes() == b"never touched"
    got = actions(p)
    assert {path for path, (action, _) in got.items() if action == "deleted"} == {
        *gone,
        "d0/extra.txt",
        "d0/d1/d2/d3",
    }
    # ours: the files and their folder; done: the files, the extra one too
    assert (p.deleted_at_source, p.deletes_done, p.deletes_failed) == (len(gone) + 1,) * 2 + (0,)
    assert p.deletes_state == "done" and accounted(p)
    summary = selectors.job_summary(job=job)
    assert (summary["deleted_at_source"], summary["deletes_done"]) == (len(gone) + 1,) * 2
    assert summary["deletions"] == {"deleted": len(gone) + 2}


@pytest.mark.parametrize("policy", ["mirror", "trash"])
def test_into_the_gcs_emulator_the_bucket_ends_equal_to_the_source(tmp_path, gcs_server, policy):
    bucket = gcs_server.make_bucket()
    src = tmp_path / "src"
    made = make_tree(src, files=12, folders=3)
    client = gcs_server.client()
    client.bucket(bucket).blob("beside/other.txt").upload_from_string(b"outside the prefix")
    url = f"gs://{bucket}/in"
    job = run_job(new_job(src.as_uri(), url, options={"profile": "posix", "deletes": policy,
                                                      "max_delete": 10}))  # fmt: skip
    assert job.state == JobState.COMPLETED
    gone = sorted(p.relative_to(src).as_posix() for p in (src / "d0/d1/d2").rglob("*"))
    for path in gone:
        (src / path).unlink()
    (src / "d0" / "d1" / "d2").rmdir()
    client.bucket(bucket).blob("in/d0/extra.txt").upload_from_string(b"not ours")

    job = run_job(job)

    assert job.state == JobState.COMPLETED, job.error
    files_at_source = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    # listed with google-cloud-storage itself, not through our connector
    listed = {b.name for b in client.list_blobs(bucket)}
    expected = {f"in/{path}" for path in files_at_source} | {"beside/other.txt"}
    if policy == "trash":
        trash = {f"in/.migrator-trash/2/{path}" for path in [*gone, "d0/extra.txt"]}
        expected |= trash
        blob = client.bucket(bucket).blob(f"in/.migrator-trash/2/{gone[0]}")
        assert blob.download_as_bytes() == made[gone[0]]
    assert listed == expected
    assert last_pass(job).deletes_done == len(gone) + 1  # d0/d1/d2's files and the extra


def test_trash_moves_what_is_gone_under_the_pass_number_and_nothing_else(trees):
    src, dst = trees
    job = run_job(new_job(src.as_uri(), dst.as_uri(), options={"deletes": "trash",
                                                               "max_delete": 10}))  # fmt: skip
    before = {path: (dst / path).read_bytes() for path in walked(dst) if (dst / path).is_file()}
    gone = delete_at_source(src)

    job = run_job(job)

    p = last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    trash = f".migrator-trash/{p.number}"
    expected = walked(src) | {".migrator-trash", trash}
    expected |= {f"{trash}/{path}" for path in gone}
    expected |= {f"{trash}/d0", f"{trash}/d0/d1", f"{trash}/d0/d1/d2", f"{trash}/d0/d1/d2/d3"}
    assert walked(dst) == expected
    for path in gone:
        assert (dst / trash / path).read_bytes() == before[path]
    rows = {d.dest_path: d for d in Deletion.objects.filter(job_pass=p)}
    assert {rows[path].trash_path for path in gone} == {f"{trash}/{path}" for path in gone}
    assert {d.action for d in rows.values()} == {"trashed"}

    # the next pass leaves the trash alone (it is no source's, and not gone from it)
    job = run_job(job)
    assert job.state == JobState.COMPLETED, job.error
    assert walked(dst) == expected
    assert not Deletion.objects.filter(job_pass=last_pass(job)).exists()


def test_keep_records_what_we_wrote_and_touches_nothing(trees, django_user_model):
    src, dst = trees
    job = run_job(new_job(src.as_uri(), dst.as_uri()))  # keep is the default
    gone = delete_at_source(src)
    (dst / "extra.txt").write_bytes(b"not ours")
    before = walked(dst)

    job = run_job(job)

    p = last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    assert walked(dst) == before
    got = actions(p)
    assert set(gone) <= set(got)
    assert "extra.txt" not in got  # never written by us: neither touched nor recorded
    assert {action for action, _ in got.values()} == {"kept"}
    assert p.deleted_at_source == len(got) and p.deletes_done == 0
    assert Event.objects.filter(
        job=job, message=f"Pass 2: {len(got)} object(s) deleted at the source were kept at the "
        "destination (deletions policy: keep).",
    ).exists()  # fmt: skip

    # the customer's Deletions report and CSV list them; another customer gets a 404
    customer = viewer(django_user_model, "ann", job.customer)
    url = reverse("reports:job_report", args=[job.pk, "deletions"])
    page = customer.get(url).content.decode()
    assert "d0/file-008.dat" in page and "Deleted at source, kept at the destination" in page
    rows = list(csv.reader(io.StringIO(b"".join(customer.get(url + "?format=csv")
                                                .streaming_content).decode())))  # fmt: skip
    assert rows[0][:1] == ["path"] and rows[0][-3:] == ["reason", "message", "trash_path"]
    assert {(r[0], r[5]) for r in rows[1:]} == {(path, "kept") for path in got}
    other = Customer.objects.create(name="Other Co")
    stranger = django_user_model.objects.create_user("bob")  # no password to hash
    Membership.objects.create(user=stranger, customer=other, source=MembershipSource.MANUAL)
    client = Client()
    client.force_login(stranger)
    assert client.get(url).status_code == 404
    assert client.get(url + "?format=csv").status_code == 404


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("eng", "eng@example.test", "pw-Very-long-1")
    client.force_login(user)
    return client


def over_the_cap(trees) -> tuple[MigrationJob, list[str], set[str]]:
    """A mirror job whose second pass would delete 5 of 20 files (cap 5 %: 1)."""
    src, dst = trees
    job = run_job(new_job(src.as_uri(), dst.as_uri(), options={"deletes": "mirror"}))
    gone = delete_at_source(src)
    before = walked(dst)
    job = run_job(job)
    return job, gone, before


def test_over_the_cap_nothing_is_deleted_until_staff_confirm_in_the_admin(
    trees, staff, django_user_model
):
    src, dst = trees
    job, gone, before = over_the_cap(trees)

    p = last_pass(job)
    assert job.state not in (JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS)
    assert p.state == "running" and p.deletes_state == "awaiting_confirmation"
    assert walked(dst) == before  # nothing deleted
    assert Event.objects.filter(
        job=job, message=f"Pass 2 would delete {len(gone)} files (cap 1). "
        "Confirm in the admin or skip."
    ).exists()  # fmt: skip
    assert selectors.job_progress(job=job)["waiting"] == (
        f"waiting for confirmation of {len(gone)} deletions"
    )
    live = staff.get(reverse("admin:jobs_migrationjob_live", args=[job.pk])).content.decode()
    assert f"Waiting for confirmation of {len(gone)} deletions" in live
    customer = django_user_model.objects.create_user("ann")  # no password to hash
    Membership.objects.create(user=customer, customer=job.customer,
                              source=MembershipSource.MANUAL)  # fmt: skip
    portal = Client()
    portal.force_login(customer)
    card = portal.get(reverse("reports:job_live", args=[job.pk])).content.decode()
    assert f"Waiting for confirmation of {len(gone)} deletions" in card

    changelist = reverse("admin:jobs_migrationjob_changelist")
    with Steps() as steps:
        page = staff.post(changelist, {"action": "action_confirm_deletions",
                                       "_selected_action": [job.pk]}, follow=True)  # fmt: skip
        assert "deletion(s) confirmed" in page.content.decode()
        steps.run()

    job.refresh_from_db()
    p.refresh_from_db()
    assert job.state == JobState.COMPLETED, job.error
    assert p.state == "done" and p.deletes_state == "done"
    assert walked(dst) == walked(src)
    assert selectors.job_progress(job=job)["waiting"] == ""
    confirmed = f"Deletion of {len(gone)} files confirmed by eng."
    assert Event.objects.filter(job=job, message=confirmed, staff_only=True).exists()


def test_over_the_cap_skip_through_the_api_completes_without_deleting(trees, staff):
    src, dst = trees
    job, gone, before = over_the_cap(trees)

    with Steps() as steps:
        answer = staff.post(f"/api/v1/jobs/{job.pk}/deletions/skip/")
        assert answer.status_code == 200, answer.content
        steps.run()
        again = staff.post(f"/api/v1/jobs/{job.pk}/deletions/confirm/")
        assert again.status_code == 409
        assert "no deletions waiting for confirmation" in again.json()["detail"]

    job.refresh_from_db()
    p = last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    assert walked(dst) == before
    skipped = {path: a for path, a in actions(p).items() if path in gone}
    assert set(skipped.values()) == {("kept", "skipped")}
    assert p.deletes_state == "skipped" and p.deletes_done == 0


def test_gone_record_is_idempotent_per_pass_and_path(trees):
    src, dst = trees
    job = new_job(src.as_uri(), dst.as_uri(), options={"deletes": "trash"})
    p = Pass.objects.create(job=job, number=1)
    items = [Gone("a.txt", "file", 3, "a.txt", ours=True), Gone("b", "dir"),
             Gone(".migrator-trash/1/x.txt", "file")]  # fmt: skip

    deletions.gone_record(job_pass=p, items=items)
    deletions.gone_record(job_pass=p, items=items)  # the check run again after a crash

    p.refresh_from_db()
    assert actions(p) == {"a.txt": ("pending", ""), "b": ("pending", "")}
    assert p.deleted_at_source == 1


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"deletes": "purge"}, "Unknown deletes policy “purge”"),
        ({"max_delete": "lots"}, "max_delete “lots” is not a percentage"),
        ({"max_delete": "150%"}, "max_delete “150%” is not a percentage"),
        ({"max_delete": -3}, "max_delete “-3” is not a percentage"),
    ],
)
def test_bad_deletion_options_are_refused_in_words(trees, options, words):
    src, dst = trees
    job = new_job(src.as_uri(), dst.as_uri())
    with pytest.raises(ValueError, match=words):
        services.job_options_check(options=options, destination=job.destination)
    services.job_options_check(options={"deletes": "mirror", "max_delete": "10%"},
                               destination=job.destination)  # fmt: skip
    services.job_options_check(options={"deletes": "trash", "max_delete": 250},
                               destination=job.destination)  # fmt: skip


def test_migrator_run_stops_over_the_cap_and_goes_on_when_run_with_a_cap_that_allows(trees, cli):
    src, dst = trees
    args = ("--source", str(src), "--destination", str(dst), "--json")
    assert cli.run(*args, "--deletes", "mirror").code == 0
    gone = delete_at_source(src)
    before = walked(dst)

    stopped = cli.run(*args)  # mirror is the job's now; the default cap is 5 %: 1 file

    assert stopped.code == 4, stopped.stderr
    assert f"waiting for confirmation of {len(gone)} deletions" in stopped.stderr
    assert stopped.json["waiting"] and stopped.json["deleted_at_source"] == len(gone) + 1
    assert walked(dst) == before
    refused = cli.run(*args, "--max-delete", "2")
    assert refused.code == 2 and f"--max-delete {len(gone)}" in refused.stderr

    done = cli.run(*args, "--max-delete", str(len(gone)))

    assert done.code == 0, done.stderr
    assert done.json["state"] == "completed" and done.json["deletes_done"] == len(gone)
    assert walked(dst) == walked(src)


def test_an_agent_job_records_deletions_and_says_they_were_not_applied(tmp_path):
    job, _agent, _token = agent_side("Remote Co", tmp_path)
    dst = tmp_path / "Remote Co-d"
    (dst / "old").mkdir(parents=True)
    (dst / "old" / "gone.txt").write_bytes(b"still here")
    MigrationJob.objects.filter(pk=job.pk).update(options={"deletes": "mirror"})
    job.refresh_from_db()
    p = Pass.objects.get(pk=job.current_pass_id)
    deletions.gone_record(job_pass=p, items=[Gone("old/gone.txt", "file", 10, "old/gone.txt",
                                                  ours=True)])  # fmt: skip
    Pass.objects.filter(pk=p.pk).update(scan_finished=True)

    with Steps() as steps:
        services.pass_finish(pass_id=p.pk)
        steps.run()

    job.refresh_from_db()
    assert job.state == JobState.COMPLETED
    assert (dst / "old" / "gone.txt").read_bytes() == b"still here"
    assert set(actions(p).values()) == {("kept", "not_applied_agent")}
    said = Event.objects.filter(job=job, level="warning").values_list("message", flat=True)
    assert any("were recorded but not deleted" in m and "agent" in m for m in said), list(said)


def test_confirmed_deletions_are_applied_by_one_worker_at_a_time(trees):
    src, dst = trees
    (dst / "gone.txt").write_bytes(b"gone at the source")
    job = new_job(src.as_uri(), dst.as_uri(), options={"deletes": "mirror"})
    p = Pass.objects.create(job=job, number=1, scan_finished=True)
    deletions.gone_record(job_pass=p, items=[Gone("gone.txt", "file", 18, "gone.txt", True)])
    later = timezone.now() + timedelta(minutes=5)
    Pass.objects.filter(pk=p.pk).update(
        deletes_state="confirmed", scan_lease_owner="deletions:other", scan_lease_expires=later
    )

    with Steps() as steps:
        deletions.deletions_apply(pass_id=p.pk)  # another worker holds them: nothing done
        assert (dst / "gone.txt").exists() and not steps.queue
        Pass.objects.filter(pk=p.pk).update(scan_lease_expires=timezone.now())  # it died
        deletions.deletions_apply(pass_id=p.pk)
        assert [func for func, _ in steps.queue] == ["jobs.tasks.finish_pass"]

    assert not (dst / "gone.txt").exists()
    p.refresh_from_db()
    assert (p.deletes_state, p.deletes_done, p.scan_lease_owner) == ("done", 1, "")


def test_files_excluded_at_the_source_since_the_last_pass_are_never_deleted(trees):
    src, dst = trees
    job = run_job(new_job(src.as_uri(), dst.as_uri(), options={"deletes": "mirror"}))
    before = walked(dst)
    MigrationJob.objects.filter(pk=job.pk).update(
        options={"deletes": "mirror", "filters": {"exclude": ["*.txt", "d3"]}}
    )

    job = run_job(job)

    p = last_pass(job)
    assert job.state == JobState.COMPLETED, job.error
    assert walked(dst) == before  # excluded now: no longer copied, and not deleted
    got = actions(p)
    assert got["d0/plain.txt"] == ("kept", "excluded")
    assert got["d0/d1/d2/d3/file-007.dat"] == ("kept", "excluded")  # under an excluded folder
    assert set(got.values()) == {("kept", "excluded")}
    assert (p.deleted_at_source, p.deletes_state) == (0, "")


def test_trash_on_an_smb_share_renames_on_the_share(tmp_path, samba_dc):
    src = tmp_path / "src"
    for rel in ("keep/a.txt", "old/inner/b.txt", "old/c.txt", "top.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(rel.encode())
    folder = samba_dc.make_folder("data")
    disk = samba_dc.disk_path("data", folder)
    customer = Customer.objects.create(name="Share Co")
    source = services.endpoint_create(name="s", url=src.as_uri(), customer=customer)
    destination = services.endpoint_create(
        name="d", url=samba_dc.smb_url("data", folder), customer=customer,
        secret=samba_dc.admin_password,
    )  # fmt: skip
    job = run_job(services.job_create(customer=customer, name="to the share", source=source,
                                      destination=destination,
                                      options={"deletes": "trash", "max_delete": 5}))  # fmt: skip
    assert job.state == JobState.COMPLETED, job.error
    for rel in ("old/inner/b.txt", "old/c.txt"):
        (src / rel).unlink()
    (src / "old" / "inner").rmdir()
    (src / "old").rmdir()

    job = run_job(job)

    assert job.state == JobState.COMPLETED, job.error
    # walked on the DC's own disk, not through SMB
    assert walked(disk) == walked(src) | {
        ".migrator-trash", ".migrator-trash/2", ".migrator-trash/2/old",
        ".migrator-trash/2/old/inner", ".migrator-trash/2/old/inner/b.txt",
        ".migrator-trash/2/old/c.txt",
    }  # fmt: skip
    assert (disk / ".migrator-trash/2/old/c.txt").read_bytes() == b"old/c.txt"
