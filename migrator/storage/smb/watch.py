"""SMB2 CHANGE_NOTIFY on the connector's root folder with SMB2_WATCH_TREE (smbprotocol's
FileSystemWatcher on a connection of its own). Each request returns once: it is re-armed
at once; changes between two requests are buffered by the server on the open handle. A
notify the server could not fit (STATUS_NOTIFY_ENUM_DIR) or a dropped connection is a
WatchError: the caller reconciles by scanning."""

from __future__ import annotations

import threading
import uuid

from ..base import Change, Watch, WatchError
from ..errors import ConnectFailed
from ..walk import TEMP_PREFIX
from ..watching import QueueWatch

ACTIONS = {1: "created", 2: "deleted", 3: "modified", 9: "deleted"}  # FileAction
RENAMED_OLD, RENAMED_NEW = 4, 5


def watch_share(*, host: str, port: int, share: str, root: str, account: str,
                password: str, timeout: float, under: str = "") -> Watch:  # fmt: skip
    """A running watch of `root` (share-relative, '/'-separated) and everything below."""
    from smbprotocol.change_notify import ChangeNotifyFlags, CompletionFilter, FileSystemWatcher
    from smbprotocol.connection import Connection
    from smbprotocol.exceptions import SMBException
    from smbprotocol.open import (
        CreateDisposition,
        CreateOptions,
        DirectoryAccessMask,
        FileAttributes,
        ImpersonationLevel,
        Open,
        ShareAccess,
    )
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    conn = Connection(uuid.uuid4(), host, port, require_signing=True)
    try:
        conn.connect(timeout=min(timeout, 15))
        session = Session(conn, account, password, require_encryption=False, auth_protocol="ntlm")
        session.connect()
        tree = TreeConnect(session, rf"\\{host}\{share}")
        tree.connect()
        handle = Open(tree, root.replace("/", "\\"))
        handle.create(
            ImpersonationLevel.Impersonation,
            DirectoryAccessMask.FILE_LIST_DIRECTORY,
            FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
            ShareAccess.FILE_SHARE_READ
            | ShareAccess.FILE_SHARE_WRITE
            | ShareAccess.FILE_SHARE_DELETE,
            CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_DIRECTORY_FILE,
        )
    except (SMBException, OSError, ValueError) as exc:
        conn.disconnect(close=False)
        raise ConnectFailed(root, f"cannot watch {share}/{root} on {host}:{port}: {exc}") from exc

    what = (
        CompletionFilter.FILE_NOTIFY_CHANGE_FILE_NAME
        | CompletionFilter.FILE_NOTIFY_CHANGE_DIR_NAME
        | CompletionFilter.FILE_NOTIFY_CHANGE_SIZE
        | CompletionFilter.FILE_NOTIFY_CHANGE_LAST_WRITE
    )
    # the first request is sent before we return: the server reports (and buffers) only
    # what happens once a request was made, so a change made right after watch() returned
    # was lost when the thread sent it later
    first = FileSystemWatcher(handle)
    try:
        first.start(what, flags=ChangeNotifyFlags.SMB2_WATCH_TREE)
    except (SMBException, OSError, ValueError) as exc:
        conn.disconnect(close=False)
        raise ConnectFailed(root, f"cannot watch {share}/{root} on {host}:{port}: {exc}") from exc

    closing = threading.Event()

    def stop() -> None:
        closing.set()
        try:
            conn.disconnect(close=True)
        except Exception:  # noqa: BLE001 - already gone: nothing to release
            conn.disconnect(close=False)

    watch = QueueWatch(stop)

    def loop() -> None:
        watcher = first
        while not closing.is_set():
            try:
                if watcher is None:
                    watcher = FileSystemWatcher(handle)
                    watcher.start(what, flags=ChangeNotifyFlags.SMB2_WATCH_TREE)
                actions = watcher.wait()
                watcher = None
            except Exception as exc:  # noqa: BLE001 - any failure ends this watch, in words
                if not closing.is_set():
                    watch.put(WatchError("disconnected", f"the share's watch failed: {exc}"))
                    watch.close()
                return
            if closing.is_set():
                return
            if not actions:  # STATUS_NOTIFY_ENUM_DIR: too many to tell
                watch.put(WatchError("overflow", "the server could not list every change"))
                continue
            old = ""
            for info in actions:  # our own writes' temp files (TEMP_PREFIX) are left out
                action = info["action"].get_value()
                name = info["file_name"].get_value().replace("\\", "/")
                name = f"{under}/{name}" if under else name
                temp = name.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)
                if action == RENAMED_OLD:
                    old = name
                elif action == RENAMED_NEW:
                    if old.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
                        watch.put(Change(name, "modified"))  # a write put in place
                    elif not temp:
                        watch.put(Change(old, "moved", name) if old else Change(name, "created"))
                    old = ""
                elif action in ACTIONS and not temp:
                    watch.put(Change(name, ACTIONS[action]))

    threading.Thread(target=loop, daemon=True, name=f"smb-watch-{share}").start()
    return watch
