"""Who a SID is: resolution over Active Directory LDAP, and the directory's users and groups.

`LdapDirectory` resolves SIDs in batches (one search with an OR of up to `batch_size`
objectSid values) and caches every answer, negative ones included, so a job over millions
of files with a few hundred distinct ACLs asks the directory a few times. Well-known and
BUILTIN SIDs never reach the network. A SID that resolves nowhere is reported `orphaned`,
never guessed. `users()`/`groups()` stream the directory page by page (simple paged
results), and `to_scim` turns an entry into a SCIM 2.0 resource. python-ldap, no Django.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import ldap
from ldap.controls import LDAPControl, SimplePagedResultsControl
from ldap.filter import escape_filter_chars

from .model import Principal, Sid, canonical_sid, local_principal, sid_domain

IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN: nested membership
# LDAP_SERVER_EXTENDED_DN_OID: DN values come as <GUID=…>;<SID=…>;CN=…, so members and
# memberOf name their SIDs without one more search each
EXTENDED_DN = LDAPControl("1.2.840.113556.1.4.529", True, b"\x30\x03\x02\x01\x01")
ACCOUNTDISABLE = 0x2
PRINCIPAL_ATTRS = [
    "objectSid",
    "objectClass",
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "displayName",
    "userAccountControl",
    "cn",
]
USER_ATTRS = [
    *PRINCIPAL_ATTRS,
    "givenName",
    "sn",
    "objectGUID",
    "memberOf",
    "primaryGroupID",
]
GROUP_ATTRS = [*PRINCIPAL_ATTRS, "objectGUID", "member", "memberOf", "description"]
USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
GROUP_FILTER = "(objectClass=group)"
NOT_SYSTEM = "(!(isCriticalSystemObject=TRUE))"


class DirectoryError(Exception):
    """The directory answered with an error, or not as a directory should."""


class DirectoryUnavailable(DirectoryError):
    """The directory could not be reached or did not answer in time (worth a retry)."""


class DirectoryAuthError(DirectoryError):
    """The directory refused the bind credentials."""


class SidResolver(Protocol):
    def resolve(self, sids: Iterable[str]) -> dict[str, Principal]: ...


# --- what the export yields ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """Another directory object named by a membership: its SID, name and kind."""

    sid: str | None
    name: str
    kind: str  # "user", "group", "foreign", "other"


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    sid: str
    dn: str
    account: str  # sAMAccountName
    upn: str | None
    mail: str | None
    display_name: str | None
    given_name: str | None
    family_name: str | None
    enabled: bool
    groups: tuple[Ref, ...]  # direct memberships, the primary group included
    nested_groups: tuple[Ref, ...]  # every group reached through nesting, direct ones too
    guid: str | None = None

    kind = "user"


@dataclass(frozen=True, slots=True)
class DirectoryGroup:
    sid: str
    dn: str
    account: str
    mail: str | None
    display_name: str | None
    description: str | None
    members: tuple[Ref, ...]  # direct members (users, groups, foreign principals)
    groups: tuple[Ref, ...]  # groups this group is a member of
    nested_groups: tuple[Ref, ...]
    guid: str | None = None

    kind = "group"


# --- helpers --------------------------------------------------------------------------------


def _text(attrs: dict, name: str) -> str | None:
    values = attrs.get(name)
    return values[0].decode("utf-8", "replace") if values else None


def _sid_of(attrs: dict) -> str | None:
    values = attrs.get("objectSid")
    return str(Sid.from_bytes(values[0])) if values else None


def _guid_of(attrs: dict) -> str | None:
    import uuid

    values = attrs.get("objectGUID")
    return str(uuid.UUID(bytes_le=values[0])) if values and len(values[0]) == 16 else None


def parse_extended_dn(value: bytes | str) -> tuple[str | None, str]:
    """(SID or None, plain DN) of '<GUID=…>;<SID=…>;CN=…' (the SID in hex or S-1-… form)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    sid = None
    while text.startswith("<") and ">;" in text:
        part, text = text[1:].split(">;", 1)
        key, _, val = part.partition("=")
        if key.upper() == "SID":
            try:
                sid = canonical_sid(val) if val[:2].upper() == "S-" else None
                sid = sid or str(Sid.from_bytes(bytes.fromhex(val)))
            except ValueError:
                sid = None
    return sid, text


def _cn(dn: str) -> str:
    first = ldap.dn.explode_dn(dn, notypes=True)[:1] if dn else []
    return first[0] if first else dn


def _kind(attrs: dict) -> str:
    classes = {c.decode().lower() for c in attrs.get("objectClass", [])}
    if "foreignsecurityprincipal" in classes:
        return "foreign"
    if "computer" in classes:
        return "computer"
    if "group" in classes:
        return "group"
    if "user" in classes:
        return "user"
    return "other"


# --- the directory --------------------------------------------------------------------------


class LdapDirectory:
    """An Active Directory (or Samba AD) domain, read over LDAP.

    `base_dn` bounds the export (`users`, `groups`); SID resolution searches the whole
    domain naming context, where foreign security principals and BUILTIN live too.
    `searches` counts the LDAP search requests made (each page of a paged search counts).
    """

    def __init__(
        self,
        uri: str,
        *,
        bind_dn: str = "",
        bind_password: str = "",
        base_dn: str = "",
        start_tls: bool = False,
        ca_file: str = "",
        timeout: float = 5.0,
        page_size: int = 500,
        batch_size: int = 100,
    ) -> None:
        self.uri, self.bind_dn, self._password = uri, bind_dn, bind_password
        self.base_dn, self.start_tls, self.ca_file = base_dn, start_tls, ca_file
        self.timeout, self.page_size, self.batch_size = timeout, page_size, batch_size
        self.searches = 0
        self._conn: Any = None
        self._lock = threading.RLock()
        self._cache: dict[str, Principal] = {}
        self._names: dict[str, Principal | None] = {}
        self._groups_cache: dict[tuple[str, bool], tuple[Principal, ...]] = {}
        self._naming: dict[str, str] | None = None
        self._graph: dict[str, tuple[str, tuple[str, ...]]] | None = None

    def __enter__(self) -> LdapDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LdapDirectory({self.uri!r})"

    # connection

    def _connect(self) -> Any:
        conn = ldap.initialize(self.uri)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
        conn.set_option(ldap.OPT_REFERRALS, 0)  # AD's referrals cannot be followed anyway
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, self.timeout)  # connect
        conn.set_option(ldap.OPT_TIMEOUT, self.timeout)  # each synchronous operation
        if self.ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, self.ca_file)
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        if self.start_tls:
            conn.start_tls_s()
        conn.simple_bind_s(self.bind_dn, self._password)
        return conn

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.unbind_s()
            except ldap.LDAPError:
                pass

    def _call(self, op):
        """Run op(conn) with errors translated; reconnect once if the server dropped us."""
        for attempt in (1, 2):
            try:
                with self._lock:
                    if self._conn is None:
                        self._conn = self._connect()
                    return op(self._conn)
            except ldap.INVALID_CREDENTIALS as exc:
                self._conn = None
                raise DirectoryAuthError(f"{self.uri}: the directory refused the bind") from exc
            except (ldap.SERVER_DOWN, ldap.CONNECT_ERROR) as exc:
                self._conn = None
                if attempt == 2:
                    raise DirectoryUnavailable(f"{self.uri}: cannot reach the directory") from exc
            except ldap.TIMEOUT as exc:
                self.close()
                raise DirectoryUnavailable(
                    f"{self.uri}: no answer within {self.timeout:g}s"
                ) from exc
            except ldap.LDAPError as exc:
                info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
                detail = info.get("desc", type(exc).__name__)
                if info.get("info"):
                    detail += f": {info['info']}"
                raise DirectoryError(f"{self.uri}: {detail}") from exc
        raise AssertionError("unreachable")

    def _search(
        self,
        base: str,
        scope: int,
        filterstr: str,
        attrs: list[str] | None,
        *,
        extended_dn: bool = False,
        paged: bool = False,
    ) -> Iterator[tuple[str, dict]]:
        """Entries (referrals left out), page by page when `paged`."""
        page = SimplePagedResultsControl(True, size=self.page_size, cookie=b"") if paged else None
        while True:
            controls = [c for c in (page, EXTENDED_DN if extended_dn else None) if c]

            def op(conn, controls=controls):
                msgid = conn.search_ext(
                    base, scope, filterstr, attrs, serverctrls=controls, timeout=self.timeout
                )
                return conn.result3(msgid, timeout=self.timeout)

            _, entries, _, response_controls = self._call(op)
            self.searches += 1
            for dn, entry in entries:
                if dn is not None and isinstance(entry, dict):
                    yield dn, entry
            if page is None:
                return
            cookie = next(
                (
                    c.cookie
                    for c in response_controls or ()
                    if c.controlType == SimplePagedResultsControl.controlType
                ),
                b"",
            )
            if not cookie:
                return
            page.cookie = cookie

    # the domain

    def _naming_info(self) -> dict[str, str]:
        if self._naming is None:
            root = dict(self._search("", ldap.SCOPE_BASE, "(objectClass=*)", None))
            attrs = root.get("", {})
            context = _text(attrs, "defaultNamingContext") or self.base_dn
            config = _text(attrs, "configurationNamingContext") or f"CN=Configuration,{context}"
            if not context:
                raise DirectoryError(f"{self.uri}: no defaultNamingContext; give base_dn")
            domain = dict(self._search(context, ldap.SCOPE_BASE, "(objectClass=*)", ["objectSid"]))
            domain_sid = _sid_of(next(iter(domain.values()), {})) or ""
            netbios, dns = "", ""
            partitions = self._search(
                f"CN=Partitions,{config}",
                ldap.SCOPE_ONELEVEL,
                f"(nCName={escape_filter_chars(context)})",
                ["nETBIOSName", "dnsRoot"],
            )
            try:
                for _, entry in partitions:
                    netbios = _text(entry, "nETBIOSName") or netbios
                    dns = _text(entry, "dnsRoot") or dns
            except DirectoryError:
                pass  # not readable to this account: named from the DN below
            parts = [rdn[0][1] for rdn in ldap.dn.str2dn(context) if rdn[0][0].upper() == "DC"]
            self._naming = {
                "context": context,
                "domain_sid": domain_sid,
                "domain_name": netbios or (parts[0].upper() if parts else ""),
                "dns_domain": dns or ".".join(parts).lower(),
            }
        return self._naming

    @property
    def naming_context(self) -> str:
        return self._naming_info()["context"]

    @property
    def domain_sid(self) -> str:
        return self._naming_info()["domain_sid"]

    @property
    def domain_name(self) -> str:
        """The NetBIOS name ("EXAMPLE"), as in EXAMPLE\\alice."""
        return self._naming_info()["domain_name"]

    @property
    def dns_domain(self) -> str:
        return self._naming_info()["dns_domain"]

    # SID resolution

    def _principal(self, sid: str, dn: str, attrs: dict) -> Principal:
        kind = _kind(attrs)
        account = _text(attrs, "sAMAccountName")
        uac = _text(attrs, "userAccountControl")
        enabled = None if uac is None else not int(uac) & ACCOUNTDISABLE
        if kind == "foreign":
            return Principal(
                sid,
                "foreign",
                sid,
                dn=dn,
                detail="foreign security principal: an account of another domain",
            )
        name = f"{self.domain_name}\\{account}" if account else (_text(attrs, "cn") or sid)
        return Principal(
            sid,
            kind,
            name,
            account=account,
            upn=_text(attrs, "userPrincipalName"),
            mail=_text(attrs, "mail"),
            display_name=_text(attrs, "displayName"),
            enabled=enabled,
            dn=dn,
        )

    def _orphan(self, sid: str) -> Principal:
        domain = Sid.parse(sid).domain
        if domain is not None and str(domain) == self.domain_sid:
            detail = f"no account with this SID in {self.domain_name} (deleted?)"
        elif domain is not None:
            detail = (
                f"an account of another domain ({domain}) that {self.domain_name} does not know"
            )
        else:
            detail = f"not found in {self.domain_name}"
        return Principal(sid, "orphaned", sid, detail=detail)

    def resolve(self, sids: Iterable[str]) -> dict[str, Principal]:
        """{SID: Principal} for every SID given (canonical form as key). Unknown SIDs come
        back as kind "orphaned". Raises DirectoryUnavailable when the directory is down."""
        wanted = {canonical_sid(s) for s in sids}
        with self._lock:
            missing = []
            for sid in wanted:
                if sid in self._cache:
                    continue
                local = local_principal(sid)
                if local is not None:
                    self._cache[sid] = local
                else:
                    missing.append(sid)
            missing.sort()
            for start in range(0, len(missing), self.batch_size):
                self._lookup(missing[start : start + self.batch_size])
            return {sid: self._cache[sid] for sid in wanted}

    def resolve_one(self, sid: str) -> Principal:
        return next(iter(self.resolve([sid]).values()))

    def _lookup(self, batch: list[str]) -> None:
        terms = "".join(f"(objectSid={Sid.parse(s).ldap_value()})" for s in batch)
        found = {}
        for dn, attrs in self._search(
            self.naming_context, ldap.SCOPE_SUBTREE, f"(|{terms})", PRINCIPAL_ATTRS
        ):
            sid = _sid_of(attrs)
            if sid in batch:
                found[sid] = self._principal(sid, dn, attrs)
        for sid in batch:
            self._cache[sid] = found.get(sid) or self._orphan(sid)

    @property
    def cached(self) -> int:
        return len(self._cache)

    def find_account(self, name: str) -> Principal | None:
        """The user or group whose UPN, mail or sAMAccountName is `name` (an identity
        CSV's target, to learn its SID); None when there is none or more than one."""
        key = name.strip().lower()
        with self._lock:
            if key in self._names:
                return self._names[key]
        value = escape_filter_chars(name.strip())
        which = (
            f"(|(userPrincipalName={value})(mail={value}))"
            if "@" in value
            else f"(sAMAccountName={value})"
        )
        query = f"(&(|(objectClass=user)(objectClass=group)){which})"
        found = []
        for dn, attrs in self._search(
            self.naming_context, ldap.SCOPE_SUBTREE, query, PRINCIPAL_ATTRS
        ):
            sid = _sid_of(attrs)
            if sid:
                found.append(self._principal(sid, dn, attrs))
        principal = found[0] if len(found) == 1 else None
        with self._lock:
            self._names[key] = principal
            if principal is not None:
                self._cache.setdefault(principal.sid, principal)
        return principal

    # membership

    def _located(self, sid: str) -> Principal:
        """The principal with its DN: BUILTIN groups resolve locally, without one, but
        have an object in the directory that holds their members."""
        principal = self.resolve_one(sid)
        if principal.dn or principal.kind != "builtin":
            return principal
        query = f"(objectSid={Sid.parse(principal.sid).ldap_value()})"
        for dn, _ in self._search(self.naming_context, ldap.SCOPE_SUBTREE, query, ["objectSid"]):
            principal = replace(principal, dn=dn)
            with self._lock:
                self._cache[principal.sid] = principal
        return principal

    def groups_of(self, sid: str, *, nested: bool = True) -> tuple[Principal, ...]:
        """The groups `sid` is a member of: directly (memberOf and the primary group), or
        through nesting too (tokenGroups for accounts; the in-chain rule for groups)."""
        key = (canonical_sid(sid), nested)
        if key in self._groups_cache:
            return self._groups_cache[key]
        principal = self._located(sid)
        if not principal.dn:
            return ()
        sids: set[str] = set()
        if nested and principal.kind in ("user", "computer"):
            for _, attrs in self._search(
                principal.dn, ldap.SCOPE_BASE, "(objectClass=*)", ["tokenGroups"]
            ):
                sids.update(str(Sid.from_bytes(v)) for v in attrs.get("tokenGroups", []))
        elif nested:
            chain = f"(member:{IN_CHAIN}:={escape_filter_chars(principal.dn)})"
            for _, attrs in self._search(
                self.naming_context, ldap.SCOPE_SUBTREE, chain, ["objectSid"], paged=True
            ):
                sids.add(_sid_of(attrs) or "")
        else:
            for _, attrs in self._search(
                principal.dn,
                ldap.SCOPE_BASE,
                "(objectClass=*)",
                ["memberOf", "primaryGroupID"],
                extended_dn=True,
            ):
                sids.update(parse_extended_dn(v)[0] or "" for v in attrs.get("memberOf", []))
                primary = _text(attrs, "primaryGroupID")
                if primary and self.domain_sid:
                    sids.add(f"{self.domain_sid}-{primary}")
        sids.discard("")
        result = tuple(sorted(self.resolve(sids).values(), key=lambda p: p.name.lower()))
        self._groups_cache[key] = result
        return result

    def members_of(self, group_sid: str, *, nested: bool = True) -> tuple[Principal, ...]:
        """The members of a group (users, groups, foreign principals), nested ones too
        when `nested`. Members by primary group (Domain Users) are not in any `member`
        attribute: they are asked for by primaryGroupID, for nested groups as well."""
        group = self._located(group_sid)
        if not group.dn:
            return ()
        rule = f":{IN_CHAIN}:" if nested else ""
        members: dict[str, Principal] = {}
        self._add_members(f"(memberOf{rule}={escape_filter_chars(group.dn)})", members)
        groups = [group.sid] + [p.sid for p in members.values() if p.kind == "group"]
        rids = sorted(
            {
                Sid.parse(s).rid
                for s in (groups if nested else groups[:1])
                if sid_domain(s) == self.domain_sid
            }
        )
        if rids:
            self._add_members("(|" + "".join(f"(primaryGroupID={r})" for r in rids) + ")", members)
        return tuple(sorted(members.values(), key=lambda p: p.name.lower()))

    def _add_members(self, filterstr: str, members: dict[str, Principal]) -> None:
        for dn, attrs in self._search(
            self.naming_context, ldap.SCOPE_SUBTREE, filterstr, PRINCIPAL_ATTRS, paged=True
        ):
            sid = _sid_of(attrs)
            if sid and sid not in members:
                principal = local_principal(sid) or self._principal(sid, dn, attrs)
                with self._lock:
                    self._cache.setdefault(sid, principal)
                members[sid] = principal

    # export

    def _group_graph(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """{group SID: (name, SIDs of the groups it is a direct member of)}, loaded once
        for the whole domain: groups are few next to users and files."""
        if self._graph is None:
            graph = {}
            for _, attrs in self._search(
                self.naming_context,
                ldap.SCOPE_SUBTREE,
                GROUP_FILTER,
                ["objectSid", "sAMAccountName", "cn", "memberOf"],
                extended_dn=True,
                paged=True,
            ):
                sid = _sid_of(attrs)
                if not sid:
                    continue
                local = local_principal(sid)
                name = local.name if local else (_text(attrs, "sAMAccountName") or sid)
                parents = tuple(
                    s for s in (parse_extended_dn(v)[0] for v in attrs.get("memberOf", [])) if s
                )
                graph[sid] = (name, parents)
            self._graph = graph
        return self._graph

    def _refs(self, sids: Iterable[str]) -> tuple[Ref, ...]:
        graph = self._group_graph()
        refs = {Ref(s, graph[s][0] if s in graph else s, "group") for s in sids}
        return tuple(sorted(refs, key=lambda r: r.name.lower()))

    def _closure(self, direct: Iterable[str]) -> set[str]:
        graph = self._group_graph()
        seen: set[str] = set()
        todo = list(direct)
        while todo:
            sid = todo.pop()
            if sid in seen:
                continue
            seen.add(sid)
            todo.extend(graph.get(sid, ("", ()))[1])
        return seen

    def _export_filter(self, base: str, include_system: bool) -> str:
        return f"(&{base}{NOT_SYSTEM})" if not include_system else base

    def users(self, *, include_system: bool = False) -> Iterator[DirectoryUser]:
        """Every user under base_dn, streamed page by page. Built-in accounts
        (Administrator, Guest, krbtgt) only with include_system."""
        self._group_graph()  # loaded before the stream starts
        for dn, attrs in self._search(
            self.base_dn or self.naming_context,
            ldap.SCOPE_SUBTREE,
            self._export_filter(USER_FILTER, include_system),
            USER_ATTRS,
            extended_dn=True,
            paged=True,
        ):
            sid = _sid_of(attrs)
            if not sid:
                continue
            direct = {s for s in (parse_extended_dn(v)[0] for v in attrs.get("memberOf", [])) if s}
            primary = _text(attrs, "primaryGroupID")
            if primary and self.domain_sid:
                direct.add(f"{self.domain_sid}-{primary}")
            uac = int(_text(attrs, "userAccountControl") or 0)
            yield DirectoryUser(
                sid=sid,
                dn=parse_extended_dn(dn)[1],
                account=_text(attrs, "sAMAccountName") or "",
                upn=_text(attrs, "userPrincipalName"),
                mail=_text(attrs, "mail"),
                display_name=_text(attrs, "displayName"),
                given_name=_text(attrs, "givenName"),
                family_name=_text(attrs, "sn"),
                enabled=not uac & ACCOUNTDISABLE,
                groups=self._refs(direct),
                nested_groups=self._refs(self._closure(direct)),
                guid=_guid_of(attrs),
            )

    def groups(self, *, include_system: bool = False) -> Iterator[DirectoryGroup]:
        """Every group under base_dn with its direct members, streamed page by page.
        BUILTIN and the domain's own groups (Domain Users, …) only with include_system;
        members by primary group are not listed in a group's `member`, so not here."""
        graph = self._group_graph()
        for dn, attrs in self._search(
            self.base_dn or self.naming_context,
            ldap.SCOPE_SUBTREE,
            self._export_filter(GROUP_FILTER, include_system),
            GROUP_ATTRS,
            extended_dn=True,
            paged=True,
        ):
            sid = _sid_of(attrs)
            if not sid:
                continue
            members = []
            for value in attrs.get("member", []):
                member_sid, member_dn = parse_extended_dn(value)
                if member_sid in graph:
                    members.append(Ref(member_sid, graph[member_sid][0], "group"))
                elif "CN=FOREIGNSECURITYPRINCIPALS," in member_dn.upper():
                    members.append(Ref(member_sid, member_sid or _cn(member_dn), "foreign"))
                else:
                    kind = "user" if member_sid else "other"
                    members.append(Ref(member_sid, _cn(member_dn), kind))
            parents = graph.get(sid, ("", ()))[1]
            yield DirectoryGroup(
                sid=sid,
                dn=parse_extended_dn(dn)[1],
                account=_text(attrs, "sAMAccountName") or "",
                mail=_text(attrs, "mail"),
                display_name=_text(attrs, "displayName"),
                description=_text(attrs, "description"),
                members=tuple(sorted(members, key=lambda r: r.name.lower())),
                groups=self._refs(parents),
                nested_groups=self._refs(self._closure(parents)),
                guid=_guid_of(attrs),
            )

    def export(self, *, include_system: bool = False) -> Iterator[DirectoryUser | DirectoryGroup]:
        """Users, then groups: the identity table of the "AD users" export."""
        yield from self.users(include_system=include_system)
        yield from self.groups(include_system=include_system)


class StaticDirectory:
    """A SidResolver over known principals (tests, or a directory exported earlier).
    Well-known SIDs resolve locally; anything else unknown is orphaned."""

    def __init__(self, principals: Iterable[Principal] = ()) -> None:
        self.principals = {canonical_sid(p.sid): p for p in principals}

    def resolve(self, sids: Iterable[str]) -> dict[str, Principal]:
        result = {}
        for sid in map(canonical_sid, sids):
            found = self.principals.get(sid) or local_principal(sid)
            result[sid] = found or Principal(sid, "orphaned", sid, detail="not in the directory")
        return result


# --- SCIM 2.0 (RFC 7643) ----------------------------------------------------------------------

SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def to_scim(entry: DirectoryUser | DirectoryGroup, *, user_name: str | None = None) -> dict:
    """A SCIM 2.0 User or Group resource for a directory entry, ready to POST to a
    provisioning endpoint. externalId is the SID, the key permissions are mapped by;
    `user_name` overrides the UPN (e.g. with the identity mapping's email)."""
    if isinstance(entry, DirectoryUser):
        resource: dict[str, Any] = {
            "schemas": [SCIM_USER],
            "externalId": entry.sid,
            "userName": user_name or entry.upn or entry.account,
            "active": entry.enabled,
        }
        name = {
            k: v
            for k, v in (
                ("givenName", entry.given_name),
                ("familyName", entry.family_name),
                ("formatted", entry.display_name),
            )
            if v
        }
        if name:
            resource["name"] = name
        if entry.display_name:
            resource["displayName"] = entry.display_name
        if entry.mail:
            resource["emails"] = [{"value": entry.mail, "type": "work", "primary": True}]
        if entry.groups:
            resource["groups"] = [
                {"value": g.sid, "display": g.name, "type": "direct"} for g in entry.groups
            ]
        resource["meta"] = {"resourceType": "User"}
        return resource
    resource = {
        "schemas": [SCIM_GROUP],
        "externalId": entry.sid,
        "displayName": entry.display_name or entry.account,
        "members": [
            {"value": m.sid, "display": m.name, "type": "Group" if m.kind == "group" else "User"}
            for m in entry.members
            if m.sid and m.kind in ("user", "group")
        ],
        "meta": {"resourceType": "Group"},
    }
    return resource
