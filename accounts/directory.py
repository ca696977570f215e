"""Which directory a login belongs to, and whether directory login works right now.

A name with no domain, or with one of AUTH_LDAP_DOMAINS, is the staff directory's; a name
with one of a customer's sign-in domains (name@example.com, EXAMPLE\\name) is that
customer's directory's, and only theirs. So a user of one directory never authenticates
through another, and `alice`, `ALICE`, `alice@example.test` and `EXAMPLE\\alice` reach the
same directory and the same Django user.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.dispatch import receiver
from django_auth_ldap.backend import ldap_error
from django_auth_ldap.config import LDAPSettings

from .ldap_config import directory_settings
from .models import Customer

log = logging.getLogger(__name__)

STATE_KEY = "accounts:staff-directory-state"  # "up" | "down"
STATE_SECONDS = 60


@dataclass(frozen=True)
class Login:
    """A name as typed, split: `name` without domain; `domain` lower-cased or ''."""

    typed: str
    name: str
    domain: str

    @property
    def upn_form(self) -> bool:
        return "@" in self.typed


def parse_login(typed: str) -> Login:
    text = (typed or "").strip()
    if "\\" in text:
        domain, _, name = text.partition("\\")
    elif "@" in text:
        name, _, domain = text.rpartition("@")
    else:
        name, domain = text, ""
    return Login(typed=text, name=name.strip(), domain=domain.strip().lower())


def staff_directory() -> dict[str, Any]:
    return getattr(settings, "MIGRATOR_STAFF_DIRECTORY", None) or {"enabled": False}


def serves_staff(login: Login) -> bool:
    conf = staff_directory()
    return bool(conf.get("enabled")) and (
        not login.domain or login.domain in conf.get("domains", [])
    )


def customer_for(login: Login) -> Customer | None:
    """The customer whose directory this login names, if any (never for a bare name)."""
    if not login.domain or login.domain in staff_directory().get("domains", []):
        return None
    for customer in Customer.objects.exclude(directory_kind="").exclude(directory_uri=""):
        if login.domain in customer.domain_names:
            return customer
    return None


def customer_ldap_settings(customer: Customer) -> LDAPSettings:
    """django-auth-ldap settings for a customer's directory, from its row."""
    values = directory_settings(
        **customer.directory_connection(),
        timeout=getattr(settings, "MIGRATOR_DIRECTORY_TIMEOUT", 3.0),
    )
    result = LDAPSettings.__new__(LDAPSettings)
    result._prefix = f"customer {customer.pk} directory "
    for name, value in {**LDAPSettings.defaults, **values}.items():
        setattr(result, name, value)
    return result


def throttle_key(request, credentials: dict | None) -> str:
    """django-axes counts failures per this key: one key for every spelling of a user."""
    typed = (credentials or {}).get("username")
    if typed is None and request is not None:
        typed = request.POST.get("username", "")
    login = parse_login(typed or "")
    customer = customer_for(login) if login.domain else None
    if customer is not None:
        return f"{login.name.lower()}@{customer.domain_names[0]}"
    if serves_staff(login):
        return login.name.lower()
    return login.typed.lower()


# --- is directory login working? ------------------------------------------------------------


@receiver(ldap_error)
def _directory_error(sender, context, user, request, exception, **kwargs) -> None:
    """django-auth-ldap caught an LDAPError (server down, timeout, bad service account)."""
    log.warning("directory login unavailable (%s): %s", context, type(exception).__name__)
    if request is not None:
        request.directory_unavailable = True
    if getattr(sender, "is_staff_directory", False):
        cache.set(STATE_KEY, "down", STATE_SECONDS)


def staff_directory_reachable(timeout: float = 1.0) -> bool:
    """A cheap check for the login page: did a recent login fail on the directory, or does
    its port refuse connections? The answer is remembered for a minute."""
    if not staff_directory().get("enabled"):
        return True
    state = cache.get(STATE_KEY)
    if state is None:
        parts = urlsplit(settings.AUTH_LDAP_SERVER_URI.split()[0])
        port = parts.port or (636 if parts.scheme == "ldaps" else 389)
        try:
            with socket.create_connection((parts.hostname or "localhost", port), timeout=timeout):
                state = "up"
        except OSError:
            state = "down"
        cache.set(STATE_KEY, state, STATE_SECONDS)
    return state == "up"


def mark_directory_available() -> None:
    cache.set(STATE_KEY, "up", STATE_SECONDS)


def customer_directory_test(customer: Customer) -> tuple[bool, list[str]]:
    """Can this customer's directory be used for sign-in, as set on its row? Bind with
    the service account, then find the user search base and the viewer group. Returns
    (usable, what was found or what is wrong, in words that say what to fix)."""
    import ldap

    conf = customer.directory_connection()
    if not conf["uri"]:
        return False, ["No directory is set: fill in its URI (ldap://host or ldaps://host)."]
    timeout = getattr(settings, "MIGRATOR_DIRECTORY_TIMEOUT", 3.0)
    said: list[str] = []
    try:
        conn = ldap.initialize(conf["uri"])
    except ldap.LDAPError:
        return False, [f"“{conf['uri']}” is not a directory address: use ldap://host[:port]."]
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, timeout)
    conn.set_option(ldap.OPT_TIMEOUT, timeout)
    conn.set_option(ldap.OPT_REFERRALS, 0)
    if conf["ca_file"]:
        conn.set_option(ldap.OPT_X_TLS_CACERTFILE, conf["ca_file"])
        conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    try:
        if conf["start_tls"]:
            conn.start_tls_s()
        conn.simple_bind_s(conf["bind_dn"], conf["bind_password"])
        said.append(
            f"Connected to {conf['uri']} and signed in as {conf['bind_dn'] or 'anonymous'}."
        )
        checks = [
            ("user search base", conf["user_search_base"]),
            ("group search base", conf["group_search_base"]),
            ("viewer group", customer.directory_viewer_group),
        ]
        usable = True
        for what, dn in checks:
            if not dn:
                if what != "group search base":
                    said.append(f"No {what} is set.")
                    usable = False
                continue
            try:
                found = conn.search_s(dn, ldap.SCOPE_BASE, "(objectClass=*)", ["member"])
            except ldap.NO_SUCH_OBJECT:
                said.append(f"The {what} “{dn}” was not found in the directory: check its DN.")
                usable = False
                continue
            members = len(found[0][1].get("member", [])) if found else 0
            extra = f" ({members} direct member(s))" if what == "viewer group" else ""
            said.append(f"The {what} “{dn}” was found{extra}.")
        return usable, said
    except ldap.INVALID_CREDENTIALS:
        said.append("The directory refused the bind DN or its password: check both.")
    except ldap.SERVER_DOWN:
        said.append(
            f"Could not reach {conf['uri']}: check the host and port, and that this "
            "server may connect to it."
        )
    except ldap.CONNECT_ERROR as exc:
        said.append(f"Could not set up TLS with {conf['uri']}: {_ldap_words(exc)}")
    except ldap.LDAPError as exc:
        said.append(f"The directory answered with an error: {_ldap_words(exc)}")
    finally:
        with contextlib.suppress(ldap.LDAPError):
            conn.unbind_s()
    return False, said


def _ldap_words(exc: Exception) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(info.get("info") or info.get("desc") or exc)
