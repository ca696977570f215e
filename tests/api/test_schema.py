"""The OpenAPI schema is the API's truth: schemathesis calls every operation of /api/v1/
on a live server with a staff token (generated inputs, and each once with real ids), and
no answer is a 500 or differs from the schema. The docs page works offline."""

from __future__ import annotations

import time

import pytest
import requests
import schemathesis
from django.contrib.staticfiles import finders
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.django_db(transaction=True)
EXAMPLES = 8  # generated cases per operation: the whole test stays well under a minute
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance,
          response_headers_conformance]  # fmt: skip


def real_ids(operation, world) -> dict:
    params = {p.name for p in operation.path_parameters}
    ids = {"id": world.a.job.pk}
    if "/customers/" in operation.path:
        ids["id"] = world.a.customer.pk
    elif "/endpoints/" in operation.path:
        ids["id"] = world.a.job.source_id
    elif "/tokens/" in operation.path:
        ids["id"] = 1
    if "report" in params:
        ids["report"] = "files"
    return {k: v for k, v in ids.items() if k in params}


def generated(operation, base_url: str, session, headers: dict) -> int:
    """EXAMPLES generated cases of one operation, each called and checked; how many ran."""
    ran = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy())
    def call(case):
        if operation.path.endswith("/revoke/"):
            case.path_parameters["id"] = 10**6  # keep the test's own token
        case.call_and_validate(base_url=base_url, session=session, headers=headers,
                               checks=CHECKS)  # fmt: skip
        ran.append(1)

    call()
    return len(ran)


def test_every_operation_matches_the_schema(world, staff_token, live_server):
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    headers = {"Authorization": f"Bearer {staff_token}"}
    session = requests.Session()
    called: dict[str, int] = {}
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if op.path.startswith("/api/v1/")]
    assert len(operations) >= 24

    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        called[label] = generated(operation, live_server.url, session, headers)
        if not operation.path.endswith("/revoke/"):
            case = operation.Case(path_parameters=real_ids(operation, world))
            response = case.call_and_validate(base_url=live_server.url, session=session,
                                              headers=headers, checks=CHECKS)  # fmt: skip
            assert response.status_code < 500, label
    assert all(called.values()), called
    assert time.monotonic() - started < 90


def test_documented_codes_cover_the_real_answers(world, staff_token, live_server):
    """Error answers (401, 403, 404, 409) are in the schema too."""
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")
    job = world.a.job
    for path, method, want in (
        ("/api/v1/jobs/{id}/", "GET", 404),
        ("/api/v1/jobs/{id}/pause/", "POST", 409),
    ):
        operation = schema[path][method]
        case = operation.Case(path_parameters={"id": 987654 if want == 404 else job.pk})
        response = case.call_and_validate(
            base_url=live_server.url, headers={"Authorization": f"Bearer {staff_token}"},
            checks=[*CHECKS, status_code_conformance],
        )  # fmt: skip
        assert response.status_code == want
    anonymous = schema["/api/v1/jobs/"]["GET"].Case()
    response = anonymous.call_and_validate(base_url=live_server.url,
                                           checks=[*CHECKS, status_code_conformance])  # fmt: skip
    assert response.status_code == 401


def test_the_docs_page_uses_only_vendored_assets(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert finders.find(f"drf_spectacular_sidecar/swagger-ui-dist/{asset}")
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200 and "/api/v1/jobs/{id}/progress/" in schema.json()["paths"]
