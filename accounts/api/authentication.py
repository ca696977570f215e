"""How the API knows who asks: an API token (`Authorization: Bearer mgr_…`), a user's
password over HTTP Basic (only to make a token: django-axes throttles it like the sign-in
page), or the browser's session (CSRF checked on every write, signed in or not, as
Django's middleware does for pages). Failed tokens are throttled per client address.
A token is never logged, echoed in an error, or read from the query string."""

from __future__ import annotations

import math

from django.contrib.auth import authenticate
from django.middleware.csrf import CsrfViewMiddleware
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import (
    BaseAuthentication,
    BasicAuthentication,
    SessionAuthentication,
    get_authorization_header,
)
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

from accounts.services import client_ip

from .services import api_token_use

KEYWORDS = (b"bearer", b"token")


class AuthFailureThrottle(SimpleRateThrottle):
    """Failed authentications per client address (REST_FRAMEWORK's
    DEFAULT_THROTTLE_RATES["api_auth_failures"]): past the rate, every token from that
    address is refused with 429 until the window has passed, good ones too. One count per
    address for every credential that can be guessed: API tokens here, and the agent's
    tokens and enrolment codes (jobs/agent_api.py)."""

    scope = "api_auth_failures"

    def get_cache_key(self, request, view=None) -> str:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "-"}

    def blocked(self, request) -> bool:
        self.key = self.get_cache_key(request)
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return len(self.history) >= self.num_requests

    def record_failure(self, request) -> None:
        self.blocked(request)
        self.history.insert(0, self.now)
        self.cache.set(self.key, self.history, self.duration)

    def retry_after(self) -> int:
        """Whole seconds until the address may try again (after blocked() said so)."""
        return max(1, math.ceil(self.wait() or self.duration))


class ApiTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        throttle = AuthFailureThrottle()
        if throttle.blocked(request):
            raise exceptions.Throttled(throttle.wait())
        token = None
        if len(parts) == 2:
            try:
                token = api_token_use(plain=parts[1].decode("ascii"))
            except UnicodeDecodeError:
                token = None
        if token is None:
            throttle.record_failure(request)
            raise exceptions.AuthenticationFailed("Invalid, revoked or malformed API token.")
        return token.user, token

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class PasswordAuthentication(BasicAuthentication):
    """HTTP Basic through every authentication backend (local, staff and customer
    directories), django-axes first: a locked-out user or address gets 429."""

    def authenticate_credentials(self, userid, password, request=None):
        http_request = getattr(request, "_request", request)
        user = authenticate(request=http_request, username=userid, password=password)
        if getattr(http_request, "axes_locked_out", False):
            raise exceptions.Throttled(detail="Too many failed sign-ins: try again later.")
        if user is None or not user.is_active:
            raise exceptions.AuthenticationFailed("Invalid username or password.")
        return user, None


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        return reason


class CsrfSessionAuthentication(SessionAuthentication):
    """The browser's session. A write without an Authorization header needs the CSRF
    token whether or not anyone is signed in, so no cookie-borne write gets through."""

    def authenticate(self, request):
        if request.method not in SAFE_METHODS:
            self.enforce_csrf(request)
        user = getattr(request._request, "user", None)
        if not user or not user.is_active:
            return None
        return user, None

    def enforce_csrf(self, request) -> None:
        check = _CsrfCheck(lambda r: None)
        check.process_request(request)
        reason = check.process_view(request, None, (), {})
        if reason:
            raise exceptions.PermissionDenied(f"CSRF verification failed: {reason}.")


# --- how the schema (drf-spectacular) names them -------------------------------------------


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = ApiTokenAuthentication
    name = "token"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token: mgr_…"}


class PasswordScheme(OpenApiAuthenticationExtension):
    target_class = PasswordAuthentication
    name = "password"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic", "description": "Only to make a token."}


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = CsrfSessionAuthentication
    name = "session"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
