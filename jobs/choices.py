"""States and reason codes, defined once, each with a label and a colour."""

from django.db import models


class JobState(models.TextChoices):
    DRAFT = "draft", "Draft"
    QUEUED = "queued", "Queued"
    SCANNING = "scanning", "Scanning"
    ASSESSING = "assessing", "Assessing"
    COPYING = "copying", "Copying"
    VERIFYING = "verifying", "Verifying"
    PAUSED = "paused", "Paused"
    ASSESSED = "assessed", "Assessed"
    COMPLETED = "completed", "Completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


JOB_ACTIVE = (
    JobState.QUEUED,
    JobState.SCANNING,
    JobState.ASSESSING,
    JobState.COPYING,
    JobState.VERIFYING,
)
JOB_RUNNING = (JobState.SCANNING, JobState.ASSESSING, JobState.COPYING, JobState.VERIFYING)
JOB_FINISHED = (
    JobState.ASSESSED,
    JobState.COMPLETED,
    JobState.COMPLETED_WITH_ERRORS,
    JobState.FAILED,
    JobState.CANCELLED,
)
JOB_STARTABLE = (JobState.DRAFT, *JOB_FINISHED)

STATE_COLOURS = {
    "draft": "#6b7280",
    "queued": "#6366f1",
    "scanning": "#0ea5e9",
    "assessing": "#0891b2",
    "assessed": "#0d9488",
    "copying": "#2563eb",
    "verifying": "#7c3aed",
    "paused": "#d97706",
    "completed": "#16a34a",
    "completed_with_errors": "#ca8a04",
    "failed": "#dc2626",
    "cancelled": "#4b5563",
    # items
    "pending": "#6b7280",
    "copied": "#16a34a",
    "unchanged": "#0d9488",
    "excluded": "#9ca3af",
}


class PassKind(models.TextChoices):
    COPY = "copy", "Copy"
    ASSESS = "assess", "Assessment"
    RETRY = "retry", "Retry failed"
    PERMISSIONS = "permissions", "Permissions only"
    VERIFY = "verify", "Verify (re-compare every file)"
    SYNC = "sync", "Continuous sync"


class PassState(models.TextChoices):
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class ItemKind(models.TextChoices):
    FILE = "file", "File"
    DIR = "dir", "Folder"


class ItemState(models.TextChoices):
    PENDING = "pending", "Pending"
    COPIED = "copied", "Copied"
    UNCHANGED = "unchanged", "Unchanged"
    EXCLUDED = "excluded", "Excluded"
    FAILED = "failed", "Failed"


class Reason(models.TextChoices):
    """Why an item was not copied. Every item that is not copied carries one."""

    NONE = "", "—"
    # failures
    VANISHED = "vanished", "Vanished from the source after the scan"
    ACCESS_DENIED = "access_denied", "Access denied"
    LOCKED = "locked", "Locked by another program"
    NOT_FOUND = "not_found", "Not found"
    UNSAFE_PATH = "unsafe_path", "Path would escape the destination or is invalid there"
    INVALID_NAME = "invalid_name", "Name the destination cannot hold"
    CHECKSUM_MISMATCH = "checksum_mismatch", "Checksum mismatch after copy"
    CHANGED_DURING_COPY = "changed_during_copy", "Changed while it was copied (after retries)"
    SOURCE_UNAVAILABLE = "source_unavailable", "Source unavailable (after retries)"
    DESTINATION_UNAVAILABLE = "destination_unavailable", "Destination unavailable (after retries)"
    DESTINATION_ERROR = "destination_error", "Destination refused the write"
    READ_ERROR = "read_error", "Error reading the source"
    IO_ERROR = "io_error", "Input/output error"
    UNSUPPORTED = "unsupported", "Not supported by this storage"
    CONNECT_FAILED = "connect_failed", "Could not connect"
    PATH_TOO_LONG = "path_too_long", "Destination path too long"
    # verify pass (nothing written: the destination is compared with the source)
    VERIFY_MISMATCH = "verify_mismatch", "Destination differs from the source (verify)"
    MISSING_AT_DESTINATION = "missing_at_destination", "Missing at the destination (verify)"
    # exclusions
    SYMLINK = "symlink", "Symbolic link (not followed)"
    JUNK_FILE = "junk_file", "Junk file (Thumbs.db, desktop.ini, .DS_Store, ~$ lock files)"
    EXCLUDED_BY_PATTERN = "excluded_by_pattern", "Excluded by a pattern"
    NOT_INCLUDED = "not_included", "Not matched by the include patterns"
    TOO_SMALL = "too_small", "Smaller than the minimum size"
    TOO_LARGE = "too_large", "Larger than the maximum size"
    MODIFIED_BEFORE = "modified_before", "Modified before the cut-off"
    MODIFIED_AFTER = "modified_after", "Modified after the cut-off"
    HIDDEN = "hidden", "Hidden file"
    SYSTEM = "system", "System file"
    DESTINATION_NEWER = "destination_newer", "Destination is newer (policy: newer)"
    DESTINATION_CHANGED = (
        "destination_changed",
        "Changed at the destination since the last pass (policy: destination wins)",
    )
    # permissions (see jobs/permissions.py)
    DENY_ACE = "deny_ace", "A deny entry applies (deny policy: refuse)"
    ACL_FAILED = "acl_failed", "Permissions could not be read or applied"
    DIRECTORY_UNAVAILABLE = "directory_unavailable", "Directory unavailable (SIDs not resolved)"


# failures whose message comes from a connection and can name a host, a port or a share:
# customers read the reason in words instead (jobs.plain.item_message)
CONNECTION_REASONS = {
    Reason.SOURCE_UNAVAILABLE,
    Reason.DESTINATION_UNAVAILABLE,
    Reason.CONNECT_FAILED,
    Reason.DIRECTORY_UNAVAILABLE,
}

TRANSIENT_REASONS = {
    Reason.LOCKED,
    Reason.SOURCE_UNAVAILABLE,
    Reason.DESTINATION_UNAVAILABLE,
    Reason.DIRECTORY_UNAVAILABLE,
}


class OnExists(models.TextChoices):
    SKIP_IDENTICAL = "skip_identical", "Skip when identical, replace when different"
    OVERWRITE = "overwrite", "Always overwrite"
    NEWER = "newer", "Replace only when the source is newer"
    KEEP_BOTH = "keep_both", "Keep both (write the source under a new name)"


class Conflicts(models.TextChoices):
    """A catch-up pass: what to do with an object changed at the destination since we wrote it."""

    SOURCE_WINS = "source_wins", "Source wins (copy the source over it)"
    DESTINATION_WINS = "destination_wins", "Destination wins (leave it, exclude the file)"
    KEEP_BOTH = "keep_both", "Keep both (write the source beside it under a new name)"


class Change(models.TextChoices):
    """What a catch-up pass found for an item compared with the last pass."""

    NONE = "", "—"
    NEW = "new", "New"
    CHANGED = "changed", "Changed at the source"
    CONFLICT = "conflict", "Changed at the destination (conflict)"
    MISSING = "missing", "Missing at the destination"


class BatchState(models.TextChoices):
    QUEUED = "queued", "Queued"
    LEASED = "leased", "Leased"
    DONE = "done", "Done"


class EventLevel(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class DeletionAction(models.TextChoices):
    """What became of an object whose source is gone (jobs/deletions.py)."""

    KEPT = "kept", "Deleted at source, kept at the destination"
    PENDING = "pending", "To be deleted"
    DELETED = "deleted", "Deleted at the destination"
    TRASHED = "trashed", "Moved to the trash folder"
    FAILED = "failed", "Could not be deleted"
    AWAITING_CONFIRMATION = "awaiting_confirmation", "Waiting for confirmation (over the cap)"


class CutoverStep(models.TextChoices):
    """The cutover flow's steps, in order (jobs/cutover.py)."""

    CHECKLIST = "checklist", "1. Freeze the source (checklist)"
    FINAL_PASS = "final_pass", "2. Final catch-up pass"
    VERIFY = "verify", "3. Verify pass"
    PERMISSIONS = "permissions", "4. Permissions-only pass"
    READY = "ready", "5. Ready to switch"


class CutoverState(models.TextChoices):
    OPEN = "open", "Waiting for the engineer"
    RUNNING = "running", "Pass running"
    STOPPED = "stopped", "Stopped (see the reason)"
    READY = "ready", "Ready to switch"
    NOT_READY = "not_ready", "Finished, not ready to switch"
