"""Settings for the test suite: the development defaults, nothing else."""

import os

os.environ.setdefault("MIGRATOR_DEV", "1")

from .settings import *  # noqa: E402,F403
