"""Repeated failures are throttled per user (every spelling of a name) and per address;
lockouts are visible to staff in the admin."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.forms import REFUSED

from .conftest import PASSWORD, configure_staff_directory, login, make_viewer, signed_in

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed sign-in attempts"


@pytest.fixture
def limit(settings) -> int:
    settings.AXES_FAILURE_LIMIT = 3
    return 3


def test_per_user_lockout_from_any_address_and_any_spelling(
    client, settings, limit, staff_ldap, django_user_model
):
    configure_staff_directory(settings, staff_ldap.env(AUTH_LDAP_DOMAINS="staff.test"))
    for i, spelling in enumerate(["dana", "DANA", "dana@staff.test"]):
        response = login(client, spelling, "wrong", REMOTE_ADDR=f"10.0.0.{i + 1}")
        if i < limit - 1:
            assert response.status_code == 200 and REFUSED in response.content.decode()
        else:  # the failure that reaches the limit already answers with the lockout
            assert response.status_code == 429 and LOCKED in response.content.decode()
    # the right password, from a fresh address: still locked out
    response = login(Client(), "dana", staff_ldap.users["dana"], REMOTE_ADDR="10.0.0.9")
    assert response.status_code == 429 and LOCKED in response.content.decode()
    # other users from other addresses are not affected
    viewer = make_viewer(django_user_model, "viewer@customer.test")
    assert login(Client(), viewer.username, PASSWORD, REMOTE_ADDR="10.0.1.1").status_code == 302


def test_per_address_lockout_across_names(limit, django_user_model):
    viewer = make_viewer(django_user_model, "viewer@customer.test")
    attacker = Client(REMOTE_ADDR="10.9.9.9")
    for name in ["a@x.test", "b@x.test"]:
        assert login(attacker, name, "wrong").status_code == 200
    assert login(attacker, "c@x.test", "wrong").status_code == 429
    response = login(attacker, viewer.username, PASSWORD)
    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert login(Client(REMOTE_ADDR="10.8.8.8"), viewer.username, PASSWORD).status_code == 302


def test_success_resets_the_count(limit, django_user_model):
    viewer = make_viewer(django_user_model, "viewer@customer.test")
    client = Client(REMOTE_ADDR="10.7.7.7")
    for _ in range(limit - 1):
        login(client, viewer.username, "wrong")
    assert login(client, viewer.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(limit - 1):
        login(client, viewer.username, "wrong")
    assert login(client, viewer.username, PASSWORD).status_code == 302


def test_lockouts_are_visible_to_staff_in_the_admin(limit, django_user_model):
    attacker = Client(REMOTE_ADDR="10.6.6.6")
    for _ in range(limit):
        login(attacker, "victim@customer.test", "wrong")
    staff = django_user_model.objects.create_user("eng", password=PASSWORD, is_staff=True)
    page = signed_in(staff).get("/admin/axes/accessattempt/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "victim@customer.test" in text and "10.6.6.6" in text
