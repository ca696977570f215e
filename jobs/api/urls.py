from django.urls import path

from . import views

app_name = "api-jobs"

urlpatterns = [
    path("endpoints/", views.EndpointList.as_view(), name="endpoints"),
    path("endpoints/<int:pk>/", views.EndpointDetail.as_view(), name="endpoint"),
    path("jobs/", views.JobList.as_view(), name="jobs"),
    path("jobs/<int:pk>/", views.JobDetail.as_view(), name="job"),
    path("jobs/<int:pk>/start/", views.JobStart.as_view(), name="job_start"),
    path("jobs/<int:pk>/pause/", views.JobPause.as_view(), name="job_pause"),
    path("jobs/<int:pk>/resume/", views.JobResume.as_view(), name="job_resume"),
    path("jobs/<int:pk>/cancel/", views.JobCancel.as_view(), name="job_cancel"),
    path("jobs/<int:pk>/retry-failed/", views.JobRetryFailed.as_view(), name="job_retry_failed"),
    path("jobs/<int:pk>/assess/", views.JobAssess.as_view(), name="job_assess"),
    path(
        "jobs/<int:pk>/deletions/confirm/",
        views.JobDeletionsConfirm.as_view(),
        name="job_deletions_confirm",
    ),
    path(
        "jobs/<int:pk>/deletions/skip/",
        views.JobDeletionsSkip.as_view(),
        name="job_deletions_skip",
    ),
    path("jobs/<int:pk>/continuous/start/", views.ContinuousStart.as_view(),
         name="job_continuous_start"),
    path("jobs/<int:pk>/continuous/stop/", views.ContinuousStop.as_view(),
         name="job_continuous_stop"),
    path("jobs/<int:pk>/progress/", views.JobProgress.as_view(), name="job_progress"),
    path("jobs/<int:pk>/passes/", views.PassList.as_view(), name="job_passes"),
    path("jobs/<int:pk>/files/", views.ManifestList.as_view(), name="job_files"),
    path("jobs/<int:pk>/errors/", views.ErrorList.as_view(), name="job_errors"),
    path("jobs/<int:pk>/renames/", views.RenameList.as_view(), name="job_renames"),
    path("jobs/<int:pk>/events/", views.EventList.as_view(), name="job_events"),
    path("jobs/<int:pk>/permissions/", views.PermissionList.as_view(), name="job_permissions"),
    path("jobs/<int:pk>/cutover/", views.JobCutover.as_view(), name="job_cutover"),
    path("jobs/<int:pk>/cutover/start/", views.CutoverStart.as_view(), name="job_cutover_start"),
    path("jobs/<int:pk>/cutover/advance/", views.CutoverAdvance.as_view(),
         name="job_cutover_advance"),
    path("jobs/<int:pk>/cutover/tick/", views.CutoverTick.as_view(), name="job_cutover_tick"),
    path("jobs/<int:pk>/cutover/retry/", views.CutoverRetry.as_view(), name="job_cutover_retry"),
    path("jobs/<int:pk>/reports/<slug:report>.csv", views.ReportCsv.as_view(), name="job_report"),
]
