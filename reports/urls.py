from django.urls import path

from . import views

app_name = "reports"

urlpatterns = [
    path("search/", views.search, name="search"),
    path("jobs/<int:pk>/", views.job_report, name="job"),
    path("jobs/<int:pk>/accept/", views.job_accept, name="job_accept"),
    path("jobs/<int:pk>/live/", views.job_live, name="job_live"),
    path("jobs/<int:pk>/completion/", views.job_completion, name="job_completion"),
    path("jobs/<int:pk>/<slug:report>/", views.job_report, name="job_report"),
]
