"""Support engineers sign in through the staff directory (OpenLDAP here, AD below)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from accounts.choices import AccountSource
from accounts.forms import REFUSED
from accounts.models import Profile

from .conftest import PASSWORD, login, make_viewer

pytestmark = pytest.mark.django_db

User = get_user_model()


def test_support_engineer_lands_in_the_admin_with_staff_rights(client, staff_ldap):
    response = login(client, "dana", staff_ldap.users["dana"])
    assert response.status_code == 302 and response["Location"] == "/admin/"
    user = User.objects.get(username="dana")
    assert (user.is_staff, user.is_superuser) == (True, False)
    assert (user.first_name, user.email) == ("Dana", "dana@staff.test")
    assert not user.has_usable_password()  # the directory checks it, never Django
    assert user.account_profile.source == AccountSource.STAFF_DIRECTORY
    page = client.get("/admin/").content.decode()
    assert "Migration jobs" in page and "Customers" in page  # the role's permissions
    assert "Users" in page
    assert client.get("/admin/jobs/endpoint/add/").status_code == 200
    assert client.get("/admin/auth/user/add/").status_code == 403  # viewing only


def test_superuser_group_makes_superusers(client, staff_ldap):
    response = login(client, "erin", staff_ldap.users["erin"])
    assert response["Location"] == "/admin/"
    user = User.objects.get(username="erin")
    assert (user.is_staff, user.is_superuser) == (True, True)


@pytest.mark.parametrize("spelling", ["DANA", "Dana", " dana "])
def test_spellings_are_one_user(client, staff_ldap, spelling):
    login(client, "dana", staff_ldap.users["dana"])
    client.logout()
    response = login(client, spelling, staff_ldap.users["dana"])
    assert response.status_code == 302
    assert list(
        User.objects.filter(username__iexact="dana").values_list("username", flat=True)
    ) == ["dana"]


def test_member_of_no_mapped_group_is_refused_with_the_same_message(client, staff_ldap):
    response = login(client, "frank", staff_ldap.users["frank"])
    assert response.status_code == 200 and REFUSED in response.content.decode()
    wrong = login(client, "dana", "not-the-password")
    assert wrong.status_code == 200 and REFUSED in wrong.content.decode()
    assert not User.objects.filter(username="frank").exists()


def test_removal_from_the_group_removes_access_at_next_login(client, slapd_groups, staff_ldap):
    assert login(client, "dana", staff_ldap.users["dana"]).status_code == 302
    client.logout()
    staff_ldap.set_group_members("support", ["alice"])
    response = login(client, "dana", staff_ldap.users["dana"])
    assert response.status_code == 200 and REFUSED in response.content.decode()
    user = User.objects.get(username="dana")
    assert (user.is_staff, user.is_superuser) == (False, False)
    # and promoted: back in a group, staff again
    staff_ldap.set_group_members("support", ["dana", "alice"])
    assert login(client, "dana", staff_ldap.users["dana"]).status_code == 302
    assert User.objects.get(username="dana").is_staff


def test_directory_user_cannot_take_over_a_local_account_of_the_same_name(
    client, staff_ldap, django_user_model
):
    local = make_viewer(django_user_model, "dana")
    response = login(client, "dana", staff_ldap.users["dana"])
    assert response.status_code == 200 and REFUSED in response.content.decode()
    local.refresh_from_db()
    assert not local.is_staff
    assert login(client, "dana", PASSWORD).status_code == 302  # the local password still works


def test_local_password_never_signs_in_a_directory_user(client, staff_ldap):
    login(client, "dana", staff_ldap.users["dana"])
    client.logout()
    user = User.objects.get(username="dana")
    user.set_password("A-local-password-1")  # as if someone set one in the admin
    user.save()
    response = login(client, "dana", "A-local-password-1")
    assert response.status_code == 200 and REFUSED in response.content.decode()


def test_staff_lands_in_admin_even_with_a_next_of_the_portal_and_viewer_never_in_admin(
    client, staff_ldap, django_user_model
):
    response = client.post(
        "/accounts/login/?next=/admin/jobs/",
        {"username": "dana", "password": staff_ldap.users["dana"], "next": "/admin/jobs/"},
    )
    assert response["Location"] == "/admin/jobs/"
    viewer = make_viewer(django_user_model, "viewer@customer.test")
    other = type(client)()
    response = other.post(
        "/accounts/login/",
        {"username": viewer.username, "password": PASSWORD, "next": "/admin/"},
    )
    assert response["Location"] == "/portal/"


def test_staff_directory_on_active_directory_one_user_for_every_spelling(client, staff_ad):
    """Done when: staff log in with AD credentials against the fixture and land in the
    admin; alice, ALICE, alice@example.test and EXAMPLE\\alice are one Django user."""
    password = staff_ad.users["alice"]
    for spelling in ["alice", "ALICE", "alice@example.test", "EXAMPLE\\alice", "example\\Alice"]:
        client.logout()
        response = login(client, spelling, password)
        assert response.status_code == 302, spelling
        assert response["Location"] == "/admin/"
    assert list(User.objects.values_list("username", flat=True)) == ["alice"]
    profile = Profile.objects.get(user__username="alice")
    assert profile.source == AccountSource.STAFF_DIRECTORY


def test_disabled_ad_account_gets_the_wrong_password_message(client, staff_ad):
    carol = login(client, "carol", staff_ad.users["carol"])
    wrong = login(client, "alice", "Not-Alice-Passw0rd!")
    assert carol.status_code == wrong.status_code == 200
    assert REFUSED in carol.content.decode() and REFUSED in wrong.content.decode()
    assert carol.context["form"].errors == wrong.context["form"].errors
    assert not User.objects.filter(username="carol").exists()
