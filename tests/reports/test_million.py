"""A job with 1,000,000 manifest rows (made with bulk_create): pages cost the same queries
as over 10 rows, and its CSV streams in flat memory."""

from __future__ import annotations

import csv
import io
import tracemalloc

import pytest
from django.db import connection
from django.urls import reverse

from jobs.models import FileItem
from tests.jobs.factories import PassFactory

MILLION = 1_000_000
# making a million rows with bulk_create takes minutes on a busy 2-core machine
pytestmark = pytest.mark.timeout(1500)
HOSTILE = '=cmd|"/c calc"!A1, "quoted"\nnew line.txt'


def make_rows(job_pass, count: int) -> None:
    batch = []
    for i in range(count):
        name = HOSTILE if i == 7 else f"folder{i % 1000:03d}/file{i:07d}.dat"
        batch.append(
            FileItem(
                job_id=job_pass.job_id,
                job_pass_id=job_pass.pk,
                source_path=name,
                dest_path=name,
                name_key=name.rpartition("/")[2].casefold(),  # as the scan writes it
                size=i,
                state="copied" if i % 10 else "failed",
                reason="" if i % 10 else "access_denied",
            )  # fmt: skip
        )
        if len(batch) == 20_000:
            FileItem.objects.bulk_create(batch)
            batch = []
    FileItem.objects.bulk_create(batch)


@pytest.fixture(scope="module")
def big_and_small(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        big, small = PassFactory(), PassFactory()
        for p in (big, small):
            p.job.current_pass = p
            p.job.save()
        make_rows(big, MILLION)
        make_rows(small, 10)
        yield big, small
        for p in (big, small):
            FileItem.objects.filter(job_pass=p).delete()
            p.job.delete()


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("eng", "eng@example.test", "pw-Very-long-1")
    client.force_login(user)
    return client


def count_queries(staff, url, params) -> int:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = staff.get(url, params)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"state": "failed"},
        {"reason": "access_denied"},
        {"prefix": "folder123/"},
        {"after": "500000"},
    ],  # fmt: skip
)
def test_manifest_page_costs_the_same_queries_over_a_million_rows(
    staff, big_and_small, django_assert_num_queries, params
):
    big, small = big_and_small
    small_queries = count_queries(
        staff, reverse("admin:jobs_migrationjob_manifest", args=[small.job_id]), params
    )
    with django_assert_num_queries(small_queries):
        response = staff.get(reverse("admin:jobs_migrationjob_manifest", args=[big.job_id]), params)
    page = response.content.decode()
    assert "Next page" in page  # a million rows: there is always a next page
    assert "COUNT(" not in " ".join(q["sql"] for q in connection.queries)


@pytest.mark.django_db
def test_hostile_name_is_escaped_on_the_page(staff, big_and_small):
    _big, small = big_and_small
    page = staff.get(reverse("admin:jobs_migrationjob_manifest", args=[small.job_id])).content
    assert b"=cmd|&quot;/c calc&quot;!A1, &quot;quoted&quot;" in page


@pytest.mark.django_db
def test_million_row_csv_streams_in_flat_memory_and_round_trips(staff, big_and_small):
    big, _small = big_and_small
    response = staff.get(reverse("admin:jobs_migrationjob_manifest_csv", args=[big.job_id]))
    assert response.streaming
    assert (
        response["Content-Disposition"]
        == f'attachment; filename="job-{big.job_id}-pass-1-files.csv"'
    )
    tracemalloc.start()
    rows = 0
    peak_early = 0
    hostile = None
    buffer = io.StringIO()
    for chunk in response.streaming_content:
        rows += chunk.count(b"\n")
        if rows < 5000:
            buffer.write(chunk.decode())
        if rows >= 100_000 and not peak_early:
            peak_early = tracemalloc.get_traced_memory()[1]
    peak_total = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert rows >= MILLION + 1
    # flat: reading 1,000,000 rows needs no more memory than reading the first 100,000
    assert peak_total < peak_early * 1.5 + 2_000_000, (peak_early, peak_total)
    assert peak_total < 50_000_000
    parsed = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert parsed[0][:3] == ["id", "kind", "source_path"]
    hostile = next(r for r in parsed[1:] if "calc" in r[2])
    assert hostile[2] == "'" + HOSTILE  # neutralised, and commas/quotes/newline round-trip


@pytest.mark.django_db
@pytest.mark.parametrize(
    "report,params",
    [
        ("summary", {}),
        ("files", {}),
        ("files", {"sort": "path"}),
        ("files", {"ext": "dat"}),
        ("files", {"prefix": "folder500/"}),
        ("errors", {}),
        ("renames", {}),
        ("passes", {}),
        ("events", {}),
        ("files", {"sort": "-id"}),
    ],  # fmt: skip
)
def test_report_pages_cost_the_same_queries_over_a_million_rows(
    staff, big_and_small, django_assert_num_queries, report, params
):
    big, small = big_and_small
    small_queries = count_queries(
        staff, reverse("reports:job_report", args=[small.job_id, report]), params
    )
    with django_assert_num_queries(small_queries):
        response = staff.get(reverse("reports:job_report", args=[big.job_id, report]), params)
    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "few,many",
    [
        ("folder000/file000000", "folder123/file0000123"),  # a path prefix
        ("FILE0000003", "FILE0000123"),  # a name, in another case
    ],  # fmt: skip
)
def test_search_costs_the_same_queries_over_a_million_rows(
    staff, big_and_small, django_assert_num_queries, few, many
):
    url = reverse("reports:search")
    small_queries = count_queries(staff, url, {"q": few})
    with django_assert_num_queries(small_queries):
        page = staff.get(url, {"q": many}).content.decode()
    assert "folder123/file0000123.dat" in page


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["portal:job", "admin:jobs_migrationjob_change"])
def test_pages_with_failures_by_cause_cost_the_same_queries_over_a_million_rows(
    staff, big_and_small, django_assert_num_queries, page
):
    """The groups stream the failed rows in one query (100,000 of them here, in more
    causes than the cap), whatever their number."""
    big, small = big_and_small
    count_queries(staff, reverse(page, args=[small.job_id]), {})  # the first fills caches
    small_queries = count_queries(staff, reverse(page, args=[small.job_id]), {})
    with django_assert_num_queries(small_queries):
        response = staff.get(reverse(page, args=[big.job_id]))
    assert "Other causes" in response.content.decode()
