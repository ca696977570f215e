"""SFTP test server: a real OpenSSH `sshd` (Debian's openssh-server), started once per run
on a free loopback port with its own config file, a temporary host key and a temporary
user that logs in with a password or a key.

sshd runs as root here (the tests do), so it can switch to that user as a real server
does; password logins are checked against /etc/shadow (no PAM), which is why the fixture
adds a user with `useradd` and a random password and removes it (`userdel`) at the end.
The user is jailed to nothing: the connector's URL names an absolute folder under the
fixture's temporary directory, which the user owns.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .util import free_port, stop_group, wait_for_port

SSHD = "/usr/sbin/sshd"


@dataclass
class SftpServer:
    host: str
    port: int
    user: str
    password: str
    key_path: Path  # the user's private key (OpenSSH format, no passphrase)
    host_key_path: Path
    base: Path  # a folder the user owns; tests make their roots under it
    fingerprint: str  # the server's host key, "SHA256:…" as ssh-keygen -l shows it
    uid: int
    gid: int
    _numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def private_key(self) -> str:
        """The endpoint secret for key login: the private key's text."""
        return self.key_path.read_text()

    def new_folder(self, prefix: str = "t") -> Path:
        """A fresh, empty folder the user owns; its absolute path on the server."""
        path = self.base / f"{prefix}-{next(self._numbers)}-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        self.give(path)
        return path

    def give(self, path: Path) -> None:
        """Hand `path` (and everything under it) to the user, after a test wrote it as root."""
        for item in [path, *path.rglob("*")]:
            os.lchown(item, self.uid, self.gid)

    def url(self, path: Path | str, **options: str) -> str:
        """The connector's URL for an absolute `path` on this server."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"sftp://{self.user}@{self.host}:{self.port}{path}" + (f"?{query}" if query else "")


def fingerprint_of(public_key_path: Path) -> str:
    """SHA256:<base64 without padding> of an OpenSSH public key file, as ssh shows it."""
    blob = base64.b64decode(public_key_path.read_text().split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _config(folder: Path, port: int, user: str, host_key: Path, authorized: Path) -> Path:
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                "PidFile none",
                "UsePAM no",
                "PasswordAuthentication yes",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                f"AuthorizedKeysFile {authorized}",
                "StrictModes no",
                "PermitRootLogin no",
                f"AllowUsers {user}",
                "Subsystem sftp internal-sftp",
                "ForceCommand internal-sftp",
                "MaxStartups 100:30:200",
                "MaxSessions 100",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    return config


def start_sshd(folder: Path) -> tuple[subprocess.Popen, SftpServer]:
    """A temporary user, keys and an sshd on a free loopback port; the caller stops it
    (`stop_sshd`)."""
    if not os.path.exists(SSHD):
        raise RuntimeError("sshd is missing: apt-get install openssh-server (make system-test)")
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation folder
    user = f"mgsftp{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    base = folder / "home"
    base.mkdir()
    subprocess.run(
        ["useradd", "--no-create-home", "--home-dir", str(base), "--shell", "/bin/sh", user],
        check=True,
        capture_output=True,
    )
    subprocess.run(["chpasswd"], input=f"{user}:{password}\n", text=True, check=True)
    os.chmod(folder, 0o755)  # noqa: S103 - the user's sshd session must reach its folder
    host_key, user_key = folder / "host_key", folder / "user_key"
    for key in (host_key, user_key):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
            check=True,
            capture_output=True,
        )
    authorized = folder / "authorized_keys"
    shutil.copy(f"{user_key}.pub", authorized)
    os.chmod(authorized, 0o644)
    info = subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True)
    uid = int(info.stdout)
    gid = int(subprocess.run(["id", "-g", user], capture_output=True, text=True).stdout)
    os.chown(base, uid, gid)
    port = free_port()
    config = _config(folder, port, user, host_key, authorized)
    log = folder / "sshd.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = SftpServer(
        "127.0.0.1",
        port,
        user,
        password,
        user_key,
        host_key,
        base,
        fingerprint_of(Path(f"{host_key}.pub")),
        uid,
        gid,
    )
    try:
        wait_for_port(port, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        stop_sshd(proc, server)
        raise RuntimeError(f"{exc}; sshd log:\n{log.read_text()}") from exc
    return proc, server


def stop_sshd(proc: subprocess.Popen, server: SftpServer) -> None:
    stop_group(proc)
    # -f: its sessions' processes (children of that sshd) may still be closing
    subprocess.run(["userdel", "-f", server.user], capture_output=True)


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SftpServer]:
    """OpenSSH's sshd on a free loopback port, for the whole run. Its folder is not under
    pytest's temp folder, which is private to root: the user's session must reach it."""
    folder = Path(tempfile.mkdtemp(prefix="mg-sftp-"))
    try:
        proc, server = start_sshd(folder)
        try:
            yield server
        finally:
            stop_sshd(proc, server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def contract_sftp(sftp_server: SftpServer) -> Iterator[object]:
    """An SftpConnector (key login) rooted at a fresh empty folder, with neighbours beside
    it (a sibling folder sharing its first letters, a file) that it must never see."""
    from migrator.storage.sftp import from_url

    folder = sftp_server.new_folder("contract")
    (folder / "root-sibling").mkdir()
    (folder / "root-sibling" / "x.txt").write_bytes(b"not under the root")
    (folder / "outside.txt").write_bytes(b"not under the root")
    (folder / "root").mkdir()
    sftp_server.give(folder)
    url = sftp_server.url(folder / "root", hostkey=sftp_server.fingerprint)
    connector = from_url(url, sftp_server.private_key)
    try:
        yield connector
    finally:
        connector.close()


@pytest.fixture
def contract_sftp_missing(sftp_server: SftpServer) -> Iterator[object]:
    """An SftpConnector whose folder does not exist."""
    from migrator.storage.sftp import from_url

    connector = from_url(sftp_server.url(sftp_server.base / "no-such-folder"), sftp_server.password)
    try:
        yield connector
    finally:
        connector.close()
