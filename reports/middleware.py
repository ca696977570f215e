"""Times in the viewer's time zone: the browser tells it once (a cookie set by the page)."""

from __future__ import annotations

import zoneinfo

from django.utils import timezone

COOKIE = "tz"


class ViewerTimezoneMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        name = request.COOKIES.get(COOKIE, "")
        try:
            timezone.activate(zoneinfo.ZoneInfo(name)) if name else timezone.deactivate()
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
