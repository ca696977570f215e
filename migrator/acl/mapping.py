"""Identity mapping: which destination identity stands for a source principal.

Automatic rules per job (a user's UPN as email, or sAMAccountName@domain; a group's mail,
or its name as an email in a configurable domain), overridden by a CSV with the columns
`source,target,type`. The CSV is validated as a whole: every problem is reported with its
line number and nothing is half-imported. Orphaned, foreign and pseudo principals (CREATOR
OWNER) are never mapped by a rule: only an explicit CSV line maps them. Pure Python.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .model import (
    AUTHENTICATED_USERS,
    EVERYONE,
    PSEUDO_PRINCIPALS,
    AclTranslation,
    Grant,
    Principal,
    canonical_sid,
    is_sid,
)

TYPES = ("user", "group", "domain")
COLUMNS = ("source", "target", "type")
USER_RULES = ("upn", "mail", "sam")
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}$"
)
_DOMAIN_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")


def is_email(text: str) -> bool:
    return bool(_EMAIL_RE.match(text)) and ".." not in text.split("@")[0]


def is_domain(text: str) -> bool:
    return bool(_DOMAIN_RE.match(text))


@dataclass(frozen=True, slots=True)
class Identity:
    """A destination identity: an email of a user or group, or a whole domain."""

    target: str  # "alice@example.com", or "example.com" for type "domain"
    type: str  # "user", "group", "domain"
    rule: str  # how it was found: "csv", "upn", "mail", "sam", "group"


@dataclass(frozen=True, slots=True)
class MappingRules:
    """The automatic rules of one job.

    user_rule: "upn" (the UPN, its domain replaced by `domain` when given), "mail" (the mail
    attribute) or "sam" (sAMAccountName@domain); when it yields nothing, the others are
    tried in that order. Groups: their mail, else their name (lower case, spaces as
    hyphens) @ group_domain (or domain). everyone_domain maps Everyone and Authenticated
    Users to a whole domain (e.g. GCS `domain-example.com`); unset, they stay unmapped.
    """

    user_rule: str = "upn"
    domain: str | None = None
    group_domain: str | None = None
    everyone_domain: str | None = None

    def __post_init__(self) -> None:
        if self.user_rule not in USER_RULES:
            raise ValueError(f"user_rule must be one of {USER_RULES}, not {self.user_rule!r}")
        for name in ("domain", "group_domain", "everyone_domain"):
            value = getattr(self, name)
            if value is not None and not is_domain(value):
                raise ValueError(f"{name} {value!r} is not a domain name")


@dataclass(frozen=True, slots=True)
class CsvProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class MappingCSVError(ValueError):
    """The identity CSV has problems; `problems` lists every one, with line numbers."""

    def __init__(self, problems: list[CsvProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(map(str, problems)))


def _key(source: str) -> str:
    source = source.strip()
    return canonical_sid(source) if is_sid(source) else source.lower()


def parse_mapping_csv(data: str | bytes | Iterable[str]) -> dict[str, Identity]:
    """Parse an override CSV with the header `source,target,type` (any column order).

    source: a SID, DOMAIN\\name, sAMAccountName or UPN; target: an email (type user or
    group) or a domain (type domain). Returns {normalised source: Identity} for the whole
    file, or raises MappingCSVError listing every problem (unknown or missing columns,
    duplicate sources, targets that are not emails, unknown types), each with its line.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise MappingCSVError([CsvProblem(line, f"not UTF-8 text ({exc.reason})")]) from None
    if isinstance(data, str):
        data = io.StringIO(data.removeprefix("\ufeff"), newline="")
    reader = csv.reader(data)
    problems: list[CsvProblem] = []
    header: list[str] | None = None
    for row in reader:
        if any(cell.strip() for cell in row):
            header = [cell.strip().lower() for cell in row]
            break
    if header is None:
        raise MappingCSVError([CsvProblem(1, "the file is empty: expected source,target,type")])
    header_line = reader.line_num
    if len(header) == 1 and ";" in header[0]:
        raise MappingCSVError([CsvProblem(header_line, "columns are separated by ';': use commas")])
    unknown = [c for c in header if c not in COLUMNS]
    missing = [c for c in COLUMNS if c not in header]
    doubled = sorted({c for c in header if header.count(c) > 1 and c in COLUMNS})
    if unknown:
        problems.append(CsvProblem(header_line, f"unknown column(s): {', '.join(unknown)}"))
    if missing:
        problems.append(CsvProblem(header_line, f"missing column(s): {', '.join(missing)}"))
    if doubled:
        problems.append(CsvProblem(header_line, f"column(s) twice: {', '.join(doubled)}"))
    if problems:
        raise MappingCSVError(problems)
    index = {name: header.index(name) for name in COLUMNS}

    result: dict[str, Identity] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(
                CsvProblem(line, f"{len(row)} fields where the header has {len(header)}")
            )
            continue
        source, target, kind = (row[index[c]].strip() for c in COLUMNS)
        kind = kind.lower()
        line_problems = []
        if not source:
            line_problems.append("empty source")
        elif source.upper().startswith("S-") and not is_sid(source):
            line_problems.append(f"source {source!r} is not a valid SID")
        if kind not in TYPES:
            line_problems.append(f"type {kind!r} is not one of {', '.join(TYPES)}")
        if kind == "domain":
            if not is_domain(target):
                line_problems.append(f"target {target!r} is not a domain name")
        elif not is_email(target):
            line_problems.append(f"target {target!r} is not an email address")
        if source and not line_problems:
            key = _key(source)
            if key in first_line:
                line_problems.append(
                    f"source {source!r} is mapped twice (first on line {first_line[key]})"
                )
            else:
                first_line[key] = line
                result[key] = Identity(target.lower(), kind, "csv")
        problems.extend(CsvProblem(line, message) for message in line_problems)
    if problems:
        raise MappingCSVError(problems)
    return result


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.strip().lower()).strip("-.")
    return re.sub(r"-{2,}", "-", slug)


class IdentityMap:
    """Rules plus overrides; `map(principal)` gives its Identity or None (unmapped)."""

    def __init__(
        self,
        rules: MappingRules | None = None,
        overrides: Mapping[str, Identity] | None = None,
    ) -> None:
        self.rules = rules or MappingRules()
        self.overrides = {_key(k): v for k, v in (overrides or {}).items()}

    def _override(self, principal: Principal) -> Identity | None:
        keys = [principal.sid, principal.name]
        if principal.account:
            keys.append(principal.account)
            keys.append(principal.name.split("\\", 1)[-1])
        if principal.upn:
            keys.append(principal.upn)
        for key in keys:
            found = self.overrides.get(_key(key)) if key else None
            if found:
                return found
        return None

    def map(self, principal: Principal) -> Identity | None:
        """The destination identity of `principal`, or None when nothing maps it."""
        found = self._override(principal)
        if found:
            return found
        rules = self.rules
        if principal.sid in (EVERYONE, AUTHENTICATED_USERS):
            return (
                Identity(rules.everyone_domain, "domain", "everyone")
                if rules.everyone_domain
                else None
            )
        if principal.kind in ("orphaned", "foreign", "well_known", "builtin", "computer"):
            return None  # never guessed
        if principal.sid in PSEUDO_PRINCIPALS:
            return None
        if principal.kind == "group":
            if principal.mail and is_email(principal.mail):
                return Identity(principal.mail.lower(), "group", "mail")
            domain = rules.group_domain or rules.domain
            local = _slug(principal.account or "")
            email = f"{local}@{domain}" if domain and local else ""
            return Identity(email, "group", "group") if is_email(email) else None
        if principal.kind != "user":
            return None
        order = [rules.user_rule, *(r for r in USER_RULES if r != rules.user_rule)]
        for rule in order:
            email = self._user_email(principal, rule)
            if email and is_email(email):
                return Identity(email.lower(), "user", rule)
        return None

    def _user_email(self, principal: Principal, rule: str) -> str | None:
        domain = self.rules.domain
        if rule == "upn" and principal.upn:
            local, _, upn_domain = principal.upn.rpartition("@")
            return f"{local}@{domain or upn_domain}" if local else None
        if rule == "mail":
            return principal.mail
        if rule == "sam" and principal.account and domain:
            return f"{principal.account}@{domain}"
        return None


@dataclass(frozen=True, slots=True)
class MappedGrant:
    grant: Grant
    identity: Identity


@dataclass(frozen=True, slots=True)
class Unmapped:
    """A principal of some grant that maps to nobody, with the reason in words."""

    grant: Grant
    principal: Principal
    reason: str


def map_grants(
    translation: AclTranslation | Iterable[Grant],
    principals: Mapping[str, Principal],
    identities: IdentityMap,
) -> tuple[tuple[MappedGrant, ...], tuple[Unmapped, ...]]:
    """Split grants into those with a destination identity and those without (reported).

    `principals` is what a SidResolver returned for the grants' SIDs."""
    grants = translation.grants if isinstance(translation, AclTranslation) else translation
    mapped, unmapped = [], []
    for grant in grants:
        principal = principals.get(grant.principal) or Principal(
            grant.principal, "orphaned", grant.principal, detail="not resolved"
        )
        identity = identities.map(principal)
        if identity is not None:
            mapped.append(MappedGrant(grant, identity))
        else:
            unmapped.append(Unmapped(grant, principal, unmapped_reason(principal)))
    return tuple(mapped), tuple(unmapped)


def unmapped_reason(principal: Principal) -> str:
    """Why the rules could not map a principal, in words for the report."""
    if principal.kind == "orphaned":
        return f"orphaned SID ({principal.detail})" if principal.detail else "orphaned SID"
    if principal.kind == "foreign":
        return "foreign security principal: map it in the identity CSV"
    if principal.sid in PSEUDO_PRINCIPALS:
        return f"{principal.name} stands for the creator: no destination identity"
    if principal.sid in (EVERYONE, AUTHENTICATED_USERS):
        return f"{principal.name}: set a domain for everyone, or map it in the identity CSV"
    if principal.kind in ("well_known", "builtin"):
        return f"{principal.name} has no destination identity: map it in the identity CSV"
    if principal.kind == "computer":
        return "a computer account: map it in the identity CSV"
    if principal.kind == "group":
        return "group without mail, and no group domain set"
    return "no UPN, mail or domain for sAMAccountName@domain"
