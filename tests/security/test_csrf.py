"""CSRF: every view, asked to change something by a POST without a token, refuses (403)
and changes nothing; the same POST with the token gets through (the refusal is CSRF's)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import resolve

from reports.models import SignOff

from .conftest import body_of
from .urlwalk import fill, fingerprint, route_text, routes

pytestmark = pytest.mark.django_db(transaction=True)


def csrf_client(user=None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def test_every_post_without_a_token_is_refused(world):
    """Every pattern, POSTed as staff (who may change anything) and as A's viewer."""
    refused, let_through = 0, []
    for who, user in (("staff", world.staff), ("viewer A", world.a.viewer), ("nobody", None)):
        client = csrf_client(user)
        for parts, pattern in routes():
            route = route_text(parts)
            if route.startswith("api/agent/"):
                continue  # no cookie is its credential (an agent token is): no CSRF to forge
            for path in fill(route, world.a):
                if resolve(path).func is not pattern.callback:
                    continue
                before = fingerprint()
                response = client.post(path, {"post": "yes", "note": "no token"})
                body = body_of(response)
                # a viewer in the admin is refused before any view (its own 403 page)
                csrf = "CSRF verification failed" in body or (
                    who == "viewer A"
                    and path.startswith("/admin/")
                    and "for support engineers" in body
                )
                if response.status_code == 403 and csrf:
                    refused += 1
                else:
                    let_through.append((who, path, response.status_code))
                assert fingerprint() == before, (who, path)
    assert let_through == [], let_through
    assert refused > 100


def test_the_same_post_with_its_token_is_answered(world):
    client = csrf_client(world.a.viewer)
    page = client.get(f"/reports/jobs/{world.a.job.pk}/")
    token = page.cookies["csrftoken"].value
    response = client.post(f"/reports/jobs/{world.a.job.pk}/accept/",
                           {"csrfmiddlewaretoken": token})  # fmt: skip
    assert response.status_code == 302 and SignOff.objects.get().job == world.a.job
    login = csrf_client()
    form = login.get("/accounts/login/")
    assert 'name="csrfmiddlewaretoken"' in form.content.decode()
