"""Request context for the audit log, and the admin kept to staff."""

from __future__ import annotations

from django.shortcuts import render
from django.urls import reverse

from .services import audit_context


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
