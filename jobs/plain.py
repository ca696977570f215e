"""Words for customers: what an endpoint is and what went wrong, never where it is.

Endpoint URLs and connector errors name hosts, shares, buckets and accounts: staff see
those (the admin, staff-only events). The portal shows these words instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from migrator.storage import StorageError

from .choices import CONNECTION_REASONS, Reason

if TYPE_CHECKING:
    from .models import Endpoint

KIND_WORDS = {
    "file": "Local folder",
    "smb": "Windows file share (SMB)",
    "gs": "Google Cloud Storage",
    "azure": "Azure Blob Storage",
    "s3": "Amazon S3 or S3-compatible storage",
    "sftp": "Server over SSH (SFTP)",
    "synthetic": "Generated test data",
    "null": "Discarded after verifying (benchmarks)",
}

# a StorageError's reason code -> what happened to the endpoint, in words
REASON_WORDS = {
    "connect_failed": "could not be connected to",
    "unavailable": "could not be reached",
    "not_found": "was not found",
    "access_denied": "refused access",
    "locked": "was busy",
    "unsupported": "does not support what the migration needs",
    "unsafe_path": "names a folder it cannot use",
}

CANNOT_START = "The migration could not start"
DESTINATION_FULL = (
    "The destination is full: copying is paused and nothing is lost. Make room there (or "
    "raise its quota), then resume the migration."
)


def kind_words(kind: str) -> str:
    """'smb' -> 'Windows file share (SMB)'; a kind we do not know is not echoed back."""
    return KIND_WORDS.get(kind, "Other storage")


def route_words(source: Endpoint, destination: Endpoint) -> str:
    """'Windows file share (SMB) → Google Cloud Storage': the endpoints' kinds only."""
    return f"{kind_words(source.kind)} → {kind_words(destination.kind)}"


def item_message(reason: str, message: str) -> str:
    """What a customer reads for an item: its message, unless it comes from a connection
    (it can name a host, a port or a share); then the reason in words."""
    if reason in CONNECTION_REASONS:
        return Reason(reason).label
    return message


def _reason(exc: BaseException) -> str:
    """The most telling reason code along the error's causes: ConnectFailed usually wraps
    the error that says more (an unreachable host, a missing folder, a refused account)."""
    reasons: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(reasons) < 10:
        if isinstance(cause, StorageError):
            reasons.append(cause.reason)
        cause = cause.__cause__
    specific = [r for r in reasons if r != "connect_failed"]
    return (specific or reasons or [""])[0]


def cannot_start_words(where: str, exc: BaseException) -> str:
    """Why a job could not start, for customers. `where` is "source", "destination" or
    "options"; built from the reason codes only, never from the error's text."""
    if where not in ("source", "destination"):
        return f"{CANNOT_START}: its options are not valid."
    if not isinstance(exc, StorageError):  # a URL the connector cannot read
        return f"{CANNOT_START}: the {where} is not set up correctly."
    what = REASON_WORDS.get(_reason(exc), "could not be used")
    return f"{CANNOT_START}: the {where} {what}."


def scan_interrupted_words(seconds: int) -> str:
    return (
        "The scan was interrupted: the source stopped answering; it resumes where it "
        f"stopped in {seconds} s."
    )
