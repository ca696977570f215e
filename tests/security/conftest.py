"""Two customers, A and B, each with a finished run of a real job, a viewer each, and a
support engineer: the world the security tests attack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from accounts.models import Customer
from jobs import services as job_services
from jobs.models import MigrationJob
from tests.accounts.conftest import make_viewer, run_to_end

PASSWORD = "Viewer-Passw0rd-Long"


@dataclass(frozen=True)
class Side:
    """One customer's objects and the words that only its own people may read."""

    customer: Customer
    job: MigrationJob
    viewer: object
    markers: tuple[str, ...]


@dataclass(frozen=True)
class World:
    a: Side
    b: Side
    staff: object

    def other(self, side: Side) -> Side:
        return self.b if side is self.a else self.a


def finished_job(tmp_path: Path, *, customer: str, job: str, share: str, files: list[str],
                 staff, endpoint: str, **endpoint_secrets) -> MigrationJob:  # fmt: skip
    src = tmp_path / share
    for name in files:
        path = src / "finance" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 100)
    owner = Customer.objects.create(name=customer)
    source = job_services.endpoint_create(
        name=endpoint, url=src.as_uri(), customer=owner, **endpoint_secrets
    )
    dest = job_services.endpoint_create(
        name=f"{endpoint} dest", url=(tmp_path / f"{share}-dest").as_uri(), customer=owner
    )
    created = job_services.job_create(
        customer=owner, name=job, source=source, destination=dest, user=staff
    )
    run_to_end(created, user=staff)
    created.refresh_from_db()
    return created


@pytest.fixture
def world(tmp_path, django_user_model, settings) -> World:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    staff = django_user_model.objects.create_superuser("eng", "eng@example.test", PASSWORD)
    job_a = finished_job(
        tmp_path, customer="Alphacorp Industries", job="Alpha Payroll Migration",
        share="alpha-share", files=["alpha-salaries-2024.xlsx"], staff=staff,
        endpoint="Alpha source endpoint",
    )  # fmt: skip
    job_b = finished_job(
        tmp_path, customer="Bravo Logistics", job="Bravo Warehouse Move",
        share="bravo-share", files=["bravo-routes-2025.csv"], staff=staff,
        endpoint="Bravo source endpoint",
    )  # fmt: skip
    viewer_a = make_viewer(django_user_model, "viewer-a@alpha.test", job_a.customer)
    viewer_b = make_viewer(django_user_model, "viewer-b@bravo.test", job_b.customer)
    a_words = ("Alphacorp", "Alpha Payroll", "alpha-salaries", "Alpha source", "viewer-a@alpha")
    b_words = ("Bravo Logistics", "Bravo Warehouse", "bravo-routes", "Bravo source",
               "viewer-b@bravo")  # fmt: skip
    a = Side(job_a.customer, job_a, viewer_a, a_words)
    b = Side(job_b.customer, job_b, viewer_b, b_words)
    return World(a, b, staff)


def body_of(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "replace")
    return response.content.decode("utf-8", "replace")
