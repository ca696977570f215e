"""The slow verification of a pass's accounting: its counters against the manifest itself
(one GROUP BY over every row of the pass) and against the sums its units of work kept
(what the pass-end check compares, jobs.selectors.pass_tallies)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from jobs.models import Pass
from jobs.selectors import accounting_mismatch


class Command(BaseCommand):
    help = "Check a pass's counters against its manifest rows (slow: reads every row)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("pass_ids", nargs="+", type=int, metavar="PASS_ID")

    def handle(self, *args, pass_ids: list[int], **options) -> None:
        failed = 0
        for pass_id in pass_ids:
            job_pass = Pass.objects.filter(pk=pass_id).first()
            if job_pass is None:
                raise CommandError(f"No pass {pass_id}.")
            for label, full in (("manifest", True), ("units of work", False)):
                mismatch = accounting_mismatch(job_pass=job_pass, full=full)
                if mismatch:
                    failed += 1
                    self.stdout.write(
                        f"pass {pass_id}: accounting check failed against the {label} "
                        f"(counter, counted): {mismatch}"
                    )
                else:
                    self.stdout.write(f"pass {pass_id}: counters agree with the {label}")
        if failed:
            raise CommandError(f"{failed} check(s) failed.")
