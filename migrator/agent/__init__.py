"""The on-premises agent: `python -m migrator.agent enroll|run`.

The engine plus an HTTP client, no Django. It runs next to the data, asks the Migrator
server for work over HTTPS (the scan of a pass, or a batch, leased like a worker's), runs
the engine on it, and posts what the engine produced; the server records it once. It
holds its own token (mode 0600) and the source's credentials it is given, never a key
of the destination cloud.
"""

VERSION = "0.3.0"
