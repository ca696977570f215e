"""Who may do what, on every URL pattern of the project.

The matrix walks `get_resolver()` (so a view added later is walked too; one the matrix
cannot classify or fill fails the walk instead of being skipped), fills each parameter with
an object of customer A, of customer B and an id that does not exist, and asks as nobody,
as A's viewer, as B's viewer and as staff, with GET and with POST:

- nobody is sent to the sign-in page, and a POST of theirs changes nothing;
- a viewer reads its own customer's pages, CSVs, search results, charts and live cards;
  the other customer's objects answer 404, exactly as an id that does not exist (never
  200, never 403), and no page a viewer gets carries a word of the other customer;
- no POST of a viewer changes the database (the one exception: accepting its own
  customer's finished migration), including every admin action;
- staff read every customer's objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import Client
from django.urls import resolve

from reports.models import SignOff
from tests.accounts.conftest import signed_in
from tests.security.urlwalk import (
    ADMIN_MODEL_ROUTE,
    ADMIN_OBJECTS,
    fill,
    fingerprint,
    queries,
    route_text,
    routes,
)

from .conftest import Side, World, body_of

pytestmark = pytest.mark.django_db(transaction=True)


class Access(Enum):
    PUBLIC = "anyone: sign-in, password reset, invitation links, redirects"
    SIGNED_IN = "any signed-in user, about their own account"
    CUSTOMER = "a customer's own data: portal, reports, CSV, search, live, completion"
    ACCEPT = "the customer's viewer accepts its own finished job (POST only)"
    STAFF = "the admin: support engineers only"
    API = "the REST API's reads of a customer's jobs: nobody 401, viewers their own (GET)"
    API_ACTION = "the REST API's job actions (POST): staff only, a viewer's write is 403"
    API_STAFF = "the REST API's customers, endpoints and tokens: staff only"
    AGENT = "the on-premises agent's API: its agent token only, never a session: 401/405"


# Every route the project has, by its full pattern. A new one must be added here, with who
# may see it: the walk fails on a route it does not know.
ROUTES: dict[str, Access] = {
    "": Access.PUBLIC,
    "admin/login/": Access.PUBLIC,  # ours: redirects to the one sign-in page
    "accounts/login/": Access.PUBLIC,
    "accounts/logout/": Access.PUBLIC,
    "accounts/home/": Access.PUBLIC,
    "accounts/password/change/": Access.SIGNED_IN,
    "accounts/password/change/done/": Access.SIGNED_IN,
    "accounts/password/reset/": Access.PUBLIC,
    "accounts/password/reset/sent/": Access.PUBLIC,
    "accounts/password/reset/<uidb64>/<token>/": Access.PUBLIC,
    "accounts/password/reset/done/": Access.PUBLIC,
    "accounts/invitation/<uidb64>/<token>/": Access.PUBLIC,
    "portal/": Access.CUSTOMER,
    "portal/jobs/<int:pk>/": Access.CUSTOMER,
    "portal/notifications/": Access.CUSTOMER,  # the viewer's own email choices
    "reports/search/": Access.CUSTOMER,
    "reports/jobs/<int:pk>/": Access.CUSTOMER,
    "reports/jobs/<int:pk>/accept/": Access.ACCEPT,
    "reports/jobs/<int:pk>/live/": Access.CUSTOMER,
    "reports/jobs/<int:pk>/completion/": Access.CUSTOMER,
    "reports/jobs/<int:pk>/<slug:report>/": Access.CUSTOMER,
    # the admin's own views and our additions to it
    "admin/": Access.STAFF,
    "admin/login/#admin": Access.STAFF,  # Django's, shadowed by ours above
    "admin/logout/": Access.STAFF,
    "admin/password_change/": Access.STAFF,
    "admin/password_change/done/": Access.STAFF,
    "admin/autocomplete/": Access.STAFF,
    "admin/jsi18n/": Access.STAFF,
    "admin/r/<path:content_type_id>/<path:object_id>/": Access.STAFF,
    "admin/<app_label>/": Access.STAFF,
    "admin/<url>": Access.STAFF,  # the catch-all
    "admin/auth/user/<id>/password/": Access.STAFF,
    "admin/accounts/auditentry/export.csv": Access.STAFF,
    "admin/jobs/directoryidentity/refresh/": Access.STAFF,
    "admin/jobs/directoryidentity/export.csv": Access.STAFF,
    "admin/jobs/directoryidentity/scim.json": Access.STAFF,
    "admin/jobs/migrationjob/<int:job_id>/live/": Access.STAFF,
    "admin/jobs/migrationjob/<int:job_id>/manifest/": Access.STAFF,
    "admin/jobs/migrationjob/<int:job_id>/manifest.csv": Access.STAFF,
    "admin/jobs/migrationjob/<int:job_id>/events/": Access.STAFF,
    "admin/jobs/migrationjob/<int:job_id>/events.csv": Access.STAFF,
    "admin/jobs/migrationjob/<int:job_id>/from-assessment/": Access.STAFF,
    "admin/jobs/migrationjob/<int:job_id>/identity-csv/": Access.STAFF,
    "admin/jobs/migrationjob/<int:job_id>/cutover/": Access.STAFF,
    # the REST API (tests/api walks it with tokens), its schema and its docs page
    "api/schema/": Access.PUBLIC,
    "api/docs/": Access.PUBLIC,
    "healthz": Access.PUBLIC,  # the probes' (migrator/health.py): database and broker "ok"
    "healthz/live": Access.PUBLIC,
    "api/v1/customers/": Access.API_STAFF,
    "api/v1/customers/<int:pk>/": Access.API_STAFF,
    "api/v1/tokens/": Access.API_STAFF,
    "api/v1/tokens/<int:pk>/revoke/": Access.API_STAFF,
    "api/v1/endpoints/": Access.API_STAFF,
    "api/v1/endpoints/<int:pk>/": Access.API_STAFF,
    "api/v1/jobs/": Access.API,
    "api/v1/jobs/<int:pk>/": Access.API,
    **{f"api/v1/jobs/<int:pk>/{action}/": Access.API_ACTION
       for action in ("start", "pause", "resume", "cancel", "retry-failed", "assess",
                      "cutover/start", "cutover/advance", "cutover/tick", "cutover/retry",
                      "continuous/start", "continuous/stop")},
    **{f"api/v1/jobs/<int:pk>/{listing}/": Access.API
       for listing in ("progress", "passes", "files", "errors", "renames", "events",
                       "permissions", "cutover")},
    "api/v1/jobs/<int:pk>/deletions/confirm/": Access.API_ACTION,
    "api/v1/jobs/<int:pk>/deletions/skip/": Access.API_ACTION,
    "api/v1/jobs/<int:pk>/reports/<slug:report>.csv": Access.API,
}  # fmt: skip
ROUTES.update({  # the agent's (tests/jobs/test_agent_api.py walks them with agent tokens)
    f"api/agent/{route}": Access.AGENT
    for route in ("enroll/", "heartbeat/", "work/", "lease/", "scan/<int:pass_id>/chunk/",
                  "scan/<int:pass_id>/done/", "scan/<int:pass_id>/interrupted/",
                  "batch/<int:batch_id>/record/", "batch/<int:batch_id>/halt/",
                  "batch/<int:batch_id>/event/")
})  # fmt: skip
API_ACCESS = (Access.API, Access.API_ACTION, Access.API_STAFF)

# what a viewer's POST carries: an admin action on every job, a deletion confirmed, a
# sign-off note, another customer's id, form fields of the account pages
POST_BODY = {
    "action": "delete_selected",
    "_selected_action": [],  # filled with every job's id
    "post": "yes",
    "index": "0",
    "note": "posted by the matrix",
    "name": "renamed by the matrix",
    "customer": "",
    "email": "viewer-a@alpha.test",
    "username": "eng",
    "new_password1": "Matrix-Changed-pw-1",
    "new_password2": "Matrix-Changed-pw-1",
}


def access_of(route: str, view) -> Access:
    registered = {m._meta.label_lower for m in admin.site._registry}
    match = ADMIN_MODEL_ROUTE.fullmatch(route)
    if match and f"{match['app']}.{match['model']}" in registered:
        label = f"{match['app']}.{match['model']}"
        assert label in ADMIN_OBJECTS, f"admin model {label} is not in the matrix"
        return Access.STAFF
    if route == "admin/login/" and view.__module__.startswith("django.contrib.admin"):
        route += "#admin"
    assert route in ROUTES, (
        f"URL pattern {route!r} is not in the authorization matrix: add it to ROUTES "
        "with who may see it"
    )
    return ROUTES[route]


# --- what the database holds --------------------------------------------------------------


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in after if before.get(k) != after[k])


# --- asking -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str
    final_path: str


def ask(client: Client, method: str, path: str, query: dict, body: dict) -> Answer:
    if method == "get":
        response = client.get(path, query, follow=True)
    else:
        target = path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        response = client.post(target, body, follow=True)
    final = response.redirect_chain[-1][0] if response.redirect_chain else path
    return Answer(response.status_code, body_of(response), final.split("?")[0])


def is_login_page(answer: Answer) -> bool:
    return (
        answer.status == 200
        and answer.final_path == "/accounts/login/"
        and 'name="username"' in answer.body
        and 'name="password"' in answer.body
    )


@dataclass
class Problems:
    found: list[str]

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.found.append(what)


def words_of(side: Side, body: str) -> list[str]:
    low = body.lower()
    return [m for m in side.markers if m.lower() in low]


def walk_plan(world: World) -> list[tuple[str, Access, Side | None, str, dict]]:
    """(route, access, side the objects belong to, path, query) for every pattern."""
    plan = []
    for parts, pattern in routes():
        route = route_text(parts)
        access = access_of(route, pattern.callback)
        for side in (world.a, world.b, None):
            for path in fill(route, side):
                if resolve(path).func is not pattern.callback:
                    continue  # shadowed by an earlier pattern, which is walked itself
                for query in queries(path, side):
                    plan.append((route, access, side, path, query))
    return plan


def test_every_url_pattern_is_in_the_matrix_and_a_new_one_fails_the_walk(world):
    plan = walk_plan(world)
    assert {r for r, *_ in plan} >= set(ROUTES) - {"admin/login/#admin"}
    with pytest.raises(AssertionError, match="not in the authorization matrix"):
        access_of("reports/jobs/<int:pk>/new-export/", lambda r: None)
    with pytest.raises(AssertionError, match="cannot fill"):
        fill("reports/jobs/<int:pk>/<int:batch>/", None)


def test_authorization_matrix(world):
    a, b = world.a, world.b
    POST_BODY["_selected_action"] = [str(a.job.pk), str(b.job.pk)]
    plan = walk_plan(world)
    problems = Problems([])
    clients = {
        "anonymous": Client(),
        "viewer A": signed_in(a.viewer),
        "viewer B": signed_in(b.viewer),
        "staff": signed_in(world.staff),
    }
    own = {"viewer A": a, "viewer B": b}
    refused_admin: dict[str, set[str]] = {}
    answered_200 = 0

    for route, access, side, path, query in plan:
        for who, client in clients.items():
            for method in ("get", "post"):
                if method == "post" and query:
                    continue  # POSTs are asked once per path
                where = f"{who} {method.upper()} {path}?{query}"
                if route == "accounts/logout/" or route == "admin/logout/":
                    client = (
                        Client() if who == "anonymous"
                        else signed_in(world.staff if who == "staff" else own[who].viewer)
                    )  # fmt: skip
                tracked = who != "staff"
                before = fingerprint() if (tracked and method == "post") else None
                if who == "staff" and method == "post":
                    with transaction.atomic():  # staff may change things: keep the world
                        answer = ask(client, method, path, query, POST_BODY)
                        transaction.set_rollback(True)
                else:
                    answer = ask(client, method, path, query, POST_BODY)
                problems.check(answer.status < 500, f"{where}: {answer.status}")
                answered_200 += answer.status == 200

                if before is not None:
                    diff = changed(before, fingerprint())
                    # (django_q.ormq: the sign-off's notification, queued)
                    allowed = (
                        access is Access.ACCEPT and who in own and side is own[who]
                        and set(diff) <= {"reports.signoff", "jobs.event", "django_q.ormq"}
                    )  # fmt: skip
                    problems.check(not diff or allowed, f"{where} changed {diff}")

                if access is Access.AGENT:
                    # a session (or none) is never an agent's credential
                    expected = {"get": (405,), "post": (401,)}[method]
                    if route == "api/agent/enroll/" and method == "post":
                        expected = (400, 403)  # a form, not JSON with a code: refused
                    problems.check(answer.status in expected, f"{where}: {answer.status}")
                    continue
                if who == "anonymous" and access in API_ACCESS:
                    # no session, no token: 401 (a write: 403, its CSRF check comes first)
                    expected = {"get": (401,), "post": (401, 403)}[method]
                    problems.check(answer.status in expected, f"{where}: {answer.status}")
                    continue
                if who == "anonymous":
                    if access is Access.PUBLIC:
                        shown = words_of(a, answer.body) + words_of(b, answer.body)
                        problems.check(not shown, f"{where}: shows nobody {shown}")
                    else:
                        problems.check(is_login_page(answer),
                                       f"{where}: not the sign-in page ({answer.status}, "
                                       f"{answer.final_path})")  # fmt: skip
                    continue

                if who == "staff":
                    real = not path.endswith(("/no-such-report/", "/no-such-report.csv"))
                    read = access in (Access.CUSTOMER, Access.API)
                    if read and side is not None and method == "get" and real:
                        problems.check(answer.status == 200, f"{where}: {answer.status}")
                    continue

                mine, theirs = own[who], world.other(own[who])
                leaked = words_of(theirs, answer.body)
                problems.check(not leaked, f"{where}: shows the other customer's {leaked}")
                if access is Access.API_STAFF:
                    problems.check(answer.status == 403, f"{where}: {answer.status}, not 403")
                elif access is Access.API_ACTION:
                    expected = {"get": 405, "post": 403}[method]
                    problems.check(answer.status == expected, f"{where}: {answer.status}")
                elif access is Access.API and method == "post":
                    problems.check(answer.status == 403, f"{where}: {answer.status}, not 403")
                elif access is Access.API:
                    per_job = "<int:pk>" in route
                    missing = per_job and side is not mine or path.endswith("/no-such-report.csv")
                    expected = 404 if missing else 200
                    problems.check(answer.status == expected, f"{where}: {answer.status}")
                elif access is Access.STAFF:
                    problems.check(answer.status == 403, f"{where}: {answer.status}, not 403")
                    token = re.sub(r'value="[\w-]{32,}"', "", answer.body)  # CSRF tokens
                    refused_admin.setdefault(f"{who} {route}", set()).add(token)
                elif access is Access.CUSTOMER:
                    per_job = "<int:pk>" in route
                    if per_job and side is not mine:  # theirs, or no such job: one answer
                        problems.check(answer.status == 404, f"{where}: {answer.status}")
                    elif method == "get":
                        expected = 404 if path.endswith("/no-such-report/") else 200
                        problems.check(answer.status == expected, f"{where}: {answer.status}")
                elif access is Access.ACCEPT:
                    expected = {"get": 405, "post": 200 if side is mine else 404}[method]
                    problems.check(answer.status == expected, f"{where}: {answer.status}")
                elif access is Access.SIGNED_IN and method == "get":
                    problems.check(answer.status == 200, f"{where}: {answer.status}")

    # a refused admin page is the same whoever's object it names, or none
    for route, bodies in refused_admin.items():
        problems.check(len(bodies) == 1, f"{route}: the refusal differs by object")
    assert problems.found == [], "\n".join(problems.found[:40])
    assert answered_200 > 500, "the walk was answered too rarely to prove anything"


def test_what_the_matrix_asks_is_real(world):
    """The markers and questions are real: A's viewer reads A's job name, A's files in the
    CSV and in search; B's viewer gets none of them; A's acceptance is recorded."""
    a, b = world.a, world.b
    viewer_a, viewer_b = signed_in(a.viewer), signed_in(b.viewer)
    assert "Alpha Payroll Migration" in body_of(viewer_a.get(f"/portal/jobs/{a.job.pk}/"))
    files = body_of(viewer_a.get(f"/reports/jobs/{a.job.pk}/files/", {"format": "csv"}))
    assert "alpha-salaries-2024.xlsx" in files
    assert "alpha-salaries-2024" in body_of(viewer_a.get("/reports/search/", {"q": "alpha-sal"}))
    assert "alpha-salaries" not in body_of(viewer_b.get("/reports/search/", {"q": "alpha-sal"}))
    assert viewer_b.post(f"/reports/jobs/{a.job.pk}/accept/").status_code == 404
    assert not SignOff.objects.exists()
    assert viewer_a.post(f"/reports/jobs/{a.job.pk}/accept/").status_code == 302
    assert SignOff.objects.get().job == a.job
