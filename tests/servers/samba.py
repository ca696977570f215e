"""Samba AD DC fixture: one real domain controller on 127.0.0.1 for the whole test run.

It serves SMB shares with real NT ACLs and AD LDAP from one domain, so file ACLs and
directory lookups share one set of SIDs:

    realm EXAMPLE.TEST, domain EXAMPLE, base DN DC=example,DC=test, LDAP on 127.0.0.1:389
    SMB on 127.0.0.1:4450 (or a free port), shares [data] and [target]
    users alice, bob (enabled), carol (disabled); groups Finance (alice), Engineering,
    and Platform (bob) nested inside Engineering
    [data] folders: finance/ (Finance read), alice-only/ (alice full, inheritance broken),
    denied/ (explicit deny for bob), public/ (Domain Users modify); made after start (see
    _populate_acl_cases): engineering/ (Engineering modify: bob through Platform, not
    alice), orphaned/ (a deleted user's SID, a foreign security principal, Domain Users
    read), and group Partners holding that foreign principal

Provisioning takes ~10 s on 2 shared cores, so the provisioned and populated domain is kept
as a tarball (xattrs included: the NT ACLs live in security.NTACL) under ROOT/cache and
unpacked on later runs. LDAP's port cannot move and there is one DC per host, so sessions
running at the same time share the DC: each holds a shared flock on ROOT/users.lock, and
the last one out stops it. A DC left by a killed run (nobody holds the lock) is stopped by
its pid file and replaced. Everything lives in ROOT (MIGRATOR_SAMBA_DIR, default
/tmp/migrator-samba, see _root); it needs root, as CI runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from .util import free_port, wait_for_port


def _root() -> Path:
    """/tmp/migrator-samba, unless MIGRATOR_SAMBA_DIR says otherwise or /tmp cannot hold
    the user.* extended attributes Samba keeps DOS attributes in (tmpfs before Linux 6.6):
    then the repository's ignored var/ folder."""
    if "MIGRATOR_SAMBA_DIR" in os.environ:
        return Path(os.environ["MIGRATOR_SAMBA_DIR"])
    tmp = Path("/tmp/migrator-samba")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        os.setxattr(tmp, "user.migrator-probe", b"1")
        return tmp
    except OSError:
        return Path(__file__).resolve().parents[2] / "var" / "samba"


ROOT = _root()
RUN = ROOT / "run"  # the live DC's directory (provision --targetdir)
CONF = RUN / "etc" / "smb.conf"
PID_FILE = ROOT / "dc.pid"

HOST = "127.0.0.1"
REALM = "EXAMPLE.TEST"
DOMAIN = "EXAMPLE"
BASE_DN = "DC=example,DC=test"
LDAP_PORT = 389
PREFERRED_SMB_PORT = 4450
ADMIN_USER = "Administrator"
ADMIN_PASSWORD = "Admin-Passw0rd!"
USERS = {"alice": "Alice-Passw0rd!", "bob": "Bob-Passw0rd!", "carol": "Carol-Passw0rd!"}
DISABLED = ("carol",)
GROUPS = {"Finance": ["alice"], "Platform": ["bob"], "Engineering": ["Platform"]}
SHARES = ("data", "target")
# For bench/smb_bench.py: reads and writes served synchronously. Samba answers a READ it
# serves asynchronously with an unsigned interim response first, which rclone 1.60's smb
# client refuses ("signing required") on every large file; a benchmark needs both tools.
BENCH_SHARE = "bench"
# A share that requires SMB 3 encryption: the connector then keeps smbprotocol's own
# message path (it encrypts), instead of its lean signed-only one.
SEALED_SHARE = "sealed"

# Folder ACLs of [data] as SDDL with hex masks ({alice}, … are filled with SIDs). LA is
# the domain's Administrator, DU Domain Users; AI (auto-inherited, as Windows writes it)
# makes Samba flag what children inherit as INHERITED. A share root grants Domain Users
# modify, so folders made for a test are usable by every user.
FULL, MODIFY, READ = "0x1f01ff", "0x1301bf", "0x1200a9"
SHARE_ROOT_SDDL = f"O:LAG:DUD:AI(A;OICI;{FULL};;;LA)(A;OICI;{MODIFY};;;DU)"
FOLDER_SDDL = {
    "finance": f"O:LAG:DUD:AI(A;OICI;{FULL};;;LA)(A;OICI;{READ};;;{{Finance}})",
    "alice-only": f"O:LAG:DUD:PAI(A;OICI;{FULL};;;{{alice}})(A;OICI;{FULL};;;LA)",
    "denied": f"O:LAG:DUD:AI(D;OICI;{FULL};;;{{bob}})(A;OICI;{MODIFY};;;DU)(A;OICI;{FULL};;;LA)",
    "public": f"O:LAG:DUD:AI(A;OICI;{MODIFY};;;DU)(A;OICI;{FULL};;;LA)",
}
# Files made over SMB after start, so each gets its NT ACL by inheritance, as on Windows.
FILES = {
    "finance/report.txt": b"Q3: revenue up\n",
    "finance/archive/2019.txt": b"old numbers\n",
    "alice-only/diary.txt": b"dear diary\n",
    "denied/secret.txt": b"bob must not read this\n",
    "public/readme.txt": b"hello everyone\n",
    "public/hidden.txt": b"you cannot see me in Explorer\n",
}
HIDDEN_FILES = ("public/hidden.txt",)
FILE_ATTRIBUTE_HIDDEN = 0x2

# Bump when anything above that lands in the cached tarball changes.
RECIPE = "3"

TIMINGS: dict[str, float | str] = {}
_PROCS: dict[int, subprocess.Popen] = {}  # DCs this process started, by PID


@dataclass
class SambaDC:
    """What tests get from `samba_dc`. Passwords are test fixtures, not secrets."""

    host: str
    port: int
    realm: str
    domain: str
    admin_user: str
    admin_password: str
    users: dict[str, str]  # enabled and disabled test users: {name: password}
    sids: dict[str, str]  # {alice, bob, carol, Finance, Engineering, Platform, Administrator,
    #                        Domain Users, Domain Admins, domain, Partners, deleted (a
    #                        deleted user's, resolves nowhere), foreign}: SID strings
    base_dn: str
    ldap_uri: str
    directory: Path  # the DC's private directory (ROOT/run)
    pid: int
    shares: dict[str, Path] = field(default_factory=dict)  # share name -> folder on disk
    _smb: dict = field(default_factory=dict, repr=False)  # smbclient connection cache

    @property
    def disabled_users(self) -> tuple[str, ...]:
        return DISABLED

    def password_for(self, user: str) -> str:
        if user.lower() == self.admin_user.lower():
            return self.admin_password
        return self.users[user]

    def smb_url(self, share: str, path: str = "", user: str | None = ADMIN_USER) -> str:
        """smb://EXAMPLE;user@127.0.0.1:PORT/share/path (the password goes in the secret)."""
        user = user or self.admin_user
        tail = quote(path.strip("/")) if path else ""
        return f"smb://{self.domain};{user}@{self.host}:{self.port}/{share}" + (
            f"/{tail}" if tail else ""
        )

    def unc(self, share: str, path: str = "") -> str:
        """\\\\127.0.0.1\\share\\path, for smbclient calls made by tests themselves."""
        inner = path.strip("/").replace("/", "\\")
        return rf"\\{self.host}\{share}" + (f"\\{inner}" if inner else "")

    def smbclient_kwargs(self, user: str | None = None) -> dict:
        """Keyword arguments for `smbclient.*` calls as `user` (Administrator by default),
        on a connection cache of this fixture's own. A cached connection the server has
        dropped (the DC restarted, maybe by another session sharing it) is replaced."""
        import smbclient

        user = user or self.admin_user
        cache = self._smb.setdefault(user, {})
        if cache and not all(_usable(conn) for conn in cache.values()):
            self._reset(user)
            cache = self._smb.setdefault(user, {})
        if not cache:
            smbclient.register_session(
                self.host,
                username=f"{self.domain}\\{user}",
                password=self.password_for(user),
                port=self.port,
                auth_protocol="ntlm",
                connection_cache=cache,
            )
        return {"port": self.port, "connection_cache": cache}

    def _reset(self, user: str) -> None:
        import smbclient

        cache = self._smb.pop(user, {})
        with contextlib.suppress(Exception):
            smbclient.reset_connection_cache(fail_on_error=False, connection_cache=cache)

    def _as_admin(self, action):
        """action(smbclient kwargs), once more on a new connection if the first one was
        dead (a restart between our check and the call)."""
        try:
            return action(self.smbclient_kwargs())
        except Exception:  # noqa: BLE001 - smbprotocol fails a dead session many ways
            self._reset(self.admin_user)
            return action(self.smbclient_kwargs())

    def make_folder(self, share: str = "data", path: str | None = None) -> str:
        """Create a folder over SMB as Administrator (a fresh unique one by default) and
        return its share-relative path."""
        import smbclient

        path = path or f"t-{uuid.uuid4().hex[:12]}"
        self._as_admin(lambda kw: smbclient.makedirs(self.unc(share, path), exist_ok=True, **kw))
        return path

    def fresh_folder(self, share: str = "data", user: str | None = None) -> str:
        """A new empty folder in `share`, as an smb:// URL for `user`."""
        return self.smb_url(share, self.make_folder(share), user)

    def put_file(self, share: str, path: str, data: bytes, attributes: int = 0) -> None:
        """Write a file over SMB as Administrator (so it gets its inherited NT ACL),
        making its parent folders first."""
        import smbclient

        if "/" in path.strip("/"):
            self.make_folder(share, path.strip("/").rsplit("/", 1)[0])

        def write(kwargs: dict) -> None:
            with smbclient.open_file(
                self.unc(share, path), mode="wb", file_attributes=attributes or None, **kwargs
            ) as f:
                f.write(data)

        self._as_admin(write)

    def set_acl(self, share: str, path: str, sddl: str) -> None:
        """Set the NT ACL of a file or folder as the server's administrator would
        (`samba-tool ntacl set`); `{alice}`, `{Finance}`, … in the SDDL become SIDs."""
        target = self.disk_path(share, path)
        _tool("ntacl", "set", f"--service={share}", sddl.format(**self.sids), str(target))

    def make_acl_folders(self, share: str = "data") -> str:
        """A fresh folder holding copies of the fixture's ACL'd folders (finance,
        alice-only, denied, public) with their files, so a test may run a whole job over
        them without other tests' folders; returns its share-relative path."""
        base = self.make_folder(share)
        for folder, sddl in FOLDER_SDDL.items():
            self.make_folder(share, f"{base}/{folder}")
            self.set_acl(share, f"{base}/{folder}", sddl)
        for path, data in FILES.items():  # made after the ACLs, so they inherit them
            attributes = FILE_ATTRIBUTE_HIDDEN if path in HIDDEN_FILES else 0
            self.put_file(share, f"{base}/{path}", data, attributes)
        return base

    def disk_path(self, share: str, path: str = "") -> Path:
        """Where a share path lives on the DC's disk (to look behind the server's back)."""
        return self.shares[share] / path.strip("/") if path else self.shares[share]

    def close(self) -> None:
        import smbclient

        for cache in self._smb.values():
            with contextlib.suppress(Exception):
                smbclient.reset_connection_cache(connection_cache=cache)
        self._smb.clear()


def _usable(conn) -> bool:
    """An smbprotocol Connection still connected, whose receive worker has not died."""
    transport = getattr(conn, "transport", None)
    return bool(transport is not None and transport.connected and conn._t_exc is None)


# --- processes and locks ------------------------------------------------------------------


def _env() -> dict[str, str]:
    # samba-tool runs on the system's python3: keep the venv's settings away from it
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def _run(*args: str, timeout: float = 120) -> str:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, env=_env(), timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)!r} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def _tool(*args: str) -> str:
    return _run("samba-tool", *args, "-s", str(CONF))


def _is_our_dc(pid: int) -> bool:
    """The samba binary, and the one that wrote its pid into our pid directory (samba
    renames its process title, so its command line does not say which config it runs)."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        own = int((RUN / "pid" / "samba.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return os.path.basename(exe).startswith("samba") and own == pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def _read_pid() -> int | None:
    """The DC's pid: ours, else the one samba wrote itself (if our file got lost)."""
    for path in (PID_FILE, RUN / "pid" / "samba.pid"):
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


def _stop(pid: int, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM the DC's main process (it stops its smbd and winbindd), then make sure."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            if sig == signal.SIGTERM:
                os.kill(pid, sig)
            else:  # it leads its own process group: take the children down with it
                os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    break
            elif not _alive(pid):
                break
            time.sleep(0.1)
        else:
            continue
        break
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # stray children, if any
    with contextlib.suppress(FileNotFoundError):
        PID_FILE.unlink()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _who_listens(port: int) -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return out or "unknown"
    return "unknown"


@contextlib.contextmanager
def _flock(path: Path, mode: int, timeout: float = 300) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:.0f}s") from None
                time.sleep(0.2)
        yield fd
    finally:
        os.close(fd)


def _others_use_dc() -> bool:
    """True while another live test session holds its shared lock on the DC."""
    fd = os.open(ROOT / "users.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# --- provisioning -------------------------------------------------------------------------


def _samba_version() -> str:
    return _run("samba", "--version").strip()


def _cache_file() -> Path:
    key = hashlib.sha256(f"{RECIPE}|{_samba_version()}|{RUN}".encode()).hexdigest()[:16]
    return ROOT / "cache" / f"dc-{key}.tar"


def _write_conf(port: int) -> None:
    """smb.conf = what provision wrote, plus our [global] lines and the shares."""
    base = (RUN / "etc" / "smb.conf.provisioned").read_text()
    extra = "\n".join(
        [
            "\tldap server require strong auth = no",
            f"\tsmb ports = {port}",
            "\tdisable netbios = yes",
            f"\tpid directory = {RUN / 'pid'}",
            f"\tncalrpc dir = {RUN / 'ncalrpc'}",
            f"\tlog file = {RUN / 'log' / 'samba.log'}",
            "\tlog level = 1",
            "\tmax log size = 10000",
            "",
        ]
    )
    conf = base.replace("[global]\n", "[global]\n" + extra, 1)
    for share in SHARES:
        conf += f"\n[{share}]\n\tpath = {RUN / 'shares' / share}\n\tread only = no\n"
    conf += (
        f"\n[{BENCH_SHARE}]\n\tpath = {RUN / 'shares' / BENCH_SHARE}\n\tread only = no\n"
        "\taio read size = 0\n\taio write size = 0\n"
        f"\n[{SEALED_SHARE}]\n\tpath = {RUN / 'shares' / SEALED_SHARE}\n\tread only = no\n"
        "\tsmb encrypt = required\n"
    )
    for extra in (BENCH_SHARE, SEALED_SHARE):
        (RUN / "shares" / extra).mkdir(parents=True, exist_ok=True)
    CONF.write_text(conf)


def _provision() -> None:
    """Provision the domain into RUN and populate what does not need a running DC."""
    shutil.rmtree(RUN, ignore_errors=True)
    RUN.mkdir(parents=True)
    empty = RUN / "empty.conf"
    empty.write_text("")  # -s on an empty file keeps the host's /etc/samba/smb.conf out
    _run(
        "samba-tool",
        "domain",
        "provision",
        f"--targetdir={RUN}",
        "-s",
        str(empty),
        f"--realm={REALM}",
        f"--domain={DOMAIN}",
        "--server-role=dc",
        "--dns-backend=NONE",
        f"--host-ip={HOST}",
        f"--adminpass={ADMIN_PASSWORD}",
        "--option=interfaces=127.0.0.1",
        "--option=bind interfaces only=yes",
        timeout=300,
    )
    shutil.copy(CONF, RUN / "etc" / "smb.conf.provisioned")
    for sub in ("pid", "ncalrpc", "log", *(f"shares/{s}" for s in SHARES)):
        (RUN / sub).mkdir(parents=True, exist_ok=True)
    _write_conf(PREFERRED_SMB_PORT)

    # Cached for months: passwords must not expire under the tests.
    _tool("domain", "passwordsettings", "set", "--max-pwd-age=0", "--min-pwd-age=0")
    for user, password in USERS.items():
        _tool("user", "create", user, password, f"--given-name={user.title()}")
    for user in DISABLED:
        _tool("user", "disable", user)
    for group in GROUPS:
        _tool("group", "add", group)
    for group, members in GROUPS.items():
        _tool("group", "addmembers", group, ",".join(members))

    sids = _lookup_sids()
    for share in SHARES:
        _tool("ntacl", "set", f"--service={share}", SHARE_ROOT_SDDL, str(RUN / "shares" / share))
    for folder, sddl in FOLDER_SDDL.items():
        path = RUN / "shares" / "data" / folder
        path.mkdir()
        _tool("ntacl", "set", "--service=data", sddl.format(**sids), str(path))
    (RUN / "sids").write_text("".join(f"{k}={v}\n" for k, v in sids.items()))


def _lookup_sids() -> dict[str, str]:
    sids = {}
    for kind, names in (("user", USERS), ("group", GROUPS)):
        for name in names:
            out = _tool(kind, "show", name, "--attributes=objectSid")
            sids[name] = out.split("objectSid:", 1)[1].split()[0]
    domain = sids["alice"].rsplit("-", 1)[0]
    sids.update(
        domain=domain,
        Administrator=f"{domain}-500",
        **{"Domain Admins": f"{domain}-512", "Domain Users": f"{domain}-513"},
    )
    return sids


def _tar(*args: str) -> None:
    _run("tar", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner", *args, timeout=300)


def _prepare_run_dir() -> str:
    """Unpack the cached domain into RUN, provisioning (and caching) it first if needed."""
    cache = _cache_file()
    if cache.exists():
        shutil.rmtree(RUN, ignore_errors=True)
        RUN.mkdir(parents=True)
        try:
            _tar("-xpf", str(cache), "-C", str(RUN))
            return "cached"
        except RuntimeError:
            cache.unlink()  # damaged: provision afresh
    _provision()
    cache.parent.mkdir(parents=True, exist_ok=True)
    for old in cache.parent.glob("dc-*.tar"):
        old.unlink()
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
    os.close(fd)
    _tar("-cpf", tmp, "-C", str(RUN), ".")
    os.replace(tmp, cache)
    return "provisioned"


# --- start and populate -------------------------------------------------------------------


def _start(port: int) -> subprocess.Popen:
    _write_conf(port)
    for name in ("pid", "ncalrpc"):
        shutil.rmtree(RUN / name, ignore_errors=True)
        (RUN / name).mkdir()
    log = open(RUN / "log" / "samba.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        ["samba", "-M", "single", "-s", str(CONF), "--foreground", "--no-process-group"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=_env(),
        start_new_session=True,  # its own process group: stopped by its PID, not by name
    )
    log.close()
    PID_FILE.write_text(f"{proc.pid}\n")
    try:
        wait_for_port(port, HOST, timeout=90, proc=proc)
        wait_for_port(LDAP_PORT, HOST, timeout=90, proc=proc)
        deadline = time.monotonic() + 90
        while subprocess.run(["wbinfo", "-p"], capture_output=True, env=_env()).returncode:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("winbindd of the DC did not answer `wbinfo -p`")
            time.sleep(0.2)
    except BaseException as exc:
        _stop(proc.pid, proc)
        tail = (RUN / "log" / "samba.out").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Samba DC did not start: {exc}\n--- samba output ---\n{tail}") from exc
    return proc


def _populate(dc: SambaDC) -> None:
    """Files are made over SMB, so each gets an NT ACL inherited from its folder."""
    marker = RUN / "populated"
    if not marker.exists():
        for path, data in FILES.items():
            attributes = FILE_ATTRIBUTE_HIDDEN if path in HIDDEN_FILES else 0
            dc.put_file("data", path, data, attributes)
        marker.write_text("")
    _populate_acl_cases(dc)


# The permission cases that need a running DC: a user made, granted access and deleted
# (his SID then resolves nowhere), and a foreign principal (made by adding another domain's
# SID to a group). Done at each start, after the cached domain is unpacked, so a DC that
# another session started before these existed gets them too.
DELETED_USER = "dave"
FOREIGN_SID = "S-1-5-21-1111111111-2222222222-3333333333-1201"
ACL_CASES = {
    "engineering": [("{Engineering}", MODIFY), ("{Administrator}", FULL)],
    "orphaned": [
        ("{deleted}", MODIFY),
        ("{foreign}", READ),
        ("{Domain Users}", READ),
        ("{Administrator}", FULL),
    ],
}
ACL_FILES = {"engineering/design.txt": b"blueprints\n", "orphaned/old-report.txt": b"2015\n"}


def _populate_acl_cases(dc: SambaDC) -> None:
    marker = RUN / "populated-acl-cases"
    if marker.exists():
        return
    import ldap

    from migrator.acl import sd
    from migrator.storage import connector_for

    conn = ldap.initialize(dc.ldap_uri)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 10)
    conn.simple_bind_s(f"{dc.admin_user}@{dc.realm}", dc.admin_password)

    def sid_of(dn: str) -> str:
        (_, attrs), *_ = conn.search_s(dn, ldap.SCOPE_BASE, attrlist=["objectSid"])
        return sd.sid_from_bytes(attrs["objectSid"][0])[0]

    user_dn = f"CN={DELETED_USER},CN=Users,{dc.base_dn}"
    partners_dn = f"CN=Partners,CN=Users,{dc.base_dn}"
    with contextlib.suppress(ldap.NO_SUCH_OBJECT):
        conn.delete_s(user_dn)  # left by an interrupted run
    conn.add_s(user_dn, [("objectClass", [b"user"]), ("sAMAccountName", [DELETED_USER.encode()])])
    with contextlib.suppress(ldap.ALREADY_EXISTS):
        conn.add_s(partners_dn, [("objectClass", [b"group"]), ("sAMAccountName", [b"Partners"])])
    with contextlib.suppress(ldap.TYPE_OR_VALUE_EXISTS):
        # Samba makes the foreign security principal object for a SID it does not know
        conn.modify_s(partners_dn, [(ldap.MOD_ADD, "member", [f"<SID={FOREIGN_SID}>".encode()])])
    extra = {"deleted": sid_of(user_dn), "foreign": FOREIGN_SID, "Partners": sid_of(partners_dn)}
    sids = {**dc.sids, **extra}
    oici = sd.OBJECT_INHERIT_ACE | sd.CONTAINER_INHERIT_ACE
    # AUTO_INHERIT_REQ: the server flags what children inherit as INHERITED, as Windows does
    control = sd.SE_SELF_RELATIVE | sd.SE_DACL_AUTO_INHERITED | sd.SE_DACL_AUTO_INHERIT_REQ
    share = connector_for(dc.smb_url("data"), dc.admin_password)
    try:
        for folder, entries in ACL_CASES.items():
            share.mkdir(folder)
            dacl = tuple(
                sd.Ace("allow", who.format(**sids), int(mask, 16), oici) for who, mask in entries
            )
            share.write_acl(
                folder,
                sd.SecurityDescriptor(
                    sids["Administrator"], sids["Domain Users"], dacl, control=control
                ),
            )
    finally:
        share.close()
    for path, data in ACL_FILES.items():
        dc.put_file("data", path, data)
    conn.delete_s(user_dn)
    conn.unbind_s()
    with open(RUN / "sids", "a") as f:
        f.write("".join(f"{k}={v}\n" for k, v in extra.items()))
    dc.sids.update(extra)
    marker.write_text("")


def ensure_extra_shares(port: int) -> None:
    """A DC started by an older version of this file (a session still running) may lack
    the [bench] and [sealed] shares: write them into its smb.conf and have smbd reload."""
    text = CONF.read_text()
    if f"[{BENCH_SHARE}]" in text and f"[{SEALED_SHARE}]" in text:
        return
    _write_conf(port)
    _run("smbcontrol", "-s", str(CONF), "smbd", "reload-config")
    time.sleep(1)  # smbd re-reads its configuration asynchronously


def _port_in_conf() -> int:
    for line in CONF.read_text().splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "smb ports":
            return int(value.split()[0])
    raise RuntimeError(f"no 'smb ports' in {CONF}")


def _make_dc(pid: int, port: int) -> SambaDC:
    sids = dict(line.split("=", 1) for line in (RUN / "sids").read_text().splitlines())
    return SambaDC(
        host=HOST,
        port=port,
        realm=REALM,
        domain=DOMAIN,
        admin_user=ADMIN_USER,
        admin_password=ADMIN_PASSWORD,
        users=dict(USERS),
        sids=sids,
        base_dn=BASE_DN,
        ldap_uri=f"ldap://{HOST}:{LDAP_PORT}",
        directory=RUN,
        pid=pid,
        shares={s: RUN / "shares" / s for s in (*SHARES, BENCH_SHARE, SEALED_SHARE)},
    )


def _healthy(port: int) -> bool:
    if not (_listening(port) and _listening(LDAP_PORT)):
        return False
    return subprocess.run(["wbinfo", "-p"], capture_output=True, env=_env()).returncode == 0


@contextlib.contextmanager
def running_dc() -> Iterator[SambaDC]:
    """Start (or share) the DC and populate it; stop it when the last user leaves. The
    session fixture below is this; benchmarks use it directly to run standalone."""
    if shutil.which("samba") is None or shutil.which("samba-tool") is None:
        raise RuntimeError("Samba is not installed: run `make system-test` (Debian samba-ad-dc)")
    ROOT.mkdir(parents=True, exist_ok=True)
    users_fd = os.open(ROOT / "users.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    proc = None
    started = time.monotonic()
    with _flock(ROOT / "control.lock", fcntl.LOCK_EX):
        pid = _read_pid()
        reuse = False
        if pid and _alive(pid) and _is_our_dc(pid):
            if _others_use_dc() and _healthy(_port_in_conf()):
                reuse = True  # another live session runs it: share it
            else:
                _stop(pid)  # left by a killed run
        if not reuse:
            deadline = time.monotonic() + 30
            while not _port_free(LDAP_PORT):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"port {LDAP_PORT} is taken by another LDAP server, so no Samba DC can "
                        f"start: {_who_listens(LDAP_PORT)}"
                    )
                time.sleep(0.3)
            t0 = time.monotonic()
            TIMINGS["provision"] = _prepare_run_dir()
            TIMINGS["prepare_s"] = time.monotonic() - t0
            port = PREFERRED_SMB_PORT if _port_free(PREFERRED_SMB_PORT) else free_port()
            t0 = time.monotonic()
            proc = _start(port)
            _PROCS[proc.pid] = proc
            TIMINGS["start_s"] = time.monotonic() - t0
            pid = proc.pid
        else:
            TIMINGS["provision"] = "shared with another session"
        port = _port_in_conf()
        ensure_extra_shares(port)
        dc = _make_dc(pid, port)
        t0 = time.monotonic()
        _populate(dc)
        TIMINGS["populate_s"] = time.monotonic() - t0
        fcntl.flock(users_fd, fcntl.LOCK_SH)
    TIMINGS["total_s"] = time.monotonic() - started
    try:
        yield dc
    finally:
        dc.close()
        with _flock(ROOT / "control.lock", fcntl.LOCK_EX):
            os.close(users_fd)  # drops our shared lock
            if not _others_use_dc():
                pid = _read_pid()
                if pid and _is_our_dc(pid):
                    _stop(pid, _PROCS.get(pid))


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    """A running Samba AD DC with users, groups, shares and ACL'd folders (see module doc)."""
    with contextlib.ExitStack() as stack:
        try:
            dc = stack.enter_context(running_dc())
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield dc


def restart_dc(dc: SambaDC, down_seconds: float = 0.0) -> float:
    """Stop the running DC by its PID and start it again on the same port from the same
    directory, as an administrator restarting a file server would; every client connection
    drops. Returns how long the DC was away. Sessions sharing the DC see the same outage."""
    with _flock(ROOT / "control.lock", fcntl.LOCK_EX):
        pid = _read_pid()
        if not (pid and _is_our_dc(pid)):
            raise RuntimeError("no running DC of ours to restart")
        dc.close()  # the fixture's own smbclient connections die with the server
        t0 = time.monotonic()
        _stop(pid, _PROCS.pop(pid, None))
        if down_seconds:
            time.sleep(down_seconds)
        proc = _start(dc.port)
        _PROCS[proc.pid] = proc
        dc.pid = proc.pid
        return time.monotonic() - t0


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        shown = ", ".join(
            f"{k} {v:.1f}s" if isinstance(v, float) else f"{k}: {v}" for k, v in TIMINGS.items()
        )
        terminalreporter.write_line(f"samba_dc: {shown}")


# --- the contract suite's SMB connectors ----------------------------------------------------


@pytest.fixture
def contract_smb(samba_dc: SambaDC) -> Iterator:
    """A fresh SMBConnector rooted at an empty folder in [data], with a sibling folder and a
    file beside it that it must never see."""
    from migrator.storage import connector_for

    base = samba_dc.make_folder("data")
    samba_dc.make_folder("data", f"{base}/root")
    samba_dc.put_file("data", f"{base}/root-sibling/x.txt", b"not under the root")
    samba_dc.put_file("data", f"{base}/outside.txt", b"not under the root")
    connector = connector_for(samba_dc.smb_url("data", f"{base}/root"), samba_dc.admin_password)
    try:
        yield connector
    finally:
        connector.close()


@pytest.fixture
def contract_smb_missing(samba_dc: SambaDC) -> Iterator:
    from migrator.storage import connector_for

    base = samba_dc.make_folder("data")
    url = samba_dc.smb_url("data", f"{base}/no-such-folder")
    connector = connector_for(url, samba_dc.admin_password)
    try:
        yield connector
    finally:
        connector.close()
