"""A job's report as CSV on stdout, for scripts: the same rows as the pages' downloads."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from jobs.models import MigrationJob, Pass
from migrator.web.csv import write_csv
from reports import tables


class Command(BaseCommand):
    help = "Write a job's report as CSV to stdout."

    def add_arguments(self, parser) -> None:
        parser.add_argument("job_id", type=int)
        parser.add_argument("--report", choices=tables.REPORTS, default="summary")
        parser.add_argument("--pass", dest="pass_number", type=int, default=None)
        parser.add_argument("--list", default="", help="an assessment list, e.g. renames")

    def handle(self, *args, **opts) -> None:
        job = MigrationJob.objects.filter(pk=opts["job_id"]).select_related("customer").first()
        if job is None:
            raise CommandError(f"no job {opts['job_id']}")
        if opts["pass_number"]:
            job_pass = Pass.objects.filter(job=job, number=opts["pass_number"]).first()
            if job_pass is None:
                raise CommandError(f"job {job.pk} has no pass {opts['pass_number']}")
        else:
            job_pass = Pass.objects.filter(pk=job.current_pass_id).first()
        try:
            csv = tables.report_csv(job, opts["report"], tables.Filters(), staff=True,
                                    job_pass=job_pass, listing=opts["list"])  # fmt: skip
        except KeyError:
            raise CommandError(
                f"unknown list {opts['list']!r}: {', '.join(tables.ASSESSMENT_LISTS)}"
            )
        write_csv(sys.stdout, csv.header, csv.rows())
