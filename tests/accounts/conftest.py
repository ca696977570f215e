"""Shared fixtures: the staff directory (slapd) and a customer's AD (Samba) wired into
settings, customers with their jobs, and signed-in clients for each role."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.choices import AccountSource, DirectoryKind, MembershipSource
from accounts.directory import STATE_KEY
from accounts.ldap_config import staff_directory_settings
from accounts.models import Customer, Membership, Profile
from jobs import services as job_services
from jobs.dispatch import set_inline

PASSWORD = "Viewer-Passw0rd-Long"


def configure_staff_directory(settings, env: dict[str, str]) -> None:
    """What settings.py does with these environment variables, for one test."""
    for name, value in staff_directory_settings(env).items():
        setattr(settings, name, value)
    cache.delete(STATE_KEY)


@pytest.fixture
def staff_ldap(settings, slapd):
    """The staff directory is the OpenLDAP fixture."""
    configure_staff_directory(settings, slapd.env())
    return slapd


@pytest.fixture
def staff_ad(settings, samba_dc):
    """The staff directory is the Samba AD (support engineers in Finance, superusers in
    Domain Admins), as a company whose staff sign in with AD would set it."""
    configure_staff_directory(
        settings,
        {
            "AUTH_LDAP_SERVER_URI": samba_dc.ldap_uri,
            "AUTH_LDAP_DIRECTORY_KIND": "ad",
            "AUTH_LDAP_BIND_DN": f"CN=Administrator,CN=Users,{samba_dc.base_dn}",
            "AUTH_LDAP_BIND_PASSWORD": samba_dc.admin_password,
            "AUTH_LDAP_USER_SEARCH_BASE": samba_dc.base_dn,
            "AUTH_LDAP_STAFF_GROUP": f"CN=Finance,CN=Users,{samba_dc.base_dn}",
            "AUTH_LDAP_SUPERUSER_GROUP": f"CN=Domain Admins,CN=Users,{samba_dc.base_dn}",
            "AUTH_LDAP_DOMAINS": f"{samba_dc.realm.lower()},{samba_dc.domain}",
        },
    )
    return samba_dc


def customer_with_ad(samba_dc, name: str = "Example Corp", group: str = "Finance") -> Customer:
    customer = Customer(
        name=name,
        directory_kind=DirectoryKind.ACTIVE_DIRECTORY,
        directory_uri=samba_dc.ldap_uri,
        directory_bind_dn=f"CN=Administrator,CN=Users,{samba_dc.base_dn}",
        directory_user_search_base=samba_dc.base_dn,
        directory_viewer_group=f"CN={group},CN=Users,{samba_dc.base_dn}",
        directory_domains=f"{samba_dc.realm.lower()}, {samba_dc.domain}",
    )
    customer.set_directory_bind_password(samba_dc.admin_password)
    customer.save()
    return customer


@pytest.fixture
def customer_ad(db, samba_dc) -> Customer:
    """A customer whose AD is federated: members of Finance are its viewers."""
    return customer_with_ad(samba_dc)


def make_viewer(django_user_model, username: str, *customers: Customer):
    user = django_user_model.objects.create_user(username, email=username, password=PASSWORD)
    Profile.objects.create(user=user, source=AccountSource.LOCAL)
    for customer in customers:
        Membership.objects.create(user=user, customer=customer, source=MembershipSource.MANUAL)
    return user


def make_job(customer: Customer, name: str, root: str, **kwargs):
    source = job_services.endpoint_create(
        name=f"{name} source", url=f"file:///{root}/source", customer=customer
    )
    destination = job_services.endpoint_create(
        name=f"{name} destination", url=f"file:///{root}/destination", customer=customer
    )
    return job_services.job_create(
        customer=customer, name=name, source=source, destination=destination, **kwargs
    )


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def login(client: Client, username: str, password: str, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@contextlib.contextmanager
def inline_tasks() -> Iterator[list[tuple[str, tuple]]]:
    """Collect what services enqueue instead of sending it to django-q2."""
    queue: list[tuple[str, tuple]] = []
    set_inline(lambda func, args: queue.append((func, args)))
    try:
        yield queue
    finally:
        set_inline(None)


def run_to_end(job, user=None) -> None:
    """Start `job` and run every task it enqueues, in-process, until none is left (needs a
    transactional test: tasks are enqueued when the transaction commits)."""
    queue: list[tuple[str, tuple]] = []
    set_inline(lambda func, args: queue.append((func, args)))
    try:
        job_services.job_start(job=job, user=user)
        while queue:
            func, args = queue.pop(0)
            module, _, name = func.rpartition(".")
            getattr(importlib.import_module(module), name)(*args)
    finally:
        set_inline(None)
