"""Loaded once by the server process that forks migrator_run's copy processes
(jobs.inline): Django set up before the fork, so no child pays for it."""

import django

django.setup()

from jobs import tasks  # noqa: E402,F401 - the task modules, loaded once too
