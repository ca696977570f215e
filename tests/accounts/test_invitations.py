"""Staff invite customer viewers by email; the one-time link sets a password; password
reset works for local accounts; the validators are on."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from accounts.models import Customer, Invitation, Membership

from .conftest import PASSWORD, login, signed_in

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "Correct-Horse-Battery-9"


@pytest.fixture
def staff_client(django_user_model):
    return signed_in(django_user_model.objects.create_user("eng", password=PASSWORD, is_staff=True))


def link_in(message) -> str:
    return re.search(r"https?://[^/\s]+(/\S+)", message.body).group(1)


def test_invite_accept_and_land_in_the_portal(client, staff_client, django_user_model):
    customer = Customer.objects.create(name="ACME")
    response = staff_client.post(
        "/admin/accounts/invitation/add/", {"email": "Pat@ACME.test", "customer": customer.pk}
    )
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["pat@acme.test"]
    assert "ACME" in mail.outbox[0].subject
    user = django_user_model.objects.get(username="pat@acme.test")
    assert not user.has_usable_password()
    assert Membership.objects.get(user=user).customer == customer
    link = link_in(mail.outbox[0])

    form = client.get(link, follow=True)
    assert "Choose a password for" in form.content.decode()
    set_password_url = form.redirect_chain[-1][0]
    weak = client.post(set_password_url, {"new_password1": "12345", "new_password2": "12345"})
    assert "too short" in weak.content.decode() and "entirely numeric" in weak.content.decode()
    done = client.post(
        set_password_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert done.status_code == 302 and done["Location"] == "/portal/"
    assert client.get("/portal/").status_code == 200  # signed in
    assert Invitation.objects.get().accepted_at is not None

    # the link works once
    again = type(client)().get(link, follow=True).content.decode()
    assert "has been used or has expired" in again
    client.logout()
    assert login(client, "pat@acme.test", NEW_PASSWORD)["Location"] == "/portal/"


def test_inviting_an_existing_viewer_adds_the_customer(staff_client, django_user_model):
    first, second = Customer.objects.create(name="One"), Customer.objects.create(name="Two")
    for customer in (first, second):
        staff_client.post(
            "/admin/accounts/invitation/add/", {"email": "pat@acme.test", "customer": customer.pk}
        )
    user = django_user_model.objects.get(username="pat@acme.test")
    assert set(Membership.objects.filter(user=user).values_list("customer__name", flat=True)) == {
        "One",
        "Two",
    }


def test_staff_accounts_cannot_be_invited(staff_client, django_user_model):
    customer = Customer.objects.create(name="ACME")
    django_user_model.objects.create_user("boss@acme.test", is_staff=True)
    response = staff_client.post(
        "/admin/accounts/invitation/add/", {"email": "boss@acme.test", "customer": customer.pk}
    )
    assert "is a staff account" in response.content.decode()
    assert not Membership.objects.exists()


def test_password_reset_for_a_local_account(client, django_user_model):
    django_user_model.objects.create_user("pat@acme.test", email="pat@acme.test", password=PASSWORD)
    response = client.post("/accounts/password/reset/", {"email": "pat@acme.test"})
    assert response.status_code == 302 and len(mail.outbox) == 1
    link = link_in(mail.outbox[0])
    form = client.get(link, follow=True)
    url = form.redirect_chain[-1][0]
    client.post(url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert login(client, "pat@acme.test", NEW_PASSWORD).status_code == 302
    assert "has been used or has expired" in client.get(link, follow=True).content.decode()


def test_no_reset_mail_for_directory_accounts(client, django_user_model):
    user = django_user_model.objects.create_user("dana", email="dana@staff.test")
    user.set_unusable_password()
    user.save()
    client.post("/accounts/password/reset/", {"email": "dana@staff.test"})
    assert mail.outbox == []
