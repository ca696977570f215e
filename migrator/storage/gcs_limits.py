"""What GCS itself refuses in an object name (cloud.google.com/storage/docs/objects#naming).

Declared apart from the connector (migrator/storage/gcs.py), which builds its
`capabilities` from them, so that migrator.sanitize's gcs profile reads the same limits
without importing the Google client (a quarter of a second and some 500 modules).
"""

from __future__ import annotations

from .base import Capabilities

MAX_NAME_BYTES = 1024  # GCS object names are 1-1024 bytes of UTF-8
RESERVED_PREFIX = ".well-known/acme-challenge/"

# the names half of GCSConnector.capabilities
NAME_LIMITS = Capabilities(
    max_name_bytes=MAX_NAME_BYTES,  # a part can be no longer than the whole name
    max_path_bytes=MAX_NAME_BYTES,
    forbidden_chars=frozenset("\r\n"),
    reserved_paths=(RESERVED_PREFIX.rstrip("/"),),
)
