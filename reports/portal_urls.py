from django.urls import path

from . import portal

app_name = "portal"

urlpatterns = [
    path("", portal.portal_jobs, name="jobs"),
    path("jobs/<int:pk>/", portal.portal_job, name="job"),
    path("notifications/", portal.portal_notifications, name="notifications"),
]
