"""Who may do what through the API: staff everything; a customer viewer reads (GET,
HEAD, OPTIONS) what jobs.selectors lets it see, and any write is 403."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from accounts.selectors import sees_all_customers


def _signed_in(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active)


class StaffOrReadOnly(BasePermission):
    message = "Customer viewers' access is read-only."

    def has_permission(self, request, view) -> bool:
        if not _signed_in(request.user):
            return False
        return request.method in SAFE_METHODS or sees_all_customers(request.user)


class StaffOnly(BasePermission):
    message = "For support engineers only."

    def has_permission(self, request, view) -> bool:
        return sees_all_customers(request.user)
