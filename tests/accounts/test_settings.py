"""Production settings pass `manage.py check --deploy` with no warnings; the staff
directory is configured from the environment alone."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import ldap
import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.ldap_config import staff_directory_settings

REPO = Path(__file__).resolve().parents[2]


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "MIGRATOR_"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # the browser fixture lets this test process call the ORM under Playwright's loop;
    # a production process never inherits that
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(
        MIGRATOR_DEV="0",
        MIGRATOR_ENV_FILE="",  # production: no checkout's .env
        DJANGO_SETTINGS_MODULE="migrator.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        MIGRATOR_FERNET_KEYS=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        DJANGO_ALLOWED_HOSTS="migrator.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://migrator.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        AUTH_LDAP_SERVER_URI="ldaps://dc.example.com",
        AUTH_LDAP_USER_SEARCH_BASE="DC=example,DC=com",
        AUTH_LDAP_BIND_DN="CN=svc-migrator,CN=Users,DC=example,DC=com",
        AUTH_LDAP_BIND_PASSWORD="not-checked-here",
        AUTH_LDAP_STAFF_GROUP="CN=Support,CN=Users,DC=example,DC=com",
    )
    env.update(extra)
    return env


def manage(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=production_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_has_no_warnings(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout and "WARNING" not in result.stderr


def test_production_without_https_is_warned_about(tmp_path):
    result = manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", MIGRATOR_HTTPS="0")
    assert result.returncode != 0 and "security.W" in result.stderr


def test_missing_search_base_fails_fast_naming_the_variable(tmp_path):
    result = manage(tmp_path, "check", AUTH_LDAP_USER_SEARCH_BASE="")
    assert result.returncode != 0 and "AUTH_LDAP_USER_SEARCH_BASE" in result.stderr


def test_a_production_misconfiguration_is_one_clear_line_not_a_traceback(tmp_path):
    result = manage(tmp_path, "check", DJANGO_SECRET_KEY="")
    assert result.returncode == 2
    assert result.stderr == (
        "manage.py: configuration: Set the environment variable DJANGO_SECRET_KEY.\n"
    )


def test_the_readme_one_shot_command_works_as_printed_without_make(tmp_path):
    """`make` writes the checkout's .env (dev mode, its own keys); after that the
    README's commands run as printed, with nothing else in the environment."""
    made = subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), ".env"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    written = (tmp_path / ".env").read_text()
    assert "MIGRATOR_DEV=1" in written and "DJANGO_SECRET_KEY=" in written
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "MIGRATOR_"))}
    for name in ("DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"):
        env.pop(name, None)
    env.update(MIGRATOR_ENV_FILE=str(tmp_path / ".env"),
               DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")  # fmt: skip
    (tmp_path / "share").mkdir()
    (tmp_path / "share" / "report.txt").write_text("quarterly")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip

    assert run("migrate", "-v0").returncode == 0
    result = run("migrator_run", "--source", str(tmp_path / "share"),
                 "--destination", str(tmp_path / "dst"), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"copied": 1' in result.stdout and "Traceback" not in result.stderr
    assert (tmp_path / "dst" / "report.txt").read_text() == "quarterly"


def test_staff_directory_from_the_environment():
    values = staff_directory_settings(
        {
            "AUTH_LDAP_SERVER_URI": "ldap://dc.example.com",
            "AUTH_LDAP_USER_SEARCH_BASE": "DC=example,DC=com",
            "AUTH_LDAP_START_TLS": "true",
            "AUTH_LDAP_CA_FILE": "/etc/ssl/ca.pem",
            "AUTH_LDAP_TIMEOUT": "2.5",
            "AUTH_LDAP_DOMAINS": "Example.com, EXAMPLE",
        }
    )
    assert values["AUTH_LDAP_START_TLS"] is True
    search = values["AUTH_LDAP_USER_SEARCH"]
    assert search.filterstr == "(|(sAMAccountName=%(user)s)(userPrincipalName=%(user)s))"
    assert type(values["AUTH_LDAP_GROUP_TYPE"]).__name__ == "NestedActiveDirectoryGroupType"
    options = values["AUTH_LDAP_CONNECTION_OPTIONS"]
    assert options[ldap.OPT_NETWORK_TIMEOUT] == options[ldap.OPT_TIMEOUT] == 2.5
    assert options[ldap.OPT_X_TLS_CACERTFILE] == "/etc/ssl/ca.pem"
    assert list(options)[-1] == ldap.OPT_X_TLS_NEWCTX  # applies the TLS options before it
    assert values["MIGRATOR_STAFF_DIRECTORY"]["domains"] == ["example.com", "example"]
    assert staff_directory_settings({})["MIGRATOR_STAFF_DIRECTORY"]["enabled"] is False
    openldap = staff_directory_settings(
        {
            "AUTH_LDAP_SERVER_URI": "ldap://x",
            "AUTH_LDAP_USER_SEARCH_BASE": "dc=x",
            "AUTH_LDAP_DIRECTORY_KIND": "openldap",
        }
    )
    assert openldap["AUTH_LDAP_USER_SEARCH"].filterstr == "(uid=%(user)s)"
    assert type(openldap["AUTH_LDAP_GROUP_TYPE"]).__name__ == "GroupOfNamesType"
    with pytest.raises(ImproperlyConfigured, match="kind"):
        staff_directory_settings(
            {
                "AUTH_LDAP_SERVER_URI": "ldap://x",
                "AUTH_LDAP_USER_SEARCH_BASE": "dc=x",
                "AUTH_LDAP_DIRECTORY_KIND": "novell",
            }
        )
