"""django-auth-ldap settings for a directory, from plain values.

The staff directory's values come from the environment (settings.py calls
`staff_directory_settings(os.environ)`); a customer's directory's come from its Customer
row (accounts.directory). Imports no models, so settings.py may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ldap
from django.core.exceptions import ImproperlyConfigured
from django_auth_ldap.config import (
    GroupOfNamesType,
    LDAPSearch,
    NestedActiveDirectoryGroupType,
)

AD = "ad"
OPENLDAP = "openldap"
KINDS = (AD, OPENLDAP)

USER_FILTERS = {
    AD: "(|(sAMAccountName=%(user)s)(userPrincipalName=%(user)s))",
    OPENLDAP: "(uid=%(user)s)",
}
# The attribute whose value, lower-cased, becomes the Django username.
LOGIN_ATTRS = {AD: "sAMAccountName", OPENLDAP: "uid"}
ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
DEFAULT_TIMEOUT = 3.0


def directory_settings(
    *,
    uri: str,
    kind: str,
    bind_dn: str = "",
    bind_password: str = "",
    user_search_base: str,
    group_search_base: str = "",
    start_tls: bool = False,
    ca_file: str = "",
    user_filter: str = "",
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """django-auth-ldap settings (names without the AUTH_LDAP_ prefix) for one directory:
    search-bind, network timeouts so an unreachable server costs seconds, not minutes."""
    if kind not in KINDS:
        raise ImproperlyConfigured(f"directory kind must be one of {KINDS}, not {kind!r}")
    if not user_search_base:
        raise ImproperlyConfigured("a directory needs a user search base")
    group_base = group_search_base or user_search_base
    options: dict[int, Any] = {
        ldap.OPT_NETWORK_TIMEOUT: timeout,  # connect
        ldap.OPT_TIMEOUT: timeout,  # each synchronous operation (bind, search)
        ldap.OPT_REFERRALS: 0,  # AD answers with referrals python-ldap cannot follow
    }
    if ca_file:
        options[ldap.OPT_X_TLS_CACERTFILE] = ca_file
        options[ldap.OPT_X_TLS_REQUIRE_CERT] = ldap.OPT_X_TLS_DEMAND
        options[ldap.OPT_X_TLS_NEWCTX] = 0  # last: applies the options above
    if kind == AD:
        group_search = LDAPSearch(group_base, ldap.SCOPE_SUBTREE, "(objectClass=group)")
        group_type = NestedActiveDirectoryGroupType()
    else:
        group_search = LDAPSearch(group_base, ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)")
        group_type = GroupOfNamesType()
    return {
        "SERVER_URI": uri,
        "BIND_DN": bind_dn,
        "BIND_PASSWORD": bind_password,
        "START_TLS": start_tls,
        "CONNECTION_OPTIONS": options,
        "USER_SEARCH": LDAPSearch(
            user_search_base, ldap.SCOPE_SUBTREE, user_filter or USER_FILTERS[kind]
        ),
        "GROUP_SEARCH": group_search,
        "GROUP_TYPE": group_type,
        "USER_ATTR_MAP": dict(ATTR_MAP),
        "ALWAYS_UPDATE_USER": True,
        "CACHE_TIMEOUT": 0,  # group membership is read afresh at each login
        "FIND_GROUP_PERMS": False,
    }


def _bool(environ: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def staff_directory_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """AUTH_LDAP_* settings and MIGRATOR_STAFF_DIRECTORY from the environment.

    Without AUTH_LDAP_SERVER_URI the staff directory is off and local accounts are all
    there is. Variables: AUTH_LDAP_SERVER_URI, AUTH_LDAP_DIRECTORY_KIND (ad | openldap),
    AUTH_LDAP_BIND_DN, AUTH_LDAP_BIND_PASSWORD, AUTH_LDAP_USER_SEARCH_BASE,
    AUTH_LDAP_GROUP_SEARCH_BASE, AUTH_LDAP_START_TLS, AUTH_LDAP_CA_FILE,
    AUTH_LDAP_USER_FILTER, AUTH_LDAP_STAFF_GROUP, AUTH_LDAP_SUPERUSER_GROUP,
    AUTH_LDAP_DOMAINS (names typed as name@domain or DOMAIN\\name), AUTH_LDAP_TIMEOUT.
    """
    uri = (environ.get("AUTH_LDAP_SERVER_URI") or "").strip()
    if not uri:
        return {"MIGRATOR_STAFF_DIRECTORY": {"enabled": False, "domains": []}}
    kind = (environ.get("AUTH_LDAP_DIRECTORY_KIND") or AD).strip().lower()
    base = (environ.get("AUTH_LDAP_USER_SEARCH_BASE") or "").strip()
    if not base:
        raise ImproperlyConfigured(
            "Set the environment variable AUTH_LDAP_USER_SEARCH_BASE (AUTH_LDAP_SERVER_URI is set)."
        )
    try:
        timeout = float(environ.get("AUTH_LDAP_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        raise ImproperlyConfigured("AUTH_LDAP_TIMEOUT must be a number of seconds.")
    values = directory_settings(
        uri=uri,
        kind=kind,
        bind_dn=environ.get("AUTH_LDAP_BIND_DN") or "",
        bind_password=environ.get("AUTH_LDAP_BIND_PASSWORD") or "",
        user_search_base=base,
        group_search_base=environ.get("AUTH_LDAP_GROUP_SEARCH_BASE") or "",
        start_tls=_bool(environ, "AUTH_LDAP_START_TLS"),
        ca_file=environ.get("AUTH_LDAP_CA_FILE") or "",
        user_filter=environ.get("AUTH_LDAP_USER_FILTER") or "",
        timeout=timeout,
    )
    staff_group = (environ.get("AUTH_LDAP_STAFF_GROUP") or "").strip()
    superuser_group = (environ.get("AUTH_LDAP_SUPERUSER_GROUP") or "").strip()
    out = {f"AUTH_LDAP_{k}": v for k, v in values.items()}
    out["MIGRATOR_STAFF_DIRECTORY"] = {
        "enabled": True,
        "kind": kind,
        "domains": [d.strip().lower() for d in (environ.get("AUTH_LDAP_DOMAINS") or "").split(",")],
        "staff_group": staff_group,
        "superuser_group": superuser_group,
    }
    out["MIGRATOR_STAFF_DIRECTORY"]["domains"] = [
        d for d in out["MIGRATOR_STAFF_DIRECTORY"]["domains"] if d
    ]
    return out
