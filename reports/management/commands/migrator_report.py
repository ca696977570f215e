"""A job's report as CSV on stdout, for scripts: the same rows as the pages' downloads."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from jobs.models import MigrationJob
from migrator.web.csv import write_csv
from reports.registry import REPORTS, ReportQuery
from reports.selectors import report_pass
from reports.tables import Filters


class Command(BaseCommand):
    help = "Write a job's report as CSV to stdout."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id", type=int)
        parser.add_argument("--report", choices=list(REPORTS), default="summary")
        parser.add_argument("--pass", dest="pass_number", type=int, default=None)
        parser.add_argument(
            "--list", default="", help="a list of the report: renames (assessment), issues…"
        )

    def handle(self, *args, **opts) -> None:
        job = MigrationJob.objects.filter(pk=opts["job_id"]).select_related("customer").first()
        if job is None:
            raise CommandError(f"no job {opts['job_id']}")
        number = str(opts["pass_number"] or "")
        job_pass = report_pass(job=job, number=number)
        if number and job_pass is None:
            raise CommandError(f"job {job.pk} has no pass {number}")
        report = REPORTS[opts["report"]]
        query = ReportQuery(job=job, job_pass=job_pass, filters=Filters(), staff=True,
                            listing=opts["list"])  # fmt: skip
        try:
            csv = report.csv(query)
        except KeyError:
            lists = ", ".join(report.lists()) or "it has none"
            raise CommandError(f"unknown list {opts['list']!r} of that report: {lists}")
        write_csv(sys.stdout, csv.header, csv.rows())
