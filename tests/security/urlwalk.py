"""Walking the project's URL conf and fingerprinting its database: shared by the
authorization matrix, the CSRF walk and the API's isolation walk."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

# state that changes with every request and says nothing about customers' data
UNTRACKED = {"sessions.session", "axes.accessattempt", "axes.accesslog", "axes.accessfailurelog"}


def routes(resolver: URLResolver | None = None, parts: tuple = ()) -> Iterator[tuple]:
    """(pattern parts from the root, URLPattern) for every view of the URL conf."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from routes(entry, (*parts, entry.pattern))
        elif isinstance(entry, URLPattern):
            yield (*parts, entry.pattern), entry


def route_text(parts: tuple) -> str:
    """'admin/jobs/migrationjob/<int:job_id>/live/': route patterns as written, regex
    groups as <name>."""
    text = ""
    for part in parts:
        if isinstance(part, RoutePattern):
            text += str(part._route)
        elif isinstance(part, RegexPattern):
            regex = part._regex.lstrip("^").removesuffix(r"\Z").rstrip("$")
            text += re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", regex)
        else:
            raise AssertionError(f"a URL pattern of a kind the matrix does not know: {part!r}")
    return text


def fingerprint() -> dict[str, str]:
    """A digest of every row of every model (but sessions and sign-in throttling)."""
    digests = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in UNTRACKED or not model._meta.managed:
            continue
        rows = model._default_manager.order_by("pk").values_list()
        digests[label] = hashlib.sha256(repr(list(rows)).encode()).hexdigest()
    return digests
