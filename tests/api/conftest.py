"""The API's world: customers A and B with a finished job each and a viewer each (the
security tests' world), a support engineer, and API tokens made through the service."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.api.services import api_token_create
from tests.security.conftest import World, world  # noqa: F401 - the fixture, shared

API = "/api/v1"


def token_client(plain: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {plain}")


@pytest.fixture
def staff_token(world: World) -> str:  # noqa: F811
    return api_token_create(user=world.staff, name="tests", created_by=world.staff)[1]


@pytest.fixture
def staff_api(staff_token: str) -> Client:
    return token_client(staff_token)


@pytest.fixture
def viewer_a_token(world: World) -> str:  # noqa: F811
    return api_token_create(user=world.a.viewer, name="viewer A", created_by=world.staff)[1]


@pytest.fixture
def viewer_a_api(viewer_a_token: str) -> Client:
    return token_client(viewer_a_token)
