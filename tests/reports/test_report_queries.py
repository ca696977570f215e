"""Every report page of a job costs the same queries over 20,000 manifest rows (and 2,000
events) as over 10: pinned with django_assert_num_queries, for staff and for the customer's
viewer. And the files report sorted by path walks an index in that order: the database's
plan for it holds no sort of the pass."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from jobs.models import Event, FileItem, MigrationJob
from reports import tables
from tests.jobs.factories import PassFactory, viewer

BIG, SMALL = 20_000, 10
HOSTILE = '<b>=cmd|"/c calc"!A1</b>.txt'


def fill(job_pass, files: int) -> None:
    """`files` manifest rows as a finished pass leaves them (a folder every 100 rows, a
    failure every 50, a rename every 40, an exclusion every 90), its counters, and one
    event per 10 rows, each inserted in bulk."""
    rows, counts = [], {"copied": 0, "failed": 0, "excluded": 0}
    for i in range(files):
        folder = f"share/d{i % 97:02d}"
        path = HOSTILE if i == 3 else f"{folder}/file-{i:06d}.dat"
        kind, state, reason, rules, renamed = "file", "copied", "", "", ""
        if i % 100 == 99:
            kind, path = "dir", f"{folder}/sub-{i:06d}"
        elif i % 50 == 7:
            state, reason = "failed", "access_denied"
        elif i % 90 == 11:
            state, reason = "excluded", "junk_file"
        elif i % 40 == 13:
            rules, renamed = "forbidden_char", path.replace("file", "fi:le")
        if kind == "file":
            counts[state] += 1
        rows.append(
            FileItem(
                job_id=job_pass.job_id,
                job_pass_id=job_pass.pk,
                kind=kind,
                source_path=path,
                dest_path=path,
                dest_key=path.casefold(),
                name_key=path.rpartition("/")[2].casefold(),
                size=1000 + i,
                state=state,
                reason=reason,
                rules=rules,
                renamed_from=renamed,
                message="denied" if reason == "access_denied" else "",
            )  # fmt: skip
        )
    FileItem.objects.bulk_create(rows, batch_size=5000)
    Event.objects.bulk_create(
        [Event(job_id=job_pass.job_id, message=f"event {i}", level="info" if i % 7 else "error")
         for i in range(max(3, files // 10))],
        batch_size=5000,
    )  # fmt: skip
    seen = sum(counts.values())
    job_pass.__class__.objects.filter(pk=job_pass.pk).update(
        seen=seen, **counts, folders_seen=files // 100, scan_finished=True, state="done",
        bytes_seen=seen * 1000, batches_total=files // 500 + 1,
    )  # fmt: skip
    MigrationJob.objects.filter(pk=job_pass.job_id).update(
        current_pass=job_pass, state="completed_with_errors"
    )


@pytest.fixture(scope="module")
def jobs(django_db_setup, django_db_blocker):
    """(big job, small job): 20,000 rows and 10 rows."""
    with django_db_blocker.unblock():
        big, small = PassFactory(), PassFactory()
        fill(big, BIG)
        fill(small, SMALL)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # the planner's statistics, as autovacuum has
                cursor.execute("ANALYZE jobs_fileitem")
        yield MigrationJob.objects.get(pk=big.job_id), MigrationJob.objects.get(pk=small.job_id)
        for p in (big, small):
            FileItem.objects.filter(job_pass=p).delete()
            p.job.delete()


def cursors(job: MigrationJob) -> dict[str, str]:
    """Cursors of a page in the middle of the pass, by id and by path."""
    rows = FileItem.objects.filter(job_pass_id=job.current_pass_id).order_by("id")
    middle = rows.values_list("id", "source_path")[rows.count() // 2]
    events = list(Event.objects.filter(job_id=job.pk).order_by("id").values_list("id", flat=True))
    return {"cursor": str(middle[0]), "path_cursor": f"{middle[1]}\x1f{middle[0]}",
            "event_cursor": str(events[len(events) // 2])}  # fmt: skip


def staff_pages(job: MigrationJob) -> list[tuple[str, str, dict]]:
    c = cursors(job)
    report = lambda name: reverse("reports:job_report", args=[job.pk, name])  # noqa: E731
    return [
        ("summary", reverse("reports:job", args=[job.pk]), {}),
        ("files", report("files"), {}),
        ("files page 2", report("files"), {"cursor": c["cursor"]}),
        ("files newest", report("files"), {"sort": "-id"}),
        ("files by path", report("files"), {"sort": "path"}),
        ("files by path page 2", report("files"), {"sort": "path", "cursor": c["path_cursor"]}),
        ("files failed", report("files"), {"state": "failed"}),
        ("files in a folder", report("files"), {"prefix": "share/d42/", "sort": "path"}),
        ("errors", report("errors"), {}),
        ("errors by path", report("errors"), {"sort": "path"}),
        ("renames", report("renames"), {}),
        ("events", report("events"), {}),
        ("events page 2", report("events"), {"cursor": c["event_cursor"]}),
        ("events errors", report("events"), {"level": "error"}),
        ("permissions", report("permissions"), {}),
        ("passes", report("passes"), {}),
        ("live", reverse("reports:job_live", args=[job.pk]), {}),
        ("completion", reverse("reports:job_completion", args=[job.pk]), {}),
        ("portal job", reverse("portal:job", args=[job.pk]), {}),
        ("admin manifest", reverse("admin:jobs_migrationjob_manifest", args=[job.pk]), {}),
        ("admin events", reverse("admin:jobs_migrationjob_events", args=[job.pk]), {}),
    ]


def count(client, url: str, params: dict) -> tuple[int, str]:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params)
    assert response.status_code == 200, (url, params, response.status_code)
    return len(ctx.captured_queries), response.content.decode()


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("eng", "eng@example.test", "pw-Very-long-1")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_every_staff_page_costs_the_same_queries_over_20000_rows_as_over_10(
    staff, jobs, django_assert_num_queries
):
    big, small = jobs
    for (label, small_url, params_small), (_l, big_url, params_big) in zip(
        staff_pages(small), staff_pages(big), strict=True
    ):
        count(staff, small_url, params_small)  # warm: the session, content types
        queries, _page = count(staff, small_url, params_small)
        with django_assert_num_queries(queries):
            response = staff.get(big_url, params_big)
        assert response.status_code == 200, label
        page = response.content.decode()
        # no count of the pass or the log (the failed rows' causes may be counted)
        counted = [q["sql"] for q in connection.queries[-queries:] if "COUNT(*)" in q["sql"]]
        assert not [sql for sql in counted if "jobs_event" in sql or (
            "jobs_fileitem" in sql and "'failed'" not in sql)], label  # fmt: skip
        if label == "files":  # the first 100 rows by id, and a way on
            assert "share/d00/file-000000.dat" in page and "file-000100.dat" not in page
            assert "Next page" in page
    # what the big job's pages show: rows, the next page, names escaped
    page = staff.get(reverse("reports:job_report", args=[big.pk, "files"])).content.decode()
    assert "&lt;b&gt;=cmd|&quot;/c calc&quot;!A1&lt;/b&gt;.txt" in page and "<b>=cmd" not in page


@pytest.mark.django_db
def test_the_customers_pages_cost_the_same_queries_over_20000_rows(
    jobs, django_user_model, django_assert_num_queries
):
    big, small = jobs
    pages = ("files", "errors", "renames", "events", "permissions", "summary")
    clients = {
        job.pk: viewer(django_user_model, f"viewer{job.pk}", job.customer) for job in (big, small)
    }
    for name in pages:
        small_url = reverse("reports:job_report", args=[small.pk, name])
        count(clients[small.pk], small_url, {})
        queries, _ = count(clients[small.pk], small_url, {})
        with django_assert_num_queries(queries):
            response = clients[big.pk].get(reverse("reports:job_report", args=[big.pk, name]))
        assert response.status_code == 200, name
    for url_of in (lambda job: reverse("portal:job", args=[job.pk]), lambda job: reverse(
            "portal:jobs")):  # fmt: skip
        count(clients[small.pk], url_of(small), {})
        queries, _ = count(clients[small.pk], url_of(small), {})
        with django_assert_num_queries(queries):
            page = clients[big.pk].get(url_of(big)).content.decode()
        assert big.name in page


@pytest.mark.django_db
def test_files_by_path_walk_an_index_in_path_order_and_pages_join_up(jobs):
    big, _small = jobs
    job_pass = big.current_pass
    c = cursors(big)
    qs = tables.by_path(tables.manifest(job_pass, "files", tables.Filters(sort="path")),
                        c["path_cursor"])[: tables.PAGE_SIZE + 1]  # fmt: skip
    plan_uses(qs, "item_pass_path")
    # the pages, followed cursor to cursor, are the pass in byte order of the path, once
    expected = sorted(
        FileItem.objects.filter(job_pass=job_pass).values_list("source_path", flat=True),
        key=lambda p: p.encode(),
    )
    rows, cursor = [], ""
    for _ in range(5):
        page_rows, cursor = tables.manifest_page(
            job_pass, "files", tables.Filters(sort="path"), cursor
        )
        rows += [r.source_path for r in page_rows]
    assert len(rows) == 5 * tables.PAGE_SIZE and rows == expected[: len(rows)]
    # and so is the CSV sorted by path, whole
    csv_rows = tables.manifest_rows(job_pass, "files", tables.Filters(sort="path"))
    assert [r[0] for r in csv_rows] == expected


def plan_uses(qs, index: str) -> str:
    """The plan of `qs`, asserted to walk `index` and sort nothing."""
    plan = qs.explain()
    assert index in plan, plan
    assert ("Sort" if connection.vendor == "postgresql" else "TEMP B-TREE") not in plan, plan
    return plan


@pytest.mark.django_db
def test_renames_and_permissions_pages_read_only_their_rows(jobs):
    """A pass that renames little and migrates no permissions: the renames and permissions
    reports walk partial indexes of just their rows, not the whole pass to find none."""
    from reports import permissions

    big, _small = jobs
    renames = tables.manifest(big.current_pass, "renames", tables.Filters()).order_by("id")
    plan_uses(renames[: tables.PAGE_SIZE + 1], "item_pass_renamed")
    acl = permissions._items(big.current_pass, False).order_by("id")
    plan_uses(acl[: tables.PAGE_SIZE + 1], "item_pass_acl")
    # and the renames report shows what it is for: renamed and excluded rows, no others
    rows, _cursor = tables.manifest_page(big.current_pass, "renames", tables.Filters())
    assert rows and all(r.rules or r.state == "excluded" for r in rows)
