"""A customer viewer's token, walked through every API route of the URL conf: its own
customer's jobs read, customer B's objects answer 404 exactly as missing ones, staff-only
routes 403, and every write 403 or 405 with nothing changed."""

from __future__ import annotations

import re

import pytest
from django.urls import resolve

from reports.registry import REPORTS
from tests.security.urlwalk import fingerprint, route_text, routes

from .conftest import token_client

pytestmark = pytest.mark.django_db(transaction=True)
MISSING = 987654
STAFF_ONLY = ("api/v1/customers/", "api/v1/endpoints/", "api/v1/tokens/")
ACTIONS = ("start/", "pause/", "resume/", "cancel/", "retry-failed/", "assess/",
           "deletions/confirm/", "deletions/skip/", "continuous/start/", "continuous/stop/",
           "cutover/start/", "cutover/advance/", "cutover/tick/", "cutover/retry/")  # fmt: skip


def api_routes() -> list[tuple[str, object]]:
    found = [(route_text(parts), p) for parts, p in routes()]
    return [(r, p) for r, p in found if r.startswith("api/v1/")]


def filled(route: str, pk: int) -> list[str]:
    names = re.findall(r"<(?:\w+:)?(\w+)>", route)
    assert set(names) <= {"pk", "report"}, f"{route}: the walk cannot fill {names}"
    paths = ["/" + route.replace("<int:pk>", str(pk))]
    if "report" in names:
        paths = [p.replace("<slug:report>", r) for p in paths for r in REPORTS]
    return paths


def body(response) -> str:
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    return raw.decode("utf-8", "replace")


def test_a_viewer_token_sees_only_its_customer_and_writes_nothing(world, viewer_a_token):
    a, b = world.a, world.b
    api = token_client(viewer_a_token)
    walked = {"own": 0, "theirs": 0, "staff": 0, "writes": 0}
    assert len(api_routes()) >= 20
    for route, pattern in api_routes():
        staff_only = route.startswith(STAFF_ONLY)
        for owner, pk in (("own", a.job.pk), ("theirs", b.job.pk), ("theirs", MISSING)):
            for path in filled(route, pk):
                assert resolve(path).func is pattern.callback
                got = api.get(path)
                text = body(got)
                assert not [w for w in b.markers if w.lower() in text.lower()], path
                if staff_only:
                    assert got.status_code == 403, (path, got.status_code)
                    walked["staff"] += 1
                elif route.endswith(ACTIONS):  # POST only, and a viewer's POST is 403
                    assert got.status_code == 405, (path, got.status_code)
                elif "<int:pk>" not in route or owner == "own":
                    assert got.status_code == 200, (path, got.status_code, text[:200])
                    walked["own"] += 1
                else:
                    assert got.status_code == 404, (path, got.status_code)
                    walked["theirs"] += 1
                before = fingerprint()
                for method in ("post", "put", "patch", "delete"):
                    wrote = getattr(api, method)(path, {}, content_type="application/json")
                    assert wrote.status_code in (403, 405), (method, path, wrote.status_code)
                    walked["writes"] += 1
                assert fingerprint() == before, path
    assert walked["own"] > 15 and walked["theirs"] > 30 and walked["staff"] >= 6
    listed = api.get("/api/v1/jobs/").json()["results"]
    assert [j["name"] for j in listed] == ["Alpha Payroll Migration"]
    assert "source" in listed[0] and "url" not in str(listed[0])


def test_a_viewer_reads_words_not_hosts(world, viewer_a_api, staff_api):
    job = world.a.job
    mine = viewer_a_api.get(f"/api/v1/jobs/{job.pk}/").json()
    assert mine["route"] == "Local folder → Local folder"
    staff_events = staff_api.get(f"/api/v1/jobs/{job.pk}/events/").json()["results"]
    viewer_events = viewer_a_api.get(f"/api/v1/jobs/{job.pk}/events/").json()["results"]
    assert any("file://" in e["message"] for e in staff_events)
    assert not any("file://" in e["message"] for e in viewer_events)
    assert len(viewer_events) < len(staff_events)


# --- an on-premises agent's token on the API: it opens nothing ----------------------------

AGENT_REFUSED = {"get": 401, "post": 403, "put": 403, "patch": 403, "delete": 403}


@pytest.fixture
def agent_of_a(world):
    """An agent enrolled in a pool of customer A, and a job of A behind that pool."""
    from django.core.cache import cache

    from jobs import services

    a = world.a
    pool = services.agent_pool_create(customer=a.customer, name="Alpha site")
    code = services.enrollment_code_create(pool=pool)
    _, token = services.agent_enroll(code=code, name="alpha-files")
    job = services.job_create(customer=a.customer, name="Agent-run job", source=a.job.source,
                              destination=a.job.destination, agent_pool=pool)  # fmt: skip
    cache.clear()  # failed tokens are counted per address in the cache, which outlives tests
    yield job, token
    cache.clear()


def test_an_agent_token_opens_no_api_route(world, agent_of_a):
    """An agent's token is for /api/agent/ only. On every /api/v1/ route, sent as the
    agent sends it (Agent …) or as a Bearer token, every method is refused before any
    object is looked up: its own pool's job, customer B's and a missing one answer alike
    (GET 401; a write 403 from the CSRF check, as for anyone without a credential, or 401
    for the Bearer token), no answer names either customer's objects, nothing changes."""
    from django.core.cache import cache
    from django.test import Client

    job, token = agent_of_a
    b = world.b
    clients = {
        "Agent": Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Agent {token}"),
        "Bearer": Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {token}"),
    }
    words = (*world.a.markers, *b.markers, job.name, "Alpha site")
    asked = {"own": 0, "theirs": 0}
    for route, pattern in api_routes():
        for owner, pk in (("own", job.pk), ("theirs", b.job.pk), ("theirs", MISSING)):
            for path in filled(route, pk):
                assert resolve(path).func is pattern.callback
                before = fingerprint()
                for header, api in clients.items():
                    cache.clear()  # each Bearer try is a failed token: stay under the limit
                    for method, refused in AGENT_REFUSED.items():
                        got = getattr(api, method)(path, {}, content_type="application/json")
                        text = body(got)
                        want = 401 if header == "Bearer" else refused
                        assert got.status_code == want, (header, method, path, got.status_code,
                                                         text[:200])  # fmt: skip
                        shown = [w for w in words if w.lower() in text.lower()]
                        assert not shown, (header, method, path, shown)
                        asked[owner] += 1
                assert fingerprint() == before, path
    assert asked["own"] >= 20 * 10 and asked["theirs"] == 2 * asked["own"]
