from django.contrib import admin
from django.urls import include, path

from accounts import views as account_views

urlpatterns = [
    path("", account_views.home, name="home"),
    path("admin/login/", account_views.admin_login, name="admin_login"),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("portal/", include("reports.portal_urls")),
    path("reports/", include("reports.urls")),
    path("api/agent/", include("jobs.agent_api")),
]
