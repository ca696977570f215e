"""No secret in any page, CSV, log line or event: endpoint passwords, service-account
keys and directory bind passwords are set, a job runs, every page and CSV is read as staff
and as the customer's viewer, and none of the secret strings appears anywhere."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.exceptions import ValidationError

from jobs import services as job_services
from jobs.models import Endpoint, Event
from tests.accounts.conftest import run_to_end, signed_in

from .conftest import body_of
from .urlwalk import fill, queries, route_text, routes

pytestmark = pytest.mark.django_db(transaction=True)

SMB_PASSWORD = "Smb-Secret-Hunter2-9f3k"
SERVICE_KEY = "-----BEGIN PRIVATE KEY-----MIIEvQ-service-account-7d1e"
BIND_PASSWORD = "Bind-Secret-Tr0ub4dor-x81"
ENDPOINT_BIND = "Endpoint-Bind-Secret-q7w2"
SECRETS = [SMB_PASSWORD, SERVICE_KEY, BIND_PASSWORD, ENDPOINT_BIND, "private_key_id-5c9a"]


def test_no_secret_in_any_page_csv_log_or_event(world, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    a = world.a
    a.customer.set_directory_bind_password(BIND_PASSWORD)
    a.customer.save()
    source = Endpoint.objects.get(pk=a.job.source_id)
    source.set_secret(json.dumps({"type": "service_account", "private_key": SERVICE_KEY,
                                  "private_key_id": "private_key_id-5c9a"}))  # fmt: skip
    source.set_directory_bind_password(ENDPOINT_BIND)
    source.save()
    # an SMB endpoint that cannot be reached: its error is shown and logged
    smb = job_services.endpoint_create(name="Alpha SMB", url="smb://svc@127.0.0.1:1/share",
                                       customer=a.customer, secret=SMB_PASSWORD)  # fmt: skip
    broken = job_services.job_create(customer=a.customer, name="Alpha SMB move", source=smb,
                                     destination=source, user=world.staff)  # fmt: skip
    run_to_end(broken, user=world.staff)
    run_to_end(a.job, user=world.staff)  # a second pass with the secrets set

    staff, viewer = signed_in(world.staff), signed_in(a.viewer)
    signed_in(world.staff).post("/admin/jobs/endpoint/", {"action": "test_connection",
                                "_selected_action": [smb.pk, source.pk]})  # fmt: skip
    read = 0
    for parts, _pattern in routes():
        route = route_text(parts)
        for path in fill(route, a):
            for query in queries(path, a):
                for client in (staff, viewer):
                    if route.endswith("logout/"):
                        continue
                    body = body_of(client.get(path, query, follow=True))
                    read += 1
                    for secret in SECRETS:
                        assert secret not in body, (path, query, secret)
    forms = [f"/admin/jobs/endpoint/{pk}/change/" for pk in (smb.pk, source.pk)]
    for page in (*forms, f"/admin/accounts/customer/{a.customer.pk}/change/"):
        body = body_of(staff.get(page))
        assert "password" in body.lower() and not any(s in body for s in SECRETS), page
    assert read > 300
    events = " ".join(Event.objects.values_list("message", flat=True))
    assert "Alpha SMB" in events or Event.objects.filter(job=broken).exists()
    for secret in SECRETS:
        assert secret not in events
        assert secret not in caplog.text
    assert Endpoint.objects.get(pk=smb.pk).get_secret() == SMB_PASSWORD  # it was stored


@pytest.mark.parametrize("url", ["smb://svc:Pw-In-Url-81@host/share", "gs://key:Pw-In-Url-81@b/x"])
def test_a_password_in_an_endpoint_url_is_refused(world, url):
    """A URL is shown in lists, events and logs: a password in it would be too."""
    with pytest.raises(ValidationError, match="secret"):
        job_services.endpoint_create(name="bad", url=url, customer=world.a.customer)
    staff = signed_in(world.staff)
    page = staff.post("/admin/jobs/endpoint/add/", {"name": "bad", "url": url,
                                                    "customer": world.a.customer.pk})  # fmt: skip
    assert page.status_code == 200 and "not in the URL" in page.content.decode()
    assert not Endpoint.objects.filter(name="bad").exists()
    assert "Pw-In-Url-81" not in body_of(staff.get("/admin/jobs/endpoint/"))
