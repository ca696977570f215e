"""Reads of accounts: who sees every customer, and which customers a user sees. Which
jobs a user may see is decided in jobs.selectors, on top of these."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Customer


def sees_all_customers(user) -> bool:
    """Support engineers and superusers see every customer."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def customers_visible_to(user) -> QuerySet[Customer]:
    if sees_all_customers(user):
        return Customer.objects.all()
    if not (user and user.is_authenticated and user.is_active):
        return Customer.objects.none()
    return Customer.objects.filter(memberships__user=user).distinct()
