"""API tokens: stored as a SHA-256 only, shown once (the API's answer, the admin's page),
refused once revoked, their use noted, failures throttled, never in a log line."""

from __future__ import annotations

import base64
import hashlib
import json
import logging

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.api.authentication import AuthFailureThrottle
from accounts.api.services import api_token_create, api_token_revoke
from accounts.models import ApiToken
from jobs import services as job_services
from jobs.models import Agent, EnrollmentCode
from tests.accounts.conftest import signed_in

from .conftest import API, token_client

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "Viewer-Passw0rd-Long"  # the world's users' password


def basic(username: str, password: str) -> dict:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {pair}"}


def every_value_of(model) -> str:
    return repr(list(model.objects.values_list()))


def test_a_token_is_stored_as_its_sha256_only(world, client):
    response = client.post(f"{API}/tokens/", {"name": "ci"}, **basic("eng", PASSWORD))
    assert response.status_code == 201, response.content
    plain = response.json()["token"]
    assert plain.startswith("mgr_") and len(plain) > 40
    row = ApiToken.objects.get(pk=response.json()["id"])
    assert row.key_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert plain not in every_value_of(ApiToken)
    assert row.prefix == plain[:12] and row.user == world.staff
    # shown once: no later answer holds it
    listed = token_client(plain).get(f"{API}/tokens/")
    assert listed.status_code == 200 and plain not in listed.content.decode()
    assert "token" not in listed.json()["results"][0]


def test_the_token_works_until_revoked_and_its_use_is_noted(world):
    token, plain = api_token_create(user=world.staff, name="ci")
    api = token_client(plain)
    assert token.last_used_at is None
    assert api.get(f"{API}/jobs/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert api.post(f"{API}/tokens/{token.pk}/revoke/").status_code == 200
    refused = api.get(f"{API}/jobs/")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_revoked_viewer_token_and_an_inactive_user_are_refused(world):
    token, plain = api_token_create(user=world.a.viewer, name="viewer")
    api = token_client(plain)
    assert api.get(f"{API}/jobs/").status_code == 200
    api_token_revoke(token=token)
    assert api.get(f"{API}/jobs/").status_code == 401
    _, other = api_token_create(user=world.b.viewer, name="viewer B")
    world.b.viewer.is_active = False
    world.b.viewer.save()
    assert token_client(other).get(f"{API}/jobs/").status_code == 401


def test_failed_tokens_are_throttled_per_address(world, settings):
    cache.clear()
    _, good = api_token_create(user=world.staff, name="ci")
    wrong = token_client("mgr_not-a-token")
    answers = [wrong.get(f"{API}/jobs/").status_code for _ in range(25)]
    assert answers[:20] == [401] * 20 and set(answers[20:]) == {429}
    # from that address even a good token waits out the window
    assert token_client(good).get(f"{API}/jobs/").status_code == 429
    cache.clear()
    assert token_client(good).get(f"{API}/jobs/").status_code == 200


def agent_call(path: str, body: dict, token: str = "", address: str = "127.0.0.1") -> int:
    """The on-premises agent's post to /api/agent/<path> (enrol, heartbeat): the status."""
    headers = {"HTTP_AUTHORIZATION": f"Agent {token}"} if token else {}
    return Client(REMOTE_ADDR=address).post(f"/api/agent/{path}", json.dumps(body),
                                            content_type="application/json",
                                            **headers).status_code  # fmt: skip


@pytest.fixture
def no_failed_tries():
    """Failures are counted per address in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


def test_wrong_enrolment_codes_and_agent_tokens_are_throttled_with_failed_tokens(
    world, no_failed_tries
):
    """The API's failed-token throttle, the same count: per client address, each wrong
    enrolment code, unknown agent token and wrong API token is one failure; past the limit
    (MIGRATOR_API_AUTH_FAILURES_PER_MINUTE, 20) every try from that address, a right
    code or token too, is a 429 with Retry-After until the minute is over. Another
    address is not held back."""
    limit = AuthFailureThrottle().num_requests
    pool = job_services.agent_pool_create(customer=world.a.customer, name="Alpha site")
    right = job_services.enrollment_code_create(pool=pool)
    wrong = [agent_call("enroll/", {"code": f"mgr-enroll-guess-{i}"}) for i in range(limit)]
    assert wrong == [403] * limit
    enrol = {"code": right, "name": "alpha-files"}
    refused = Client().post("/api/agent/enroll/", json.dumps(enrol),
                            content_type="application/json")  # fmt: skip
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert "Too many failed" in refused.json()["error"]
    assert not Agent.objects.exists()  # the right code was not even looked at
    assert EnrollmentCode.objects.get().used_at is None
    _, good = api_token_create(user=world.staff, name="ci")
    assert token_client(good).get(f"{API}/jobs/").status_code == 429  # one count
    assert agent_call("enroll/", enrol, address="10.20.30.40") == 200  # per address

    cache.clear()  # the window is over
    agent_token = job_services.agent_enroll(
        code=job_services.enrollment_code_create(pool=pool), name="alpha-files-2"
    )[1]
    assert agent_call("heartbeat/", {"status": {}}, agent_token) == 200
    # wrong API tokens and unknown agent tokens add up to the same limit
    half = limit // 2
    assert {token_client(f"mgr_guess-{i}").get(f"{API}/jobs/").status_code
            for i in range(half)} == {401}  # fmt: skip
    assert {agent_call("heartbeat/", {}, f"mgr-agent-guess-{i}")
            for i in range(limit - half)} == {401}  # fmt: skip
    assert agent_call("heartbeat/", {"status": {}}, agent_token) == 429
    assert agent_call("enroll/", {"code": job_services.enrollment_code_create(pool=pool)}) == 429
    cache.clear()
    assert agent_call("heartbeat/", {"status": {}}, agent_token) == 200


def test_wrong_passwords_are_throttled_by_axes(world, settings):
    cache.clear()
    limit = settings.AXES_FAILURE_LIMIT
    answers = [post_as(basic("eng", "wrong-password")) for _ in range(limit + 1)]
    # the sign-in page's rule: the failure that reaches the limit is answered locked out
    assert answers[: limit - 1] == [401] * (limit - 1) and set(answers[limit - 1 :]) == {429}
    # locked out: the right password too, until the cool-off
    assert post_as(basic("eng", PASSWORD)) == 429
    assert not ApiToken.objects.exists()


def post_as(headers: dict) -> int:
    """A token asked for with these credentials: the answer's status."""
    return Client().post(f"{API}/tokens/", {"name": "x"}, **headers).status_code


def test_a_viewer_cannot_make_tokens(world):
    _, plain = api_token_create(user=world.a.viewer, name="viewer")
    assert token_client(plain).post(f"{API}/tokens/", {"name": "more"}).status_code == 403
    assert post_as(basic("viewer-a@alpha.test", PASSWORD)) == 403
    assert ApiToken.objects.count() == 1


def test_the_admin_shows_a_new_token_once(world):
    admin = signed_in(world.staff)
    response = admin.post(
        "/admin/accounts/apitoken/add/", {"user": world.a.viewer.pk, "name": "portal export"}
    )
    assert response.status_code == 200
    row = ApiToken.objects.get()
    body = response.content.decode()
    start = body.index('id="api-token"')
    plain = body[start:].split(">", 1)[1].split("<", 1)[0]
    assert row.key_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert "no-store" in response["Cache-Control"]
    for page in ("/admin/accounts/apitoken/", f"/admin/accounts/apitoken/{row.pk}/change/"):
        shown = admin.get(page)
        assert shown.status_code == 200 and plain not in shown.content.decode()
    assert token_client(plain).get(f"{API}/jobs/").json()["results"][0]["name"] == (
        "Alpha Payroll Migration"
    )
    admin.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [row.pk]})
    assert token_client(plain).get(f"{API}/jobs/").status_code == 401


def test_tokens_never_appear_in_logs(world, caplog):
    caplog.set_level(logging.DEBUG)
    cache.clear()
    _, plain = api_token_create(user=world.staff, name="ci")
    api = token_client(plain)
    api.get(f"{API}/jobs/")
    api.get(f"{API}/jobs/987654/")
    api.post(f"{API}/jobs/", {"name": "bad"})
    token_client(plain + "x").get(f"{API}/jobs/")
    made = post_as(basic("eng", PASSWORD))
    assert made == 201
    assert caplog.records, "nothing was logged: the test would prove nothing"
    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert plain not in logged and "mgr_" not in logged and PASSWORD not in logged
