"""SMB2 on the wire: the constants of MS-SMB2 and MS-FSCC, request bodies packed with
`struct` and the fields of responses read from their bytes. Kept lean on purpose: a small
file's whole compound (create+read+close, create+write+set-info+rename+close) is built
and parsed here, once per file.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from smbprotocol.header import Commands

CHUNK = 1 << 20  # bytes per READ/WRITE: 16 credits
PIPELINE = 4  # READs/WRITEs in flight per large file
LIST_BUFFER = 1 << 16  # one credit of directory entries (~600 names) per QUERY_DIRECTORY

# MS-SMB2 / MS-FSCC constants
FILE_READ_DATA = 0x1
FILE_WRITE_DATA = 0x2
FILE_READ_ATTRIBUTES = 0x80
FILE_WRITE_ATTRIBUTES = 0x100
DELETE = 0x10000
READ_CONTROL = 0x20000
WRITE_DAC = 0x40000
WRITE_OWNER = 0x80000
SYNCHRONIZE = 0x100000
ACCESS_SYSTEM_SECURITY = 0x1000000
SHARE_ALL = 0x7  # read | write | delete
FILE_OPEN, FILE_CREATE, FILE_OVERWRITE_IF = 1, 2, 5
FILE_DIRECTORY_FILE = 0x1
FILE_NON_DIRECTORY_FILE = 0x40
IMPERSONATION = 2
RELATED = b"\xff" * 16  # "the file of the previous request in this compound"
INFO_FILE, INFO_SECURITY = 1, 3
FILE_DIRECTORY_INFORMATION = 1
FILE_BASIC_INFORMATION = 4
FILE_RENAME_INFORMATION = 10
FILE_DISPOSITION_INFORMATION = 13

ATTR_READONLY = 0x1
ATTR_HIDDEN = 0x2
ATTR_SYSTEM = 0x4
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
ATTR_NORMAL = 0x80
ATTR_REPARSE_POINT = 0x400
COPIED_ATTRIBUTES = ATTR_HIDDEN | ATTR_SYSTEM | ATTR_ARCHIVE

FILETIME_EPOCH = 116_444_736_000_000_000  # 1970-01-01 in 100 ns ticks since 1601

# NTSTATUS codes, by what they mean to a migration
STATUS_NO_MORE_FILES = 0x80000006
STATUS_END_OF_FILE = 0xC0000011
STATUS_BUFFER_TOO_SMALL = 0xC0000023
STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_LOGON_FAILURE = 0xC000006D
STATUS_BAD_NETWORK_NAME = 0xC00000CC
NOT_FOUND = {0xC0000034, 0xC000003A, 0xC000000F, 0xC0000225, 0xC0000056}
DENIED = {0xC0000022, 0xC0000061, 0xC0000121, 0xC00000A2}
LOCKED = {0xC0000043, 0xC0000054, 0xC0000055}
INVALID = {0xC0000033, 0xC000003B, 0xC0000039, 0xC0000106}
LINK_GONE = {0xC00000C9, 0xC0000203, 0xC000035C, 0xC000020C, 0xC000023A, 0xC0000128}
FULL = {0xC000007F, 0xC0000044}  # disk full, quota exceeded
BUSY = {0xC00000B5, 0xC0000205, 0xC000009A, 0xC00000D0, 0xC0000466, 0xC0000120}
OTHER = {
    0xC0000035: "already exists",
    0xC0000101: "folder is not empty",
    0xC00000BA: "is a folder",
    0xC0000103: "not a folder",
    0xC000007F: "no space left on the share",
    0xC0000044: "quota exceeded",
    0x8000002D: "is a symbolic link",
}
LOGON = {
    0xC000006D: "wrong user name or password",
    0xC000006A: "wrong user name or password",
    0xC0000064: "wrong user name or password",
    0xC0000072: "account is disabled",
    0xC0000234: "account is locked out",
    0xC0000071: "password has expired",
    0xC0000224: "password must be changed",
    0xC000006E: "account restrictions forbid this logon",
    0xC000006F: "logon not allowed at this time",
    0xC0000193: "account has expired",
    0xC000015B: "logon type not granted",
}
# a server that cannot log anyone on right now: starting up (Samba answers INTERNAL_ERROR
# until its auth service is up), no domain controller, overloaded. Retried, unlike LOGON.
LOGON_LATER = {
    0xC00000E5: "the server cannot log on users yet (internal error)",
    0xC000005E: "no logon server is available",
    0xC0000192: "the server's netlogon service has not started",
    0xC0000233: "no domain controller found",
    0xC000018C: "the trust with the domain failed",
    0xC000018D: "the trust relationship failed",
    0xC000009A: "the server is out of resources",
    0xC00000D0: "the server accepts no more connections",
    0xC0000466: "the server is unavailable",
    0xC00000B5: "the logon timed out",
}


def filetime(ns: int) -> int:
    """Unix ns -> Windows FILETIME (100 ns ticks since 1601), truncated to 100 ns."""
    return ns // 100 + FILETIME_EPOCH


def unix_ns(ft: int) -> int:
    return (ft - FILETIME_EPOCH) * 100 if ft > 0 else 0


# --- raw SMB2 request bodies ----------------------------------------------------------------


class _Value:
    """What smbprotocol's credit arithmetic reads from a message field."""

    __slots__ = ("value",)

    def __init__(self, value: int | bytes) -> None:
        self.value = value

    def get_value(self) -> int | bytes:
        return self.value

    def __len__(self) -> int:
        return self.value if isinstance(self.value, int) else len(self.value)


class _Msg:
    """A request body packed with struct, shaped like the smbprotocol Structure that
    `Connection.send`/`send_compound` expect (COMMAND, pack, len, fields for credits).
    `payload` is what the credit charge counts: bytes sent or asked for."""

    __slots__ = ("COMMAND", "body", "fields", "payload")

    def __init__(self, command: int, body: bytes, payload: int = 1, **fields: int | bytes) -> None:
        self.COMMAND = command
        self.body = body
        self.fields = fields
        self.payload = payload

    def pack(self) -> bytes:
        return self.body

    def __len__(self) -> int:
        return len(self.body)

    def __getitem__(self, key: str) -> _Value:
        return _Value(self.fields.get(key, 0))


def _create(
    name: str,
    access: int,
    disposition: int = FILE_OPEN,
    options: int = 0,
    share: int = SHARE_ALL,
    attributes: int = ATTR_NORMAL,
) -> _Msg:
    raw = name.encode("utf-16-le")
    body = struct.pack(
        "<HBBIQQIIIIIHHII",
        57,
        0,
        0,  # no oplock: we never cache
        IMPERSONATION,
        0,
        0,
        access,
        attributes,
        share,
        disposition,
        options,
        120,  # name offset: header 64 + fixed body 56
        len(raw),
        0,
        0,
    )
    return _Msg(Commands.SMB2_CREATE, body + (raw or b"\x00"))


def _close(file_id: bytes = RELATED) -> _Msg:
    return _Msg(Commands.SMB2_CLOSE, struct.pack("<HHI16s", 24, 0, 0, file_id))


def _read(offset: int, length: int, file_id: bytes = RELATED) -> _Msg:
    body = struct.pack("<HBBIQ16sIIIHHB", 49, 0x50, 0, length, offset, file_id, 0, 0, 0, 0, 0, 0)
    return _Msg(Commands.SMB2_READ, body, payload=length, length=length, read_channel_info_length=0)


def _write(offset: int, data: bytes | memoryview, file_id: bytes = RELATED) -> _Msg:
    header = struct.pack("<HHIQ16sIIHHI", 49, 112, len(data), offset, file_id, 0, 0, 0, 0, 0)
    return _Msg(
        Commands.SMB2_WRITE,
        header + data,
        payload=len(data),
        length=len(data),
        write_channel_info_length=0,
    )


def _query_directory(file_id: bytes = RELATED, pattern: str = "*") -> _Msg:
    raw = pattern.encode("utf-16-le")
    body = struct.pack(
        "<HBBI16sHHI", 33, FILE_DIRECTORY_INFORMATION, 0, 0, file_id, 96, len(raw), LIST_BUFFER
    )
    return _Msg(
        Commands.SMB2_QUERY_DIRECTORY,
        body + raw,
        payload=max(len(raw), LIST_BUFFER),
        buffer=raw,
        output_buffer_length=LIST_BUFFER,
    )


def _query_security(info: int, file_id: bytes = RELATED, length: int = 1 << 16) -> _Msg:
    body = struct.pack("<HBBIHHIII16s", 41, INFO_SECURITY, 0, length, 0, 0, 0, info, 0, file_id)
    return _Msg(Commands.SMB2_QUERY_INFO, body)


def _set_info(
    info_type: int, info_class: int, data: bytes, additional: int = 0, file_id: bytes = RELATED
) -> _Msg:
    body = struct.pack(
        "<HBBIHHI16s", 33, info_type, info_class, len(data), 96, 0, additional, file_id
    )
    return _Msg(Commands.SMB2_SET_INFO, body + data)


def _basic_info(mtime_ns: int, attributes: int = 0) -> _Msg:
    ft = filetime(mtime_ns) if mtime_ns else 0
    data = struct.pack("<qqqqII", 0, ft, ft, 0, attributes, 0)
    return _set_info(INFO_FILE, FILE_BASIC_INFORMATION, data)


def _rename(target: str, replace: bool = True) -> _Msg:
    raw = target.encode("utf-16-le")
    data = struct.pack("<B7xQI", int(replace), 0, len(raw)) + raw
    return _set_info(INFO_FILE, FILE_RENAME_INFORMATION, data)


def _delete_on_close(file_id: bytes = RELATED) -> _Msg:
    return _set_info(INFO_FILE, FILE_DISPOSITION_INFORMATION, b"\x01", file_id=file_id)


# --- raw SMB2 responses -----------------------------------------------------------------------


class _Opened:
    """The fields of a CREATE response we use."""

    __slots__ = ("file_id", "mtime", "size", "attributes")

    def __init__(self, data: bytes) -> None:
        (_, _, _, _, _, _, self.mtime, _, _, self.size, self.attributes, _, self.file_id) = (
            struct.unpack_from("<HBBIqqqqqqII16s", data, 0)
        )


def _payload(data: bytes | memoryview) -> bytes:
    """The buffer of a QUERY_DIRECTORY or QUERY_INFO response (offsets count the header)."""
    offset, length = struct.unpack_from("<HI", data, 2)
    return bytes(data[offset - 64 : offset - 64 + length])


def _read_payload(data: bytes | memoryview) -> bytes | memoryview:
    """The bytes of a READ response (a one-byte data offset, then the length)."""
    offset, length = data[2], struct.unpack_from("<I", data, 4)[0]
    return data[offset - 64 : offset - 64 + length]


def _directory_entries(buf: bytes) -> Iterator[tuple[str, int, int, int]]:
    """(name, size, mtime FILETIME, attributes) of each FILE_DIRECTORY_INFORMATION record."""
    pos = 0
    while True:
        nxt, _, _, _, mtime, _, size, _, attributes, name_len = struct.unpack_from(
            "<IIqqqqqqII", buf, pos
        )
        name = buf[pos + 64 : pos + 64 + name_len].decode("utf-16-le", "surrogatepass")
        yield name, size, mtime, attributes
        if not nxt:
            return
        pos += nxt


class _Failed:
    """A response that carried an error status, kept in a compound's result list."""

    __slots__ = ("status",)

    def __init__(self, status: int) -> None:
        self.status = status


def _with_file_id(msg: _Msg, file_id: bytes) -> _Msg:
    """The same SET_INFO/CLOSE request aimed at `file_id` instead of the related handle."""
    offset = {Commands.SMB2_SET_INFO: 16, Commands.SMB2_CLOSE: 8}[msg.COMMAND]
    body = msg.body[:offset] + file_id + msg.body[offset + 16 :]
    return _Msg(msg.COMMAND, body, msg.payload, **msg.fields)


# --- the SMB2 header -----------------------------------------------------------------------

_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")  # an SMB2 sync header, 64 bytes
_PROTOCOL = b"\xfeSMB"
_NO_SIGNATURE = b"\x00" * 16
FLAG_RESPONSE, FLAG_ASYNC, FLAG_RELATED, FLAG_SIGNED = 0x1, 0x2, 0x4, 0x8
FLAG_DFS = 0x10000000
STATUS_PENDING = 0x103
