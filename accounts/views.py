"""Sign-in pages and the customers' read-only portal. Thin: parse, call a selector, render."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme

from jobs import plain
from jobs import selectors as job_selectors
from jobs.choices import JOB_ACTIVE, STATE_COLOURS

from . import directory, selectors, services
from .forms import SignInForm

LIVE_STATES = set(JOB_ACTIVE)  # pages of running jobs reload themselves


def home_url(user) -> str:
    """Where a user lands after signing in: staff in the admin, viewers in the portal."""
    if user.is_active and user.is_staff:
        return reverse("admin:index")
    return reverse("portal:jobs")


class SignInView(auth_views.LoginView):
    form_class = SignInForm
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        staff = directory.staff_directory()
        unavailable = getattr(self.request, "directory_unavailable", False) or (
            staff.get("enabled") and not directory.staff_directory_reachable()
        )
        context.update(directory_enabled=staff.get("enabled"), directory_unavailable=unavailable)
        return context

    def get_success_url(self) -> str:
        user = self.request.user
        target = self.get_redirect_url()
        admin_prefix = reverse("admin:index")
        if target and (user.is_staff or not target.startswith(admin_prefix)):
            return target
        return home_url(user)


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login page is ours: one page, throttled, with the directory notice."""
    target = request.GET.get("next") or reverse("admin:index")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = reverse("admin:index")
    return redirect(f"{reverse('accounts:login')}?{urlencode({'next': target})}")


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect(settings.LOGIN_URL)
    return redirect(home_url(request.user))


class InvitationAcceptView(auth_views.PasswordResetConfirmView):
    """The one-time link of an invitation: choose a password, then land in the portal."""

    template_name = "accounts/invitation_accept.html"
    token_generator = services.invitation_tokens
    post_reset_login = True
    post_reset_login_backend = "accounts.backends.LocalBackend"
    success_url = reverse_lazy("portal:jobs")

    def form_valid(self, form):
        response = super().form_valid(form)  # sets the password, which spends the token
        services.invitation_mark_accepted(user=self.user)
        return response


# --- portal -----------------------------------------------------------------------------


@login_required
def portal_jobs(request: HttpRequest) -> HttpResponse:
    """The viewer's jobs: a constant number of queries however many there are (the
    endpoints and current pass joined, passes counted and samples read in one go each)."""
    jobs = list(
        job_selectors.jobs_visible_to(request.user)
        .select_related("customer", "current_pass", "source", "destination")
        .annotate(passes_count=job_selectors.passes_count())
        .order_by("customer__name", "-created_at")
    )
    samples = job_selectors.latest_samples(job.current_pass_id for job in jobs)
    rows = [
        (
            job,
            job_selectors.job_progress(
                job=job, job_pass=job.current_pass, samples=samples.get(job.current_pass_id, [])
            ),
            STATE_COLOURS.get(job.state),
            plain.route_words(job.source, job.destination),
        )
        for job in jobs
    ]
    customers = selectors.customers_visible_to(request.user)
    refresh = any(job.state in LIVE_STATES for job in jobs)
    return render(
        request, "portal/jobs.html", {"rows": rows, "customers": customers, "refresh": refresh}
    )


@login_required
def portal_job(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_selectors.job_get_for(user=request.user, pk=pk)
    events = job_selectors.job_events_for(user=request.user, job=job).order_by("-id")[:50]
    context = {
        "job": job,
        "p": job_selectors.job_progress(job=job),
        "colour": STATE_COLOURS.get(job.state),
        "refresh": job.state in LIVE_STATES,
        "passes": job.passes.order_by("-number"),
        "events": events,
        # endpoints and errors in plain words: URLs and job.error name hosts (staff only)
        "route": plain.route_words(job.source, job.destination),
        "public_error": job_selectors.job_public_error(job),
    }
    return render(request, "portal/job_detail.html", context)
