"""Reads: the one place that decides what a user may see.

Every portal page, report, CSV and API view asks these selectors for its objects, and
answers 404 for anything outside them, so ids cannot be probed.
"""

from __future__ import annotations

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404

from jobs.models import Endpoint, Event, MigrationJob, Pass

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


def jobs_visible_to(user) -> QuerySet[MigrationJob]:
    """Migration jobs `user` may see: all for staff, their customers' for viewers."""
    if sees_all_customers(user):
        return MigrationJob.objects.all()
    if not (user and user.is_authenticated and user.is_active):
        return MigrationJob.objects.none()
    return MigrationJob.objects.filter(customer__memberships__user=user)


def endpoints_visible_to(user) -> QuerySet[Endpoint]:
    if sees_all_customers(user):
        return Endpoint.objects.all()
    if not (user and user.is_authenticated and user.is_active):
        return Endpoint.objects.none()
    return Endpoint.objects.filter(customer__memberships__user=user)


def job_get_for(*, user, pk: int) -> MigrationJob:
    """One job `user` may see, or Http404 (never 403: ids must not be probeable)."""
    return get_object_or_404(
        jobs_visible_to(user).select_related("customer", "source", "destination"), pk=pk
    )


def passes_count() -> Coalesce:
    """For .annotate(): the job's passes so far, as a subquery (a Count over a join would
    be multiplied by the membership join of jobs_visible_to)."""
    counted = (
        Pass.objects.filter(job=OuterRef("pk"))
        .order_by()
        .values("job")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)


def job_events_for(*, user, job: MigrationJob) -> QuerySet[Event]:
    """The job's events that `user` may read: viewers do not see staff-only events."""
    events = Event.objects.filter(job=job)
    if not sees_all_customers(user):
        events = events.filter(staff_only=False)
    return events
