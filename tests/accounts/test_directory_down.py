"""The staff directory is configured but unreachable: local accounts still work, the page
says directory login is unavailable, and nothing hangs for more than a few seconds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from accounts.forms import REFUSED
from tests.servers.util import free_port

from .conftest import PASSWORD, configure_staff_directory, login, make_viewer

pytestmark = pytest.mark.django_db

NOTICE = "Directory login is unavailable right now"


def directory_env(uri: str) -> dict[str, str]:
    return {
        "AUTH_LDAP_SERVER_URI": uri,
        "AUTH_LDAP_DIRECTORY_KIND": "openldap",
        "AUTH_LDAP_USER_SEARCH_BASE": "ou=people,dc=staff,dc=test",
        "AUTH_LDAP_STAFF_GROUP": "cn=support,ou=groups,dc=staff,dc=test",
        "AUTH_LDAP_TIMEOUT": "2",
    }


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: the worst case for a client."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        listener.close()


def test_refused_port_local_accounts_work_and_the_page_says_so(client, settings, django_user_model):
    configure_staff_directory(settings, directory_env(f"ldap://127.0.0.1:{free_port()}"))
    page = client.get("/accounts/login/").content.decode()
    assert NOTICE in page
    started = time.monotonic()
    response = login(client, "dana", "Dana-Staff-Passw0rd!")
    assert time.monotonic() - started < 5
    text = response.content.decode()
    assert response.status_code == 200 and NOTICE in text and REFUSED in text
    assert "Traceback" not in text and "LDAPError" not in text and "SERVER_DOWN" not in text
    viewer = make_viewer(django_user_model, "viewer@customer.test")
    assert login(client, viewer.username, PASSWORD)["Location"] == "/portal/"


def test_silent_server_costs_seconds_not_minutes(
    client, settings, django_user_model, silent_server
):
    configure_staff_directory(settings, directory_env(f"ldap://127.0.0.1:{silent_server}"))
    viewer = make_viewer(django_user_model, "viewer@customer.test")
    started = time.monotonic()
    response = login(client, "dana", "Dana-Staff-Passw0rd!")
    elapsed = time.monotonic() - started
    assert elapsed < 8, f"a login against a silent directory took {elapsed:.1f}s"
    assert NOTICE in response.content.decode()
    started = time.monotonic()
    assert login(client, viewer.username, PASSWORD)["Location"] == "/portal/"
    assert time.monotonic() - started < 2  # local accounts never wait for the directory


def test_no_directory_configured_no_notice(client, settings):
    configure_staff_directory(settings, {})
    assert NOTICE not in client.get("/accounts/login/").content.decode()
    assert not settings.MIGRATOR_STAFF_DIRECTORY["enabled"]


def test_working_directory_no_notice(client, staff_ldap):
    assert NOTICE not in client.get("/accounts/login/").content.decode()
