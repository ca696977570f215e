"""Writes: the audit of staff actions, invitations, memberships, re-encryption of secrets."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ObjectDoesNotExist
from django.core.mail import send_mail
from django.db import models, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from . import crypto
from .choices import AccountSource, MembershipSource
from .models import AuditEntry, Customer, Invitation, Membership, Profile

# --- who is acting, from where ------------------------------------------------------------


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind MIGRATOR_PROXY_COUNT trusted proxies
    the address the outermost of them saw (X-Forwarded-For is otherwise client-forged)."""
    proxies = getattr(settings, "MIGRATOR_PROXY_COUNT", 0)
    address = request.META.get("REMOTE_ADDR")
    if proxies:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [h for h in hops if h]
        if len(hops) >= proxies:
            address = hops[-proxies]
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Actor:
    user: object | None
    ip: str | None


_actor: ContextVar[Actor | None] = ContextVar("accounts_actor", default=None)


@contextlib.contextmanager
def audit_context(request) -> Iterator[None]:
    """Set by middleware for each request: services record who acted and from where."""
    token = _actor.set(Actor(user=getattr(request, "user", None), ip=client_ip(request)))
    try:
        yield
    finally:
        _actor.reset(token)


def customer_get_or_create(*, name: str) -> Customer:
    """The customer of that name, made when there is none (the one-shot CLI's --customer)."""
    return Customer.objects.get_or_create(name=name)[0]


def audit_record(
    *, action: str, obj: models.Model, user=None, detail: str = ""
) -> AuditEntry | None:
    """Record a staff action on a job or an endpoint. Without a signed-in user (the CLI,
    a worker) there is nobody to record, and nothing is written."""
    actor = _actor.get()
    if user is None and actor is not None:
        user = actor.user
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    customer = _customer_of(obj)
    return AuditEntry.objects.create(
        user=user,
        username=user.get_username(),
        ip=actor.ip if actor else None,
        action=action,
        object_type=str(obj._meta.verbose_name),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        customer_name=customer.name if customer is not None else "",
        detail=detail,
    )


def _customer_of(obj: models.Model) -> Customer | None:
    if isinstance(obj, Customer):
        return obj
    try:
        return getattr(obj, "customer", None)
    except ObjectDoesNotExist:  # deleted in the same cascade
        return None


# --- invitations and memberships ------------------------------------------------------------


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """One-time: the token hashes the password, so it dies once a password is chosen."""

    key_salt = "accounts.services.InvitationTokenGenerator"


invitation_tokens = InvitationTokenGenerator()


class InvitationError(Exception):
    """The invitation cannot be made (the address belongs to a directory account)."""


def invitation_link(*, user, request=None) -> str:
    path = reverse(
        "accounts:invitation_accept",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": invitation_tokens.make_token(user),
        },
    )
    return request.build_absolute_uri(path) if request is not None else path


@transaction.atomic
def invitation_create(
    *, email: str, customer: Customer, invited_by=None, request=None
) -> Invitation:
    """Invite a customer viewer by email: a local account with no password yet, a
    membership of `customer`, and an email with a one-time link to choose a password."""
    User = get_user_model()
    email = User.objects.normalize_email(email.strip()).lower()
    user = User.objects.filter(username__iexact=email).first()
    if user is None:
        user = User(username=email, email=email, is_active=True)
        user.set_unusable_password()
        user.save()
    else:
        profile = Profile.objects.filter(user=user).first()
        if profile is not None and profile.source != AccountSource.LOCAL:
            raise InvitationError(f"{email} signs in through a directory; add a membership.")
        if user.is_staff or user.is_superuser:
            raise InvitationError(f"{email} is a staff account.")
    Membership.objects.get_or_create(
        user=user, customer=customer, defaults={"source": MembershipSource.INVITATION}
    )
    invitation = Invitation.objects.create(
        email=email, customer=customer, user=user, invited_by=invited_by
    )
    transaction.on_commit(lambda: invitation_send(invitation=invitation, request=request))
    return invitation


def invitation_send(*, invitation: Invitation, request=None) -> None:
    user = invitation.user
    context = {
        "customer": invitation.customer,
        "user": user,
        "has_password": user.has_usable_password(),
        "link": invitation_link(user=user, request=request),
        "login_link": request.build_absolute_uri(reverse("accounts:login"))
        if request is not None
        else reverse("accounts:login"),
    }
    send_mail(
        subject=f"Your access to {invitation.customer.name}'s migrations",
        message=render_to_string("accounts/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )
    Invitation.objects.filter(pk=invitation.pk).update(sent_at=timezone.now())


def invitation_mark_accepted(*, user) -> None:
    Invitation.objects.filter(user=user, accepted_at__isnull=True).update(
        accepted_at=timezone.now()
    )


# --- secrets --------------------------------------------------------------------------------


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    """Every field that holds a Fernet token: by convention, its name ends in _encrypted."""
    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if getattr(field, "concrete", False) and field.name.endswith("_encrypted")
    ]


def secrets_reencrypt(*, batch: int = 500) -> dict[str, int]:
    """Re-encrypt every stored secret under the first key of MIGRATOR_FERNET_KEYS, so the
    older keys can then be removed. Each row is decrypted first: a secret that no key opens
    stops the run before anything is written for it."""
    counts: dict[str, int] = {}
    for model, name in encrypted_fields():
        label = f"{model._meta.label}.{name}"
        counts[label] = 0
        rows = model._default_manager.exclude(**{name: ""}).values_list("pk", name)
        for pk, token in rows.iterator(chunk_size=batch):
            crypto.decrypt(token)  # ImproperlyConfigured, in words, if no key opens it
            model._default_manager.filter(pk=pk, **{name: token}).update(
                **{name: crypto.rotate(token)}
            )
            counts[label] += 1
    return counts
