from django.urls import path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.portal_jobs, name="jobs"),
    path("jobs/<int:pk>/", views.portal_job, name="job"),
]
