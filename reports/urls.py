from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("jobs/<int:pk>/", views.job_report, name="job"),
    path("jobs/<int:pk>/<slug:report>/", views.job_report, name="job_report"),
]
