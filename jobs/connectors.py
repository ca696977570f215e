"""Open the connector an endpoint describes (its secret decrypted only here)."""

from __future__ import annotations

from migrator.storage import Connector, StorageError, connector_for

from .models import Endpoint


def open_endpoint(endpoint: Endpoint) -> Connector:
    return connector_for(endpoint.url, endpoint.get_secret() or None)


def check_endpoint(endpoint: Endpoint, *, destination: bool = False) -> str:
    """Raise StorageError (ConnectFailed in words) unless the endpoint can be used; a
    destination folder that does not exist yet is created first. Returns the SSH host key
    fingerprint an SFTP server presented (for staff to pin), else ""."""
    with open_endpoint(endpoint) as conn:
        if destination and conn.capabilities.directories:
            try:
                conn.mkdir("")
            except StorageError:
                pass  # check() below says what is wrong, in words
        conn.check()
        return getattr(conn, "host_key_fingerprint", "")
