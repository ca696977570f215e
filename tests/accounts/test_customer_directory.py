"""Customer viewers from a customer's own AD (the Samba fixture); never across directories."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from accounts.choices import AccountSource, MembershipSource
from accounts.forms import REFUSED
from accounts.models import Membership

from .conftest import customer_with_ad, login, make_job

pytestmark = pytest.mark.django_db

User = get_user_model()


def test_viewer_from_the_customers_ad_lands_on_their_jobs(client, customer_ad, samba_dc):
    make_job(customer_ad, "Finance share move", "srv/finance")
    response = login(client, "alice@example.test", samba_dc.users["alice"])
    assert response.status_code == 302 and response["Location"] == "/portal/"
    user = User.objects.get()
    assert user.username == "alice@example.test"
    assert (user.is_staff, user.is_superuser) == (False, False)
    assert user.account_profile.source == AccountSource.CUSTOMER_DIRECTORY
    membership = Membership.objects.get(user=user)
    assert (membership.customer, membership.source) == (customer_ad, MembershipSource.DIRECTORY)
    page = client.get("/portal/").content.decode()
    assert "Finance share move" in page
    assert client.get("/admin/").status_code == 403


@pytest.mark.parametrize(
    "spelling", ["ALICE@EXAMPLE.TEST", "EXAMPLE\\alice", "example\\ALICE", " alice@example.test "]
)
def test_every_spelling_is_one_user(client, customer_ad, samba_dc, spelling):
    assert login(client, "alice@example.test", samba_dc.users["alice"]).status_code == 302
    client.logout()
    assert login(client, spelling, samba_dc.users["alice"]).status_code == 302
    assert list(User.objects.values_list("username", flat=True)) == ["alice@example.test"]


def test_disabled_account_and_wrong_password_get_one_message(client, customer_ad, samba_dc):
    carol = login(client, "carol@example.test", samba_dc.users["carol"])
    wrong = login(client, "alice@example.test", "Wrong-Passw0rd!")
    unknown = login(client, "nobody@example.test", "Wrong-Passw0rd!")
    for response in (carol, wrong, unknown):
        assert response.status_code == 200
        assert response.context["form"].errors == {"__all__": [REFUSED]}
    assert not User.objects.exists()


def test_not_in_the_viewer_group_is_refused_and_loses_access(client, customer_ad, samba_dc):
    response = login(client, "bob@example.test", samba_dc.users["bob"])
    assert REFUSED in response.content.decode()
    # alice had access; the customer maps another group now: at her next login it is gone
    assert login(client, "alice@example.test", samba_dc.users["alice"]).status_code == 302
    client.logout()
    customer_ad.directory_viewer_group = f"CN=Engineering,CN=Users,{samba_dc.base_dn}"
    customer_ad.save()
    response = login(client, "alice@example.test", samba_dc.users["alice"])
    assert REFUSED in response.content.decode()
    assert not Membership.objects.filter(user__username="alice@example.test").exists()


def test_nested_groups_count(client, customer_ad, samba_dc):
    """bob is in Platform, which is inside Engineering."""
    customer_ad.directory_viewer_group = f"CN=Engineering,CN=Users,{samba_dc.base_dn}"
    customer_ad.save()
    assert login(client, "EXAMPLE\\bob", samba_dc.users["bob"]).status_code == 302
    assert Membership.objects.get(user__username="bob@example.test").customer == customer_ad


def test_a_user_of_one_directory_never_authenticates_through_the_other(
    client, customer_ad, samba_dc, staff_ldap
):
    ad_password, staff_password = samba_dc.users["alice"], staff_ldap.users["alice"]
    assert ad_password != staff_password
    # the staff directory's alice with the AD password, the AD's alice with the staff one
    assert REFUSED in login(client, "alice", ad_password).content.decode()
    assert REFUSED in login(client, "alice@example.test", staff_password).content.decode()
    assert REFUSED in login(client, "EXAMPLE\\alice", staff_password).content.decode()
    assert not User.objects.exists()
    # each with its own password: two Django users, one staff, one viewer
    assert login(client, "alice", staff_password)["Location"] == "/admin/"
    client.logout()
    assert login(client, "alice@example.test", ad_password)["Location"] == "/portal/"
    users = dict(User.objects.values_list("username", "is_staff"))
    assert users == {"alice": True, "alice@example.test": False}


def test_a_name_in_an_unknown_domain_goes_to_no_directory(client, customer_ad, samba_dc):
    response = login(client, "alice@elsewhere.test", samba_dc.users["alice"])
    assert REFUSED in response.content.decode()


def test_the_bind_password_is_write_only_and_encrypted(admin_client, customer_ad, samba_dc):
    assert samba_dc.admin_password not in customer_ad.directory_bind_password_encrypted
    page = admin_client.get(f"/admin/accounts/customer/{customer_ad.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert samba_dc.admin_password not in text
    assert customer_ad.directory_bind_password_encrypted not in text


def test_two_customers_cannot_claim_one_domain(admin_client, customer_ad, samba_dc):
    response = admin_client.post(
        "/admin/accounts/customer/add/",
        {
            "name": "Impostor",
            "max_running_jobs": 4,
            "directory_kind": "ad",
            "directory_uri": samba_dc.ldap_uri,
            "directory_user_search_base": samba_dc.base_dn,
            "directory_viewer_group": f"CN=Finance,CN=Users,{samba_dc.base_dn}",
            "directory_domains": "EXAMPLE",
            "memberships-TOTAL_FORMS": 0,
            "memberships-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert "already the domain of Example Corp" in response.content.decode()


def test_second_customer_directory_is_used_for_its_own_domain_only(client, samba_dc):
    first = customer_with_ad(samba_dc, "First", group="Finance")
    first.directory_domains = "first.test"
    first.save()
    second = customer_with_ad(samba_dc, "Second", group="Finance")
    second.directory_domains = "example.test, EXAMPLE"
    second.save()
    assert login(client, "alice@example.test", samba_dc.users["alice"]).status_code == 302
    assert Membership.objects.get().customer == second


def test_a_session_ends_soon_after_the_directory_stops_letting_the_viewer_in(
    client, customer_ad, samba_dc, settings
):
    """Signed in and browsing: while the AD still lets alice in, a re-check keeps her
    session; once she is no longer in the viewer group, the next request after the
    re-check interval signs her out, and her membership is gone."""
    settings.MIGRATOR_DIRECTORY_RECHECK_SECONDS = 300
    make_job(customer_ad, "Finance share move", "srv/finance")
    assert login(client, "alice@example.test", samba_dc.users["alice"]).status_code == 302
    assert "Finance share move" in client.get("/portal/").content.decode()
    settings.MIGRATOR_DIRECTORY_RECHECK_SECONDS = 0  # every request asks the directory
    assert client.get("/portal/").status_code == 200  # still a member: asked, kept
    settings.MIGRATOR_DIRECTORY_RECHECK_SECONDS = 300
    customer_ad.directory_viewer_group = f"CN=Engineering,CN=Users,{samba_dc.base_dn}"
    customer_ad.save()
    # within the interval the session goes on (the directory is not asked per request)
    assert client.get("/portal/").status_code == 200
    settings.MIGRATOR_DIRECTORY_RECHECK_SECONDS = 0
    response = client.get("/portal/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert not Membership.objects.filter(user__username="alice@example.test").exists()
    after = client.get(response["Location"])
    assert "Your access was removed in your directory" in after.content.decode()
    assert client.get("/portal/").status_code == 302  # signed out for good


def test_test_directory_connection_says_what_is_wrong_in_words(admin_client, samba_dc):
    """The admin's "Test directory connection" on real AD settings, then with a wrong
    password, an unknown viewer group and an address where nothing listens."""
    import socket

    good = customer_with_ad(samba_dc, name="Good Corp")
    wrong_password = customer_with_ad(samba_dc, name="Wrong Password Ltd")
    wrong_password.set_directory_bind_password("not-the-password")
    wrong_password.save()
    no_group = customer_with_ad(samba_dc, name="No Group Inc", group="Nobody-Here")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = customer_with_ad(samba_dc, name="Down GmbH")
    down.directory_uri = f"ldap://127.0.0.1:{port}"
    down.save()
    ids = [good.pk, wrong_password.pk, no_group.pk, down.pk]
    page = admin_client.post(
        "/admin/accounts/customer/",
        {"action": "test_directory", "_selected_action": ids},
        follow=True,
    ).content.decode()
    said = {c.name: page.split(f"{c.name}: ")[1].split("</li>")[0] for c in
            (good, wrong_password, no_group, down)}  # fmt: skip
    assert said["Good Corp"].startswith("directory OK.")
    assert "viewer group" in said["Good Corp"] and "direct member(s)" in said["Good Corp"]
    assert "refused the bind DN or its password" in said["Wrong Password Ltd"]
    assert "Nobody-Here" in said["No Group Inc"] and "was not found" in said["No Group Inc"]
    assert said["No Group Inc"].startswith("directory cannot be used.")
    assert f"Could not reach ldap://127.0.0.1:{port}" in said["Down GmbH"]
    assert samba_dc.admin_password not in page  # never the password itself
