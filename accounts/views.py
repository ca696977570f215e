"""Sign-in pages, the invitation link and where each user lands. Thin: parse, call a
service, render. The customers' portal is in reports/portal.py."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme

from . import directory, services
from .forms import SignInForm


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
