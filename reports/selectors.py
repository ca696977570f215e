"""Reads of the reports app: the pass a report is of, the customer's sign-off, and the
numbers the summary's charts draw (progress over time, throughput, files by state)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobs.models import MigrationJob, Pass, ProgressSample
from migrator.web.query import query_int

from .models import SignOff

CHART_SAMPLES = 2000  # a chart's worth of points; a long pass is drawn from its first ones


def report_pass(*, job: MigrationJob, number: str = "") -> Pass | None:
    """The pass numbered `number` (digits from the query), else the job's current pass."""
    if number.isdigit():  # a number past every pass names none (query_int gives None: 0)
        return Pass.objects.filter(job=job, number=query_int(number) or 0).first()
    if job.current_pass_id:
        return Pass.objects.filter(pk=job.current_pass_id).first()
    return None


def job_signoff(*, job: MigrationJob) -> SignOff | None:
    return SignOff.objects.filter(job=job).select_related("user").first()


@dataclass(frozen=True)
class Throughput:
    """A pass's progress over time: files and bytes done at each sample, and the files per
    second between each two samples."""

    files_done: list[tuple[datetime, int]]
    bytes_done: list[tuple[datetime, int]]
    files_rate: list[tuple[datetime, float]]
    by_state: list[tuple[str, int]]


def pass_throughput(*, job_pass: Pass, limit: int = CHART_SAMPLES) -> Throughput:
    samples = list(
        ProgressSample.objects.filter(job_pass=job_pass)
        .order_by("id")
        .values_list("at", "files_done", "bytes_done")[:limit]
    )
    rates = [
        (b[0], (b[1] - a[1]) / max((b[0] - a[0]).total_seconds(), 1e-3))
        for a, b in zip(samples, samples[1:], strict=False)
    ]
    return Throughput(
        files_done=[(at, files) for at, files, _bytes in samples],
        bytes_done=[(at, size) for at, _files, size in samples],
        files_rate=rates,
        by_state=[
            (state, getattr(job_pass, state))
            for state in ("copied", "unchanged", "excluded", "failed", "pending")
        ],
    )
