"""Writes of the reports app: the customer's sign-off of a finished migration."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from jobs.choices import JobState
from jobs.models import MigrationJob
from jobs.services import event_add

from .models import SignOff

ACCEPTABLE = (JobState.COMPLETED, JobState.COMPLETED_WITH_ERRORS)


class SignOffError(Exception):
    pass


def job_sign_off(*, job: MigrationJob, user, note: str = "") -> SignOff:
    if job.state not in ACCEPTABLE:
        raise SignOffError("Only a finished migration can be accepted.")
    try:
        with transaction.atomic():
            signoff = SignOff.objects.create(job=job, user=user, job_state=job.state, note=note)
            event_add(job_id=job.pk, message=f"Accepted by {user.get_username()}.")
    except IntegrityError:
        raise SignOffError("This migration was already accepted.")
    return signoff
