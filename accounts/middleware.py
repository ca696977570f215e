"""Request context for the audit log, the admin kept to staff, and directory users'
sessions checked against their directory every few minutes."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.shortcuts import redirect, render
from django.urls import reverse

from .choices import AccountSource
from .services import audit_context

CHECKED = "migrator_directory_checked"
DIRECTORY_SOURCES = (AccountSource.STAFF_DIRECTORY, AccountSource.CUSTOMER_DIRECTORY)
ACCESS_REMOVED = "Your access was removed in your directory: sign in again if it is restored."


class AuditContextMiddleware:
    """Who is acting and from which address, for services that record staff actions."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        with audit_context(request):
            return self.get_response(request)


class StaffOnlyAdminMiddleware:
    """A signed-in customer viewer who opens /admin/ is refused outright (403), rather than
    shown the admin's login form as if another account could help."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self._prefix: str | None = None

    def __call__(self, request):
        if self._prefix is None:
            self._prefix = reverse("admin:index")
        user = getattr(request, "user", None)
        if (
            request.path.startswith(self._prefix)
            and user is not None
            and user.is_authenticated
            and not (user.is_active and user.is_staff)
        ):
            return render(request, "accounts/admin_refused.html", status=403)
        return self.get_response(request)


def INTERVAL() -> float:  # noqa: N802 - read at each call: tests change the setting
    return settings.MIGRATOR_DIRECTORY_RECHECK_SECONDS


class DirectoryRecheckMiddleware:
    """A directory user's session lasts only while the directory still lets them in: at
    most every MIGRATOR_DIRECTORY_RECHECK_SECONDS (300) their account and groups are
    asked again; removed from the viewer (or staff) group, the next request signs them
    out. A directory that cannot be reached keeps the session and is asked again in a
    minute."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and self._due(request):
            source = getattr(getattr(user, "account_profile", None), "source", None)
            allowed = self._recheck(user, source)
            now = time.time()
            if source not in DIRECTORY_SOURCES:
                request.session[CHECKED] = float("inf")  # a local account: nothing to ask
            else:  # unreachable: ask again in a minute rather than at every request
                request.session[CHECKED] = now if allowed is not None else now - INTERVAL() + 60
            if allowed is False:
                logout(request)
                messages.warning(request, ACCESS_REMOVED)
                login = reverse("accounts:login")
                return redirect(f"{login}?{urlencode({'next': request.get_full_path()})}")
        return self.get_response(request)

    def _due(self, request) -> bool:
        checked = request.session.get(CHECKED)
        return checked is None or time.time() - checked >= INTERVAL()

    def _recheck(self, user, source: str | None) -> bool | None:
        from .backends import CustomerDirectoryBackend, StaffDirectoryBackend

        backend = {
            AccountSource.STAFF_DIRECTORY: StaffDirectoryBackend,
            AccountSource.CUSTOMER_DIRECTORY: CustomerDirectoryBackend,
        }.get(source)
        return None if backend is None else backend().recheck(user)


def directory_checked_at_login(sender, request, user, **kwargs) -> None:
    """Signing in is the check: the next one is due after the interval."""
    if request is not None and hasattr(request, "session"):
        request.session[CHECKED] = time.time()
