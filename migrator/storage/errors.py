"""The typed errors every connector raises: each carries the path it is about and the
manifest reason code it maps to. A connector never returns None for "missing".

Plain Python, no Django.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "ChangedDuringCopy",
    "ConnectFailed",
    "DestinationFull",
    "InvalidPath",
    "Locked",
    "NotFound",
    "StorageError",
    "Transient",
    "Unsupported",
]


class StorageError(Exception):
    """Base of every connector error; carries the path it is about."""

    reason = "io_error"  # the manifest reason code this error maps to
    transient = False

    def __init__(self, path: str, message: str = "") -> None:
        self.path = path
        self.message = message or self.__class__.__name__
        super().__init__(f"{self.message}: {path}" if path else self.message)


class NotFound(StorageError):
    reason = "not_found"


class AccessDenied(StorageError):
    reason = "access_denied"


class Locked(StorageError):
    reason = "locked"
    transient = True


class Transient(StorageError):
    """Worth retrying: a dropped connection, a timeout, a 5xx."""

    reason = "unavailable"
    transient = True


class ChangedDuringCopy(Transient):
    """The source file's size or mtime moved while it was read: what was read may be
    torn, so nothing is kept of it; retried, then failed with this reason."""

    reason = "changed_during_copy"


class DestinationFull(StorageError):
    """No space (or quota) left where the data goes: every further write would fail the
    same way, so the work stops and waits for space instead of failing each file."""

    reason = "destination_full"


class Unsupported(StorageError):
    reason = "unsupported"


class InvalidPath(StorageError):
    """A name the backend cannot hold, or one that would escape the root."""

    reason = "unsafe_path"


class ConnectFailed(StorageError):
    """The endpoint cannot be used at all: bad credentials, host unreachable, no bucket."""

    reason = "connect_failed"
