"""Walking the project's URL conf, filling its routes with one customer's objects, and
fingerprinting the database: shared by the authorization matrix, the CSRF walk, the
secrets scan, the CSV walk and the API's isolation walk."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterator

from django.apps import apps
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import ApiToken, AuditEntry, Invitation, Membership
from jobs.models import DirectoryIdentity, Endpoint, Pass
from reports.registry import REPORTS

from .conftest import Side

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


_last: list = [None, None]  # [(connection, rows it changed, data version), digests]


def _change_mark() -> tuple | None:
    """On SQLite, what moves whenever a row changes: the rows this connection changed
    (rolled-back changes count too) and the data version other connections' commits move;
    None elsewhere (every fingerprint is then taken in full)."""
    if connection.vendor != "sqlite":
        return None
    connection.ensure_connection()
    raw = connection.connection
    with connection.cursor() as cursor:
        version = cursor.execute("PRAGMA data_version").fetchone()[0]
    return (id(raw), raw.total_changes, version)


def fingerprint() -> dict[str, str]:
    """A digest of every row of every model (but sessions and sign-in throttling). Taken
    again only when a row may have changed since the last one (a walk asks thousands)."""
    mark = _change_mark()
    if mark is not None and _last[0] == mark:
        return dict(_last[1])
    digests = _fingerprint()
    _last[:] = [mark, digests]
    return dict(digests)


def _fingerprint() -> dict[str, str]:
    digests = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in UNTRACKED or not model._meta.managed:
            continue
        rows = model._default_manager.order_by("pk").values_list()
        digests[label] = hashlib.sha256(repr(list(rows)).encode()).hexdigest()
    return digests


MISSING = 987654  # an id no object has: the answer others' objects must look like

# Every model registered in the admin, with the object of one side its pages are asked
# about (the standard changelist/add/history/delete/change routes). A model registered
# later must be added here, or the walk fails.
ADMIN_OBJECTS: dict[str, Callable[[Side], int | None]] = {
    "auth.group": lambda s: None,
    "auth.user": lambda s: s.viewer.pk,
    "django_q.schedule": lambda s: None,
    "django_q.success": lambda s: None,
    "django_q.failure": lambda s: None,
    "django_q.ormq": lambda s: None,
    "accounts.customer": lambda s: s.customer.pk,
    "accounts.membership": lambda s: Membership.objects.filter(customer=s.customer).first().pk,
    "accounts.invitation": lambda s: getattr(
        Invitation.objects.filter(customer=s.customer).first(), "pk", None
    ),
    "accounts.auditentry": lambda s: AuditEntry.objects.filter(object_id=str(s.job.pk)).first().pk,
    "accounts.apitoken": lambda s: getattr(
        ApiToken.objects.filter(user=s.viewer).first(), "pk", None
    ),
    "jobs.directoryidentity": lambda s: getattr(
        DirectoryIdentity.objects.filter(customer=s.customer).first(), "pk", None
    ),
    "jobs.endpoint": lambda s: s.job.source_id,
    "jobs.agentpool": lambda s: None,  # (the world has none: the pages are asked, empty)
    "jobs.agent": lambda s: None,
    "jobs.webhook": lambda s: None,  # (none in the world either)
    "jobs.webhookdelivery": lambda s: None,
    "jobs.notificationpreference": lambda s: None,
    "jobs.migrationjob": lambda s: s.job.pk,
    "jobs.pass": lambda s: Pass.objects.filter(job=s.job).first().pk,
    "axes.accessattempt": lambda s: None,
    "axes.accesslog": lambda s: None,
    "axes.accessfailurelog": lambda s: None,
}
ADMIN_MODEL_ROUTE = re.compile(
    r"admin/(?P<app>\w+)/(?P<model>\w+)/(?:add/|<path:object_id>/(?:history/|delete/|change/)?)?"
)


# --- filling a route with one side's objects ----------------------------------------------


def uidb64(pk: int) -> str:
    return urlsafe_base64_encode(force_bytes(pk))


def fill(route: str, side: Side | None) -> list[str]:
    """Concrete paths of `route` for `side`'s objects (None: ids that do not exist)."""
    match = ADMIN_MODEL_ROUTE.fullmatch(route)
    values: dict[str, list[str]] = {}
    if "<path:object_id>" in route and match:
        pk = ADMIN_OBJECTS[f"{match['app']}.{match['model']}"](side) if side else MISSING
        values["object_id"] = [str(pk if pk is not None else MISSING)]
    job = str(side.job.pk if side else MISSING)
    values.setdefault("object_id", [job])
    values.update(
        pk=[job],
        job_id=[job],
        pass_id=[str(Pass.objects.filter(job=side.job).first().pk if side else MISSING)],
        batch_id=[str(MISSING)],  # (the world's jobs have no batch left; any id is refused)
        id=[str(side.viewer.pk if side else MISSING)],
        content_type_id=[str(ContentType.objects.get_for_model(Endpoint).pk)],
        uidb64=[uidb64(side.viewer.pk if side else MISSING)],
        token=["set-password", "abc-0123456789abcdef"],
        report=[*REPORTS, "no-such-report"],
        app_label=sorted({m._meta.app_label for m in admin.site._registry}),
        url=["no/such/page/"],
    )
    names = re.findall(r"<(?:\w+:)?(\w+)>", route)
    missing = [n for n in names if n not in values]
    assert not missing, f"{route}: the matrix cannot fill {missing}"
    template = re.sub(r"<(?:\w+:)?\w+>", "{}", route)
    return [
        "/" + template.format(*combo) for combo in itertools.product(*(values[n] for n in names))
    ]


def queries(path: str, side: Side | None) -> list[dict]:
    """The questions each path is asked: CSV, each CSV list, a pass, search terms."""
    asked: list[dict] = [{}]
    if path.startswith("/reports/jobs/"):
        report = path.rstrip("/").rsplit("/", 1)[-1]
        asked += [{"format": "csv"}, {"pass": "1", "issues": "1"}]
        if report in REPORTS:
            asked += [{"format": "csv", "list": name} for name in REPORTS[report].lists()]
        if report == "live":
            asked.append({"compact": "1"})
    if path.startswith("/api/v1/jobs/") and path.endswith(".csv"):
        report = path.rsplit("/", 1)[-1].removesuffix(".csv")
        asked += [{"pass": "1"}]
        if report in REPORTS:
            asked += [{"list": name} for name in REPORTS[report].lists()]
    if path == "/reports/search/":
        # the page echoes the term: each is shorter than the marker it finds
        asked += [{"q": "alpha-sal"}, {"q": "bravo-rou"}, {"q": "finance/"}]
    if path == "/portal/":
        asked += [{"customer": str(side.customer.pk if side else MISSING)}]
    return asked
