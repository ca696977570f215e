"""Identity mapping: automatic rules, the override CSV and its validation."""

from __future__ import annotations

import io

import pytest

from migrator.acl.directory import StaticDirectory
from migrator.acl.mapping import (
    Identity,
    IdentityMap,
    MappingCSVError,
    MappingRules,
    map_grants,
    parse_mapping_csv,
)
from migrator.acl.model import Grant, Level, Principal, Scope, translate
from migrator.acl.sd import Ace, SecurityDescriptor

DOMAIN = "S-1-5-21-1-2-3"
ALICE = Principal(
    f"{DOMAIN}-1102",
    "user",
    "EXAMPLE\\alice",
    account="alice",
    upn="alice@example.local",
    mail="Alice.Smith@example.com",
)
BOB = Principal(f"{DOMAIN}-1103", "user", "EXAMPLE\\bob", account="bob")
FINANCE = Principal(f"{DOMAIN}-1105", "group", "EXAMPLE\\Finance", account="Finance")
DOMAIN_USERS = Principal(f"{DOMAIN}-513", "group", "EXAMPLE\\Domain Users", account="Domain Users")
SALES = Principal(
    f"{DOMAIN}-1200", "group", "EXAMPLE\\Sales", account="Sales", mail="sales@corp.com"
)
ORPHAN = Principal(f"{DOMAIN}-1112", "orphaned", f"{DOMAIN}-1112", detail="deleted?")
FOREIGN = Principal("S-1-5-21-9-9-9-1201", "foreign", "S-1-5-21-9-9-9-1201")


# --- rules ------------------------------------------------------------------------------------


def test_upn_rule_with_and_without_a_domain_rewrite():
    assert IdentityMap().map(ALICE) == Identity("alice@example.local", "user", "upn")
    rules = MappingRules(domain="example.com")
    assert IdentityMap(rules).map(ALICE) == Identity("alice@example.com", "user", "upn")


def test_mail_and_sam_rules():
    assert IdentityMap(MappingRules(user_rule="mail")).map(ALICE) == Identity(
        "alice.smith@example.com", "user", "mail"
    )
    sam = IdentityMap(MappingRules(user_rule="sam", domain="example.com"))
    assert sam.map(ALICE) == Identity("alice@example.com", "user", "sam")
    # bob has no UPN and no mail: the sam rule is the fallback, when a domain is known
    assert IdentityMap(MappingRules(domain="example.com")).map(BOB) == Identity(
        "bob@example.com", "user", "sam"
    )
    assert IdentityMap().map(BOB) is None


def test_group_rule_uses_mail_else_a_configurable_domain():
    rules = IdentityMap(MappingRules(domain="example.com", group_domain="groups.example.com"))
    assert rules.map(FINANCE) == Identity("finance@groups.example.com", "group", "group")
    assert rules.map(DOMAIN_USERS) == Identity("domain-users@groups.example.com", "group", "group")
    assert rules.map(SALES) == Identity("sales@corp.com", "group", "mail")
    assert IdentityMap().map(FINANCE) is None  # no domain: unmapped, not guessed


def test_never_guessed():
    rules = IdentityMap(MappingRules(domain="example.com", group_domain="example.com"))
    for principal in (
        ORPHAN,
        FOREIGN,
        Principal("S-1-3-0", "well_known", "CREATOR OWNER"),
        Principal("S-1-5-18", "well_known", "NT AUTHORITY\\SYSTEM"),
        Principal("S-1-5-32-544", "builtin", "BUILTIN\\Administrators"),
        Principal("S-1-1-0", "well_known", "Everyone"),
    ):
        assert rules.map(principal) is None, principal
    everyone = IdentityMap(MappingRules(everyone_domain="example.com"))
    assert everyone.map(Principal("S-1-1-0", "well_known", "Everyone")) == Identity(
        "example.com", "domain", "everyone"
    )


def test_bad_rules_are_refused():
    with pytest.raises(ValueError, match="user_rule"):
        MappingRules(user_rule="guess")
    with pytest.raises(ValueError, match="not a domain"):
        MappingRules(domain="not a domain")


# --- the override CSV -----------------------------------------------------------------------


def test_csv_overrides_rules_by_sid_name_account_or_upn():
    overrides = parse_mapping_csv(
        "source,target,type\n"
        f"{ORPHAN.sid.lower()},archive@example.com,user\n"
        "EXAMPLE\\Finance,finance-team@example.com,group\n"
        "bob,robert@example.com,user\n"
        "alice@example.local,a.smith@example.com,user\n"
        "BUILTIN\\Administrators,it-admins@example.com,group\n"
        "Everyone,example.com,domain\n"
    )
    assert len(overrides) == 6
    identities = IdentityMap(MappingRules(domain="example.com"), overrides)
    assert identities.map(ORPHAN) == Identity("archive@example.com", "user", "csv")
    assert identities.map(FINANCE) == Identity("finance-team@example.com", "group", "csv")
    assert identities.map(BOB) == Identity("robert@example.com", "user", "csv")
    assert identities.map(ALICE) == Identity("a.smith@example.com", "user", "csv")
    admins = Principal("S-1-5-32-544", "builtin", "BUILTIN\\Administrators")
    assert identities.map(admins).target == "it-admins@example.com"
    assert identities.map(Principal("S-1-1-0", "well_known", "Everyone")).type == "domain"


def test_csv_any_column_order_bom_blank_lines_and_bytes():
    data = "\ufefftype,source,target\r\n\r\nuser,alice,alice@example.com\r\n".encode()
    assert parse_mapping_csv(data) == {"alice": Identity("alice@example.com", "user", "csv")}
    assert parse_mapping_csv(io.StringIO("source,target,type\nbob,b@example.com,USER\n")) == {
        "bob": Identity("b@example.com", "user", "csv")
    }


def test_csv_every_problem_with_its_line_and_nothing_imported():
    data = (
        "source,target,type\n"  # line 1
        "alice,alice@example.com,user\n"  # 2: fine
        "bob,not-an-email,user\n"  # 3
        "ALICE,other@example.com,user\n"  # 4: duplicate of line 2 (case-insensitive)
        "Finance,finance@example.com,team\n"  # 5: unknown type
        ",x@example.com,user\n"  # 6: empty source
        "S-1-5-21-x,y@example.com,user\n"  # 7: bad SID
        "carol,carol@example.com\n"  # 8: short row
        "Everyone,not a domain,domain\n"  # 9
        "dave,dave@@example.com,user\n"  # 10
    )
    with pytest.raises(MappingCSVError) as caught:
        parse_mapping_csv(data)
    problems = {p.line: p.message for p in caught.value.problems}
    assert set(problems) == {3, 4, 5, 6, 7, 8, 9, 10}
    assert "'not-an-email' is not an email address" in problems[3]
    assert "mapped twice (first on line 2)" in problems[4]
    assert "type 'team' is not one of user, group, domain" in problems[5]
    assert problems[6] == "empty source"
    assert "not a valid SID" in problems[7]
    assert "2 fields where the header has 3" in problems[8]
    assert "not a domain name" in problems[9]
    assert "line 3: target 'not-an-email' is not an email address" in str(caught.value)


def test_csv_duplicate_sid_in_two_spellings():
    with pytest.raises(MappingCSVError, match="line 3: .*first on line 2"):
        parse_mapping_csv(
            "source,target,type\nS-1-5-21-1-2-3-500,a@example.com,user\ns-1-5-21-1-2-3-500,b@example.com,user\n"
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            "source,target,type,note\nalice,a@example.com,user,x\n",
            "line 1: unknown column(s): note",
        ),
        ("source,target\nalice,a@example.com\n", "line 1: missing column(s): type"),
        ("source,target,source,type\n", "line 1: column(s) twice: source"),
        ("", "line 1: the file is empty"),
        ("\n\n", "line 1: the file is empty"),
        ("source;target;type\nalice;a@example.com;user\n", "line 1: columns are separated by ';'"),
        (b"source,target,type\n\xff\xfe,x,user\n", "line 2: not UTF-8"),
        ("\n\nsrc,target,type\n", "line 3: unknown column(s): src"),
    ],
)
def test_csv_header_problems(data, message):
    with pytest.raises(MappingCSVError) as caught:
        parse_mapping_csv(data)
    assert message in str(caught.value)


# --- grants to destination identities ----------------------------------------------------


def test_map_grants_splits_mapped_and_unmapped_with_reasons():
    acl = SecurityDescriptor(
        owner=ALICE.sid,
        dacl=(
            Ace("allow", ALICE.sid, 0x1301BF, 3),
            Ace("allow", FINANCE.sid, 0x1200A9, 3),
            Ace("allow", ORPHAN.sid, 0x1200A9, 3),
            Ace("allow", "S-1-3-0", 0x10000000, 0xB),
        ),
    )
    translation = translate(acl)
    principals = StaticDirectory([ALICE, FINANCE]).resolve(translation.principals)
    assert principals[ORPHAN.sid].kind == "orphaned"
    assert principals["S-1-3-0"].name == "CREATOR OWNER"
    mapped, unmapped = map_grants(
        translation, principals, IdentityMap(MappingRules(domain="example.com"))
    )
    assert [(m.grant.principal, m.identity.target, m.grant.level) for m in mapped] == [
        (ALICE.sid, "alice@example.com", Level.WRITE),
        (FINANCE.sid, "finance@example.com", Level.READ),
    ]
    reasons = {u.principal.sid: u.reason for u in unmapped}
    assert reasons[ORPHAN.sid].startswith("orphaned SID")
    assert "creator" in reasons["S-1-3-0"]
    # plain grants work too, and a SID missing from `principals` is unmapped, not dropped
    grant = Grant(BOB.sid, Level.READ, Scope.THIS)
    mapped, unmapped = map_grants([grant], {}, IdentityMap())
    assert mapped == () and unmapped[0].grant == grant
