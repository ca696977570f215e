"""Open the connector an endpoint describes (its secret decrypted only here)."""

from __future__ import annotations

from migrator.storage import Connector, StorageError, connector_for

from .models import Endpoint


def open_endpoint(endpoint: Endpoint) -> Connector:
    return connector_for(endpoint.url, endpoint.get_secret() or None)


def check_endpoint(endpoint: Endpoint, *, destination: bool = False, pin: bool = False) -> str:
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
        if pin:  # staff's Test connection: an unpinned SFTP key is trusted on first use
            return host_key_pin(endpoint, conn)
        return getattr(conn, "host_key_fingerprint", "")


def host_key_pin(endpoint: Endpoint, conn: Connector) -> str:
    """Trust on first use: an SFTP endpoint whose URL pins no host key gets the key its
    server presented now, written into its URL (`hostkey=`), so every later connection
    must meet that same key (check() refuses another, naming both). Returns the key, or ""
    for a connector without one."""
    key = getattr(conn, "host_key_fingerprint", "")
    if key and "hostkey=" not in endpoint.url:
        pinned = endpoint.url + ("&" if "?" in endpoint.url else "?") + f"hostkey={key}"
        # only if nobody pinned another meanwhile
        if Endpoint.objects.filter(pk=endpoint.pk, url=endpoint.url).update(url=pinned):
            endpoint.url = pinned
    return key
