"""SMB 2/3 shares (Windows file servers, Samba) as source and destination.

    smb://[DOMAIN;]user@host[:port]/share/path      password: the endpoint's secret

smbprotocol does negotiate, authentication and the tree connect; the file operations are
built here as raw SMB2 bodies with `struct` and sent as compounds (create+read+close,
create+write+set-info+rename+close, …), so a small file costs one round trip. Once a link
is up, it takes the socket over from smbprotocol (`_LeanLink`): headers are packed and
signed here and responses read and verified in the calling thread, with no receive worker
and no thread hand-off per message. Shares that encrypt keep smbprotocol's path. Responses
are parsed from their bytes: names, sizes, 100 ns times and attributes come straight from
the directory listing, never from a stat per entry.

Every thread gets its own connection (smbprotocol shares credits badly between threads).
Idle links go to a per-process pool for the next connector of the same account (a job
opens connectors per batch and thread); a dropped connection is replaced on the next
operation, an idempotent operation that loses its connection midway is tried once more on
a new one, and outside check() a server that cannot be reached is Transient.
"""

from .connector import SMBConnector, from_url

__all__ = ["SMBConnector", "from_url"]
