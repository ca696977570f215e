"""A job's options (its `options` JSON and the destination kind) turned into the engine's
objects: the name sanitizer, the exclusion filters, the permission options. Each raises
ValueError in words for values a job could not run with."""

from __future__ import annotations

from migrator.engine.filters import Filters
from migrator.engine.permissions import PermissionOptions
from migrator.sanitize import Sanitizer

from .models import MigrationJob

PERMISSIONS = "permissions"


def sanitizer_for(job: MigrationJob) -> Sanitizer:
    """The job's sanitization: its profile (default from the destination kind) and options,
    always with the destination's hard limits."""
    return Sanitizer.from_options(job.destination.kind, job.options)


def filters_for(job: MigrationJob) -> Filters:
    return Filters.from_dict((job.options or {}).get("filters"))


def permission_options(job: MigrationJob) -> PermissionOptions | None:
    """None when the job does not migrate permissions."""
    return PermissionOptions.parse((job.options or {}).get(PERMISSIONS))


def options_check(options: dict) -> None:
    """Raise ValueError, in words, for permissions options a job could not run with."""
    PermissionOptions.parse(options.get(PERMISSIONS))
