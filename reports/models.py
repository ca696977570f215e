from django.conf import settings
from django.db import models

from jobs.models import MigrationJob


class SignOff(models.Model):
    """A customer viewer accepts a finished migration: who and when, shown to staff and
    printed on the completion report."""

    job = models.OneToOneField(MigrationJob, on_delete=models.CASCADE, related_name="signoff")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    accepted_at = models.DateTimeField(auto_now_add=True)
    job_state = models.CharField(max_length=24)
    note = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.job} accepted by {self.user} at {self.accepted_at:%Y-%m-%d %H:%M}"
