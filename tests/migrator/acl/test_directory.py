"""SID resolution, membership and the directory export against the real Samba AD DC."""

from __future__ import annotations

import json
import socket
import time

import pytest

from migrator.acl.directory import (
    SCIM_GROUP,
    SCIM_USER,
    DirectoryAuthError,
    DirectoryGroup,
    DirectoryUnavailable,
    DirectoryUser,
    LdapDirectory,
    parse_extended_dn,
    to_scim,
)
from migrator.acl.model import Sid
from tests.servers.util import free_port


@pytest.fixture
def directory(samba_dc):
    with LdapDirectory(
        samba_dc.ldap_uri,
        bind_dn=f"{samba_dc.admin_user}@{samba_dc.realm}",
        bind_password=samba_dc.admin_password,
        base_dn=samba_dc.base_dn,
    ) as directory:
        yield directory


def names(principals) -> list[str]:
    return [p.name for p in principals]


# --- resolution -------------------------------------------------------------------------------


def test_resolves_the_fixture_users_and_groups(samba_dc, directory):
    sids = samba_dc.sids
    found = directory.resolve(
        [sids[k] for k in ("alice", "bob", "carol", "Finance", "Platform", "Domain Users")]
    )
    alice = found[sids["alice"]]
    assert (alice.kind, alice.name, alice.account) == ("user", "EXAMPLE\\alice", "alice")
    assert alice.upn == "alice@example.test" and alice.enabled is True
    assert alice.dn.endswith(f"CN=Users,{samba_dc.base_dn}")
    assert found[sids["carol"]].enabled is False
    assert (found[sids["Finance"]].kind, found[sids["Finance"]].name) == (
        "group",
        "EXAMPLE\\Finance",
    )
    assert found[sids["Domain Users"]].name == "EXAMPLE\\Domain Users"
    assert directory.domain_name == "EXAMPLE"
    assert directory.domain_sid == sids["domain"]
    assert directory.dns_domain == "example.test"


def test_builtin_and_well_known_resolve_without_asking(directory):
    assert directory.domain_sid  # the domain's own facts, read once
    before = directory.searches
    found = directory.resolve(["S-1-5-32-544", "S-1-1-0", "S-1-5-18", "S-1-3-0", "S-1-5-11"])
    assert directory.searches == before
    assert [found[s].name for s in ("S-1-5-32-544", "S-1-1-0", "S-1-5-18", "S-1-3-0")] == [
        "BUILTIN\\Administrators",
        "Everyone",
        "NT AUTHORITY\\SYSTEM",
        "CREATOR OWNER",
    ]
    assert found["S-1-5-32-544"].kind == "builtin"
    assert found["S-1-5-11"].kind == "well_known"


def test_deleted_and_unknown_sids_are_orphaned_never_guessed(samba_dc, directory):
    deleted = samba_dc.sids["deleted"]  # dave: granted access to orphaned/, then deleted
    made_up = f"{samba_dc.sids['domain']}-987654"
    other_domain = "S-1-5-21-7-8-9-1000"
    found = directory.resolve([deleted, made_up, other_domain.lower()])
    for sid in (deleted, made_up):
        assert found[sid].kind == "orphaned" and not found[sid].resolved
        assert found[sid].name == sid
        assert "no account with this SID in EXAMPLE" in found[sid].detail
    assert found[other_domain].kind == "orphaned"
    assert "another domain (S-1-5-21-7-8-9)" in found[other_domain].detail


def test_foreign_security_principal(samba_dc, directory):
    foreign = directory.resolve_one(samba_dc.sids["foreign"])
    assert foreign.kind == "foreign" and foreign.resolved
    assert "CN=ForeignSecurityPrincipals" in foreign.dn
    assert foreign.label.endswith("(foreign)")
    assert names(directory.members_of(samba_dc.sids["Partners"])) == [samba_dc.sids["foreign"]]


def test_plain_user_account_can_resolve(samba_dc):
    with LdapDirectory(
        samba_dc.ldap_uri, bind_dn=f"alice@{samba_dc.realm}", bind_password="Alice-Passw0rd!"
    ) as directory:
        assert directory.resolve_one(samba_dc.sids["bob"]).name == "EXAMPLE\\bob"
        assert directory.naming_context == samba_dc.base_dn  # from the root DSE


# --- membership -----------------------------------------------------------------------------------


def test_nested_group_membership(samba_dc, directory):
    sids = samba_dc.sids
    assert names(directory.groups_of(sids["bob"])) == [
        "BUILTIN\\Users",
        "EXAMPLE\\Domain Users",
        "EXAMPLE\\Engineering",  # through Platform
        "EXAMPLE\\Platform",
    ]
    assert names(directory.groups_of(sids["bob"], nested=False)) == [
        "EXAMPLE\\Domain Users",
        "EXAMPLE\\Platform",
    ]
    assert names(directory.groups_of(sids["Platform"])) == ["EXAMPLE\\Engineering"]
    assert "EXAMPLE\\Engineering" not in names(directory.groups_of(sids["alice"]))
    assert names(directory.members_of(sids["Engineering"])) == [
        "EXAMPLE\\bob",
        "EXAMPLE\\Platform",
    ]
    assert names(directory.members_of(sids["Engineering"], nested=False)) == ["EXAMPLE\\Platform"]
    # members by primary group are not in Domain Users' `member`: found anyway
    assert {"EXAMPLE\\alice", "EXAMPLE\\bob", "EXAMPLE\\carol"} <= set(
        names(directory.members_of(sids["Domain Users"]))
    )
    assert directory.groups_of(sids["deleted"]) == ()  # orphaned: no memberships to ask
    # BUILTIN groups resolve locally but their members live in the directory
    builtin_users = names(directory.members_of("S-1-5-32-545"))
    assert {"EXAMPLE\\Domain Users", "EXAMPLE\\alice", "EXAMPLE\\carol"} <= set(builtin_users)
    assert "BUILTIN\\Users" in names(directory.groups_of(sids["Domain Users"]))


# --- batching and caching ------------------------------------------------------------------------


def test_lookups_are_batched_and_cached(samba_dc, directory):
    sids = samba_dc.sids
    assert directory.domain_sid
    start = directory.searches
    wanted = [sids[k] for k in ("alice", "bob", "carol", "Finance", "Engineering")]
    directory.resolve(wanted)
    assert directory.searches == start + 1  # one OR filter for five SIDs
    for _ in range(100):
        directory.resolve(wanted)
        directory.resolve_one(sids["alice"])
    assert directory.searches == start + 1
    directory.resolve([sids["deleted"]])  # a negative answer is cached as well
    directory.resolve([sids["deleted"]])
    assert directory.searches == start + 2


def test_batches_hold_at_most_batch_size_sids(samba_dc):
    sids = samba_dc.sids
    with LdapDirectory(
        samba_dc.ldap_uri,
        bind_dn=f"{samba_dc.admin_user}@{samba_dc.realm}",
        bind_password=samba_dc.admin_password,
        batch_size=2,
    ) as directory:
        assert directory.domain_sid
        start = directory.searches
        wanted = [sids[k] for k in ("alice", "bob", "carol", "Finance", "deleted")]
        found = directory.resolve(wanted)
        assert directory.searches - start == 3  # 2 + 2 + 1
        assert [found[s].kind for s in wanted] == ["user", "user", "user", "group", "orphaned"]


# --- export ------------------------------------------------------------------------------------


def test_export_users_and_groups(samba_dc, directory):
    entries = list(directory.export())
    users = {e.account: e for e in entries if isinstance(e, DirectoryUser)}
    groups = {e.account: e for e in entries if isinstance(e, DirectoryGroup)}
    assert set(users) == {"alice", "bob", "carol"}  # Administrator, krbtgt: system accounts
    assert users["carol"].enabled is False
    assert users["alice"].enabled and users["bob"].enabled
    alice, bob = users["alice"], users["bob"]
    assert alice.upn == "alice@example.test"
    assert alice.display_name == "Alice" and alice.given_name == "Alice"
    assert alice.sid == samba_dc.sids["alice"]
    assert [g.name for g in alice.groups] == ["Domain Users", "Finance"]
    assert [g.name for g in bob.groups] == ["Domain Users", "Platform"]
    assert "Engineering" in [g.name for g in bob.nested_groups]  # nested
    assert "Engineering" not in [g.name for g in alice.nested_groups]
    assert {"Finance", "Engineering", "Platform", "Partners"} <= set(groups)
    assert "Domain Users" not in groups  # a system group, with include_system only
    assert [(m.name, m.kind) for m in groups["Engineering"].members] == [("Platform", "group")]
    assert [(m.sid, m.kind) for m in groups["Finance"].members] == [
        (samba_dc.sids["alice"], "user")
    ]
    assert [g.name for g in groups["Platform"].groups] == ["Engineering"]
    assert [(m.sid, m.kind) for m in groups["Partners"].members] == [
        (samba_dc.sids["foreign"], "foreign")
    ]
    every = {e.account for e in directory.users(include_system=True)}
    assert {"Administrator", "alice"} <= every


def test_export_is_paged(samba_dc):
    with LdapDirectory(
        samba_dc.ldap_uri,
        bind_dn=f"{samba_dc.admin_user}@{samba_dc.realm}",
        bind_password=samba_dc.admin_password,
        base_dn=samba_dc.base_dn,
        page_size=1,
    ) as directory:
        directory._group_graph()
        start = directory.searches
        stream = directory.users()
        first = next(stream)
        assert directory.searches == start + 1  # one page read, one entry handed out
        rest = list(stream)
        assert len(rest) == 2 and first.account not in {u.account for u in rest}
        assert directory.searches >= start + 3


def test_scim_user_and_group(samba_dc, directory):
    users = {u.account: u for u in directory.users()}
    carol = to_scim(users["carol"])
    assert carol["schemas"] == [SCIM_USER]
    assert carol["userName"] == "carol@example.test"
    assert carol["active"] is False
    assert carol["externalId"] == samba_dc.sids["carol"]
    assert carol["meta"] == {"resourceType": "User"}
    assert "emails" not in carol  # no mail attribute: nothing invented
    alice = to_scim(users["alice"], user_name="alice@example.com")
    assert alice["userName"] == "alice@example.com"
    assert alice["name"]["givenName"] == "Alice"
    assert {"value": samba_dc.sids["Finance"], "display": "Finance", "type": "direct"} in alice[
        "groups"
    ]
    groups = {g.account: g for g in directory.groups()}
    engineering = to_scim(groups["Engineering"])
    assert engineering == {
        "schemas": [SCIM_GROUP],
        "externalId": samba_dc.sids["Engineering"],
        "displayName": "Engineering",
        "members": [{"value": samba_dc.sids["Platform"], "display": "Platform", "type": "Group"}],
        "meta": {"resourceType": "Group"},
    }
    assert to_scim(groups["Partners"])["members"] == []  # a foreign SID cannot be provisioned
    json.dumps([to_scim(e) for e in directory.export()])


# --- failures ----------------------------------------------------------------------------------


def test_bad_password_is_an_auth_error(samba_dc):
    directory = LdapDirectory(samba_dc.ldap_uri, bind_dn="alice@EXAMPLE.TEST", bind_password="no")
    with pytest.raises(DirectoryAuthError, match="refused the bind"):
        directory.resolve([samba_dc.sids["bob"]])


def test_nothing_listening_fails_fast():
    directory = LdapDirectory(f"ldap://127.0.0.1:{free_port()}", timeout=2)
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="cannot reach"):
        directory.resolve(["S-1-5-21-1-2-3-1000"])
    assert time.monotonic() - started < 2


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)  # accepts the TCP handshake, never says a word
        port = silent.getsockname()[1]
        directory = LdapDirectory(f"ldap://127.0.0.1:{port}", timeout=1)
        started = time.monotonic()
        with pytest.raises(DirectoryUnavailable):
            directory.resolve(["S-1-5-21-1-2-3-1000"])
        assert time.monotonic() - started < 5


def test_reconnects_after_close(samba_dc, directory):
    directory.resolve_one(samba_dc.sids["alice"])
    directory.close()
    assert directory.resolve_one(samba_dc.sids["bob"]).name == "EXAMPLE\\bob"


def test_parse_extended_dn_both_sid_forms():
    sid = "S-1-5-21-1-2-3-1105"
    hexsid = bytes(Sid.parse(sid)).hex()
    assert parse_extended_dn(
        f"<GUID=85fadcc5d3438d4f9f5abcd1c737749c>;<SID={hexsid}>;CN=Finance,DC=x".encode()
    ) == (sid, "CN=Finance,DC=x")
    assert parse_extended_dn(f"<GUID=ab>;<SID={sid}>;CN=a,DC=x") == (sid, "CN=a,DC=x")
    assert parse_extended_dn("<GUID=ab>;CN=contact,DC=x") == (None, "CN=contact,DC=x")
    assert parse_extended_dn("CN=plain,DC=x") == (None, "CN=plain,DC=x")
