from django.contrib import admin
from django.http import HttpResponseNotAllowed
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts import views as account_views
from migrator import health

# the docs page is read only: a plain view in front of DRF's (which exempts itself from
# CSRF and checks it later, answering a bare "403 Forbidden" page), so a POST meets
# Django's own CSRF check and then 405
_docs = SpectacularSwaggerView.as_view(url_name="api_schema")


def api_docs(request, *args, **kwargs):  # not csrf_exempt, unlike the view it fronts
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return _docs(request, *args, **kwargs)


urlpatterns = [
    path("", account_views.home, name="home"),
    # probes (no login); HealthCheckMiddleware answers these first, before the host check
    path("healthz", health.healthz, name="healthz"),
    path("healthz/live", health.healthz_live, name="healthz_live"),
    path("admin/login/", account_views.admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("portal/", include("reports.portal_urls")),
    path("reports/", include("reports.urls")),
    # the REST API (/api/agent/ is the on-premises agent's, elsewhere)
    path("api/v1/", include("accounts.api.urls")),
    path("api/v1/", include("jobs.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("api/docs/", api_docs, name="api_docs"),
    path("api/agent/", include("jobs.agent_api")),
]
