"""OpenLDAP fixture: our staff directory, one slapd per test run, in a private folder.

    base DN dc=staff,dc=test, LDAP on 127.0.0.1:3890 (a free port if another run holds it)
    service account cn=reader,ou=system,dc=staff,dc=test (search-bind; reads, never writes)
    users (inetOrgPerson, uid): dana and alice in cn=support (support engineers),
    erin in cn=admins (superusers), frank in no group
    groups: groupOfNames under ou=groups

`alice` exists here and in the Samba AD of the customer (with another password), so tests
can show that a user of one directory never authenticates through the other.

slapd runs in the foreground (-d 0) from a static slapd.conf (-f) with an mdb database that
slapadd fills before start (0.1 s), in its own process group, and is stopped by its PID.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .util import free_port, wait_for_port

HOST = "127.0.0.1"
PREFERRED_PORT = 3890
BASE_DN = "dc=staff,dc=test"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "Root-Staff-Passw0rd!"
READER_DN = f"cn=reader,ou=system,{BASE_DN}"
READER_PASSWORD = "Reader-Staff-Passw0rd!"
USERS = {
    "dana": "Dana-Staff-Passw0rd!",
    "erin": "Erin-Staff-Passw0rd!",
    "frank": "Frank-Staff-Passw0rd!",
    "alice": "Alice-Staff-Passw0rd!",  # not AD alice's password
}
GROUPS = {"support": ["dana", "alice"], "admins": ["erin"]}
SCHEMAS = ("core", "cosine", "inetorgperson")


def _ssha(password: str) -> str:
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass
class StaffLDAP:
    """What tests get from `slapd`. Passwords are test fixtures, not secrets."""

    uri: str
    port: int
    base_dn: str
    bind_dn: str
    bind_password: str
    users: dict[str, str]
    pid: int
    directory: Path
    groups: dict[str, str] = field(default_factory=dict)  # name -> DN

    def user_dn(self, uid: str) -> str:
        return f"uid={uid},{PEOPLE_DN}"

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment variables that point the staff directory at this server."""
        values = {
            "AUTH_LDAP_SERVER_URI": self.uri,
            "AUTH_LDAP_DIRECTORY_KIND": "openldap",
            "AUTH_LDAP_BIND_DN": self.bind_dn,
            "AUTH_LDAP_BIND_PASSWORD": self.bind_password,
            "AUTH_LDAP_USER_SEARCH_BASE": PEOPLE_DN,
            "AUTH_LDAP_GROUP_SEARCH_BASE": GROUPS_DN,
            "AUTH_LDAP_STAFF_GROUP": self.groups["support"],
            "AUTH_LDAP_SUPERUSER_GROUP": self.groups["admins"],
        }
        values.update(overrides)
        return values

    def _admin(self):
        import ldap

        conn = ldap.initialize(self.uri)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 5)
        conn.simple_bind_s(ROOT_DN, ROOT_PASSWORD)
        return conn

    def set_group_members(self, group: str, members: list[str]) -> None:
        """Replace a group's members (uids); groupOfNames needs at least one, so an empty
        list leaves the reader account as its only member."""
        import ldap

        dns = [self.user_dn(m) for m in members] or [READER_DN]
        conn = self._admin()
        try:
            conn.modify_s(
                self.groups[group], [(ldap.MOD_REPLACE, "member", [d.encode() for d in dns])]
            )
        finally:
            conn.unbind_s()


def _ldif() -> str:
    entries = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: Staff\ndc: staff",
        f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people",
        f"dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups",
        f"dn: ou=system,{BASE_DN}\nobjectClass: organizationalUnit\nou: system",
        f"dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
        f"cn: reader\nuserPassword: {_ssha(READER_PASSWORD)}",
    ]
    for uid, password in USERS.items():
        entries.append(
            f"dn: uid={uid},{PEOPLE_DN}\nobjectClass: inetOrgPerson\nuid: {uid}\n"
            f"cn: {uid.title()} Staff\ngivenName: {uid.title()}\nsn: Staff\n"
            f"mail: {uid}@staff.test\nuserPassword: {_ssha(password)}"
        )
    for name, members in GROUPS.items():
        lines = [f"dn: cn={name},{GROUPS_DN}", "objectClass: groupOfNames", f"cn: {name}"]
        lines += [f"member: uid={m},{PEOPLE_DN}" for m in members]
        entries.append("\n".join(lines))
    return "\n\n".join(entries) + "\n"


def _conf(folder: Path) -> str:
    schemas = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS)
    return f"""{schemas}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {folder / "slapd.pid"}
argsfile {folder / "slapd.args"}

database mdb
maxsize 16777216
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {_ssha(ROOT_PASSWORD)}
directory {folder / "db"}
index objectClass,uid,member eq

# Users bind with their own password; the reader account searches; nobody else reads.
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{READER_DN}" read
    by self read
    by * none
"""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def start_slapd(folder: Path) -> tuple[subprocess.Popen, int]:
    slapd = "/usr/sbin/slapd"
    if not os.path.exists(slapd):
        pytest.fail("OpenLDAP is not installed: run `make system-test` (Debian slapd ldap-utils)")
    (folder / "db").mkdir(parents=True)
    conf = folder / "slapd.conf"
    conf.write_text(_conf(folder))
    (folder / "data.ldif").write_text(_ldif())
    subprocess.run(
        ["/usr/sbin/slapadd", "-q", "-f", str(conf), "-l", str(folder / "data.ldif")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = PREFERRED_PORT if _port_free(PREFERRED_PORT) else free_port()
    log = open(folder / "slapd.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [slapd, "-f", str(conf), "-h", f"ldap://{HOST}:{port}/", "-d", "0"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped by its PID
    )
    log.close()
    try:
        wait_for_port(port, HOST, timeout=30, proc=proc)
    except (RuntimeError, TimeoutError) as exc:
        _stop(proc)
        raise RuntimeError(f"{exc}; slapd log:\n{(folder / 'slapd.log').read_text()}") from exc
    return proc, port


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaffLDAP]:
    """A running OpenLDAP staff directory (see the module docstring)."""
    folder = tmp_path_factory.mktemp("slapd")
    proc, port = start_slapd(folder)
    try:
        yield StaffLDAP(
            uri=f"ldap://{HOST}:{port}",
            port=port,
            base_dn=BASE_DN,
            bind_dn=READER_DN,
            bind_password=READER_PASSWORD,
            users=dict(USERS),
            pid=proc.pid,
            directory=folder,
            groups={name: f"cn={name},{GROUPS_DN}" for name in GROUPS},
        )
    finally:
        _stop(proc)


@pytest.fixture
def slapd_groups(slapd: StaffLDAP) -> Iterator[StaffLDAP]:
    """The staff directory, with its groups put back as they were after the test."""
    try:
        yield slapd
    finally:
        for name, members in GROUPS.items():
            slapd.set_group_members(name, members)
