"""Health checks for load balancers and Kubernetes probes, no login.

`/healthz` (readiness): the database answers a trivial query and django-q2's broker is
reachable (ORM broker: its table; Redis broker: PING). 200 `{"database": "ok", "broker":
"ok"}`, else 503 naming what failed by the exception's class only: a driver's message can
carry a host name or a DSN, and this page is public.

`/healthz/live` (liveness): the process answers, nothing else is touched, so an outage of
the database marks every web pod unready instead of restarting them all.

HealthCheckMiddleware, first in MIDDLEWARE, answers both paths before the host check and
the HTTPS redirect: a kubelet or a cloud load balancer asks by the pod's IP over plain HTTP.
The URL patterns in migrator/urls.py route to the same views when the middleware is absent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

log = logging.getLogger(__name__)

READY_PATH = "/healthz"
LIVE_PATH = "/healthz/live"
# a probe must not hang on an unreachable Redis: the kubelet's timeout is a few seconds
REDIS_TIMEOUT_SECONDS = 2.0


def check_database() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> None:
    from django.conf import settings

    conf = settings.Q_CLUSTER
    if conf.get("redis"):
        import redis  # lazy: the web process loads it only when Redis is the broker

        client = redis.Redis.from_url(
            conf["redis"],
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        try:
            if not client.ping():
                raise ConnectionError("no PONG")
        finally:
            client.close()
    else:
        from django_q.models import OrmQ

        OrmQ.objects.using(conf.get("orm", "default")).only("pk").first()


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "broker": check_broker}


def _run(name: str) -> str:
    try:
        CHECKS[name]()
    except Exception as exc:  # noqa: BLE001 - any failure makes the pod unready
        log.warning("health check %s failed: %s", name, type(exc).__name__)
        return f"error: {type(exc).__name__}"
    return "ok"


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    results = {name: _run(name) for name in CHECKS}
    status = 200 if all(v == "ok" for v in results.values()) else 503
    response = JsonResponse(results, status=status)
    response["Cache-Control"] = "no-store"
    return response


@require_safe
def healthz_live(request: HttpRequest) -> HttpResponse:
    response = JsonResponse({"process": "ok"})
    response["Cache-Control"] = "no-store"
    return response


class HealthCheckMiddleware:
    """Answers the health paths (GET and HEAD) before any other middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in ("GET", "HEAD"):
            if request.path_info == READY_PATH:
                return healthz(request)
            if request.path_info == LIVE_PATH:
                return healthz_live(request)
        return self.get_response(request)
