"""{% window_waiting job %}: "waiting for window until …" while a running job is outside
its transfer window, else "" (one query, for running jobs only)."""

from django import template

from jobs import windows
from jobs.choices import JOB_RUNNING

register = template.Library()


@register.simple_tag
def window_waiting(job) -> str:
    if job is None or job.state not in JOB_RUNNING:
        return ""
    return windows.job_waiting(job=job)
