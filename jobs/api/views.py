"""The REST API of jobs: endpoints, jobs and their actions, progress, passes, the
manifest's lists, events, permissions and every report as CSV. Thin: parse, call the
services and selectors the admin and the report pages call, render.

Every job comes through jobs.selectors.job_get_for, so another customer's job answers 404
exactly as a missing one; a customer viewer's writes are refused (403) before that."""

from __future__ import annotations

from functools import cached_property

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, renderers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.permissions import StaffOnly, StaffOrReadOnly
from accounts.choices import AuditAction
from accounts.selectors import sees_all_customers
from accounts.services import audit_record
from migrator.web.csv import csv_filename, csv_response
from migrator.web.query import query_int
from reports import permissions as acl_report
from reports import tables
from reports.registry import REPORTS, ReportQuery
from reports.selectors import report_pass

from .. import selectors, services, windows
from ..choices import EventLevel, ItemState, JobState, Reason
from ..deletions import DeletionStateError, deletions_confirm, deletions_skip
from ..models import AclRecord, FileItem, MigrationJob, Pass
from ..permissions import record_plan
from . import serializers as s

CONFLICT = OpenApiResponse(description="The action does not apply to the job's state.")
PASS = OpenApiParameter("pass", int, description="The pass's number (default: the current).")
FILTERS = [
    PASS,
    OpenApiParameter("state", str, enum=ItemState.values),
    OpenApiParameter("reason", str, enum=Reason.values),
    OpenApiParameter("ext", str, description="Extension, without the dot."),
    OpenApiParameter("prefix", str, description="Source paths that start with this."),
    OpenApiParameter("sort", str, enum=tables.SORTS),
]


def _staff(request) -> bool:
    return sees_all_customers(request.user)


# --- endpoints (staff) --------------------------------------------------------------------


class EndpointList(generics.ListAPIView):
    """Sources and destinations. The secret is write-only: no answer ever holds it."""

    permission_classes = [StaffOnly]
    serializer_class = s.EndpointSerializer

    def get_queryset(self):
        return selectors.endpoints_visible_to(self.request.user)

    @extend_schema(request=s.EndpointSerializer, responses={201: s.EndpointSerializer})
    def post(self, request):
        given = s.EndpointSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        try:
            endpoint = services.endpoint_create(
                name=data["name"], url=data["url"], customer=data.get("customer"),
                secret=data.get("secret") or None,
            )  # fmt: skip
        except ValueError as exc:
            raise ValidationError({"url": [str(exc)]})
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict)
        audit_record(action=AuditAction.CREATE, obj=endpoint, user=request.user, detail="API")
        return Response(s.EndpointSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetail(generics.RetrieveAPIView):
    permission_classes = [StaffOnly]
    serializer_class = s.EndpointSerializer

    def get_queryset(self):
        return selectors.endpoints_visible_to(self.request.user)


# --- jobs ---------------------------------------------------------------------------------


def _job_out(job: MigrationJob, request) -> dict:
    job = selectors.job_get_for(user=request.user, pk=job.pk)  # as stored now
    return s.JobSerializer(job, context={"request": request}).data


@extend_schema(
    parameters=[
        OpenApiParameter("customer", int, description="Only this customer's jobs."),
        OpenApiParameter("state", str, enum=JobState.values),
    ]
)
class JobList(generics.ListAPIView):
    """The jobs you may see, newest first; create one (staff)."""

    permission_classes = [StaffOrReadOnly]
    serializer_class = s.JobSerializer
    ordering = ("-id",)

    def get_queryset(self):
        qs = selectors.jobs_visible_to(self.request.user).select_related(
            "source", "destination", "current_pass", "agent_pool"
        )
        customer = self.request.query_params.get("customer", "")
        if customer.isdigit():  # a number beyond any id names no customer: none
            number = query_int(customer)
            qs = qs.filter(customer_id=number) if number is not None else qs.none()
        if state := self.request.query_params.get("state"):
            qs = qs.filter(state=state)
        return qs.prefetch_related("mappings")

    @extend_schema(request=s.JobCreateSerializer, responses={201: s.JobSerializer})
    def post(self, request):
        given = s.JobCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        mappings = [(m["source_path"], m["destination_prefix"]) for m in data.get("mappings", [])]
        try:
            job = services.job_create(
                customer=data["customer"], name=data["name"], source=data["source"],
                destination=data["destination"], mappings=mappings or (("", ""),),
                on_exists=data["on_exists"], bwlimit=data.get("bwlimit"),
                options=data.get("options") or {}, agent_pool=data.get("agent_pool"),
                user=request.user,
            )  # fmt: skip
        except ValueError as exc:
            raise ValidationError({"options": [str(exc)]})
        if window := data.get("transfer_window"):  # checked by its serializer
            windows.transfer_window_set(owner=job, text=window["rules"], zone=window["zone"])
        return Response(_job_out(job, request), status=status.HTTP_201_CREATED)


class JobDetail(generics.RetrieveAPIView):
    permission_classes = [StaffOrReadOnly]
    serializer_class = s.JobSerializer

    def get_object(self) -> MigrationJob:
        return selectors.job_get_for(user=self.request.user, pk=self.kwargs["pk"])


class JobAction(APIView):
    """One of the admin's job actions, by the same service (staff)."""

    permission_classes = [StaffOrReadOnly]
    service = staticmethod(services.job_start)
    created = False  # answers with a new job (201)

    @extend_schema(request=None, responses={200: s.JobSerializer, 409: CONFLICT})
    def post(self, request, pk: int):
        job = selectors.job_get_for(user=request.user, pk=pk)
        try:
            result = self.act(job, request)
        except services.JobStateError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        code = status.HTTP_201_CREATED if self.created else status.HTTP_200_OK
        return Response(_job_out(result or job, request), status=code)

    def act(self, job: MigrationJob, request) -> MigrationJob | None:
        return self.service(job=job, user=request.user)


class JobStart(JobAction):
    """Queue a new pass; it starts as soon as the customer's running-jobs limit allows."""


class JobPause(JobAction):
    service = staticmethod(services.job_pause)


class JobResume(JobAction):
    service = staticmethod(services.job_resume)


class JobCancel(JobAction):
    service = staticmethod(services.job_cancel)


class JobAssess(JobAction):
    """Start an assessment of the job's source: a job of its own (the answer), which scans
    and counts and copies nothing."""

    service = staticmethod(services.job_assess)
    created = True

    @extend_schema(request=None, responses={201: s.JobSerializer, 409: CONFLICT})
    def post(self, request, pk: int):
        return super().post(request, pk)


class JobRetryFailed(JobAction):
    """Copy the failed files of the last pass again (all, or one error group's)."""

    @extend_schema(request=s.RetrySerializer, responses={200: s.JobSerializer, 409: CONFLICT})
    def post(self, request, pk: int):
        return super().post(request, pk)

    def act(self, job: MigrationJob, request) -> None:
        given = s.RetrySerializer(data=request.data)
        given.is_valid(raise_exception=True)
        group = given.validated_data.get("group", "")
        services.job_retry_failed(job=job, user=request.user, **({"group": group} if group else {}))


class JobDeletionsConfirm(JobAction):
    """Confirm the deletions a pass waits for (more than `options.max_delete`): a worker
    deletes (or trashes) them, then the pass finishes."""

    service = staticmethod(deletions_confirm)

    @extend_schema(request=None, responses={200: s.JobSerializer, 409: CONFLICT})
    def post(self, request, pk: int):
        try:
            return super().post(request, pk)
        except DeletionStateError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)

    def act(self, job: MigrationJob, request) -> None:
        self.service(job=job, user=request.user)  # answers with the job, as stored now


class JobDeletionsSkip(JobDeletionsConfirm):
    """Skip the deletions a pass waits for: nothing is deleted (each is recorded as
    kept) and the pass finishes."""

    service = staticmethod(deletions_skip)


class JobProgress(APIView):
    """Counters, current and average rate and ETA of the job's current pass."""

    permission_classes = [StaffOrReadOnly]

    @extend_schema(responses={200: s.ProgressSerializer})
    def get(self, request, pk: int):
        job = selectors.job_get_for(user=request.user, pk=pk)
        progress = selectors.job_progress(job=job)
        job_pass = progress.get("pass")
        number = job_pass.number if job_pass else None
        return Response(s.ProgressSerializer({**progress, "state": job.state,
                                              "pass_number": number}).data)  # fmt: skip


# --- the cutover (issue 15) ------------------------------------------------------------


def _cutover_out(job: MigrationJob) -> dict:
    from .. import cutover

    flow = cutover.cutover_of(job)
    if flow is None:
        return s.CutoverSerializer({
            "step": "", "state": "not_started", "reason": "", "checklist": [],
            "final_pass": None, "verify_pass": None, "permissions_pass": None,
            "started_at": None, "ready_at": None, "report": None,
        }).data  # fmt: skip
    report = cutover.ready_report(flow) if flow.step == "ready" else None
    number = lambda p: p.number if p is not None else None  # noqa: E731
    return s.CutoverSerializer({
        "step": flow.step, "state": flow.state, "reason": flow.reason,
        "checklist": [
            {"key": i.key, "title": i.title, "help": i.help, "ticked": i.ticked,
             "commands": [{"where": c.where, "lines": list(c.lines)} for c in i.commands]}
            for i in cutover.checklist(flow)
        ],
        "final_pass": number(flow.final_pass), "verify_pass": number(flow.verify_pass),
        "permissions_pass": number(flow.permissions_pass),
        "started_at": flow.started_at, "ready_at": flow.ready_at,
        "report": None if report is None else {
            "ready": report.ready, "verdict": report.verdict,
            "left": [{"what": w, "count": n} for w, n in report.left],
            "review": [{"what": w, "count": n} for w, n in report.review],
        },
    }).data  # fmt: skip


class JobCutover(APIView):
    """The job's cutover: the checklist with its commands, the step, the ready report."""

    permission_classes = [StaffOrReadOnly]

    @extend_schema(responses={200: s.CutoverSerializer})
    def get(self, request, pk: int):
        job = selectors.job_get_for(user=request.user, pk=pk)
        return Response(_cutover_out(job))


class CutoverAction(APIView):
    """start | advance | tick | retry, by the services the admin's cutover page calls."""

    permission_classes = [StaffOrReadOnly]
    op = "start"

    @extend_schema(request=None, responses={200: s.CutoverSerializer, 409: CONFLICT})
    def post(self, request, pk: int):
        from .. import cutover

        job = selectors.job_get_for(user=request.user, pk=pk)
        try:
            if self.op == "start":
                cutover.cutover_start(job=job, user=request.user)
            elif self.op == "advance":
                cutover.cutover_advance(job=job, user=request.user)
            elif self.op == "retry":
                cutover.cutover_retry(job=job, user=request.user)
            else:
                given = s.CutoverTickSerializer(data=request.data)
                given.is_valid(raise_exception=True)
                cutover.cutover_tick(job=job, user=request.user, **given.validated_data)
        except (cutover.CutoverError, services.JobStateError) as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(_cutover_out(job))


class CutoverStart(CutoverAction):
    op = "start"


class CutoverAdvance(CutoverAction):
    op = "advance"


class CutoverRetry(CutoverAction):
    op = "retry"


class CutoverTick(CutoverAction):
    op = "tick"

    @extend_schema(request=s.CutoverTickSerializer,
                   responses={200: s.CutoverSerializer, 409: CONFLICT})  # fmt: skip
    def post(self, request, pk: int):
        return super().post(request, pk)


# --- a job's lists, paged by cursor ----------------------------------------------------------


class JobScoped(generics.ListAPIView):
    permission_classes = [StaffOrReadOnly]
    ordering: tuple[str, ...] = ("id",)

    @cached_property
    def job(self) -> MigrationJob:
        return selectors.job_get_for(user=self.request.user, pk=self.kwargs["pk"])

    @cached_property
    def job_pass(self) -> Pass | None:
        return report_pass(job=self.job, number=self.request.query_params.get("pass", ""))

    @cached_property
    def filters(self) -> tables.Filters:
        return tables.Filters.from_query(self.request.query_params)


class PassList(JobScoped):
    serializer_class = s.PassSerializer
    ordering = ("number",)

    def get_queryset(self):
        return Pass.objects.filter(job=self.job)


@extend_schema(parameters=FILTERS)
class ManifestList(JobScoped):
    """Files and folders of a pass, filtered as on the report page."""

    serializer_class = s.FileItemSerializer
    report = "files"

    @property
    def ordering(self) -> tuple[str, ...]:
        return {"path": ("source_path", "id"), "-id": ("-id",)}.get(self.filters.sort, ("id",))

    def get_queryset(self):
        if self.job_pass is None:
            return FileItem.objects.none()
        return tables.manifest(self.job_pass, self.report, self.filters)


class ErrorList(ManifestList):
    """The failed files and folders of a pass."""

    report = "errors"


class RenameList(ManifestList):
    """What was renamed or excluded on the way, and why."""

    report = "renames"


@extend_schema(parameters=[OpenApiParameter("level", str, enum=EventLevel.values)])
class EventList(JobScoped):
    """The job's events, newest first (customers do not read staff-only ones)."""

    serializer_class = s.EventSerializer
    ordering = ("-id",)

    def get_queryset(self):
        return selectors.events_queryset(job_id=self.job.pk, level=self.filters.level,
                                         staff=_staff(self.request))  # fmt: skip


@extend_schema(
    parameters=[PASS, OpenApiParameter("issues", int, enum=[0, 1],
                                       description="1: only paths with an issue.")],
)  # fmt: skip
class PermissionList(JobScoped):
    """Per path: the source's entries, the grants applied and what was narrowed, denied or
    unmapped (the permissions report)."""

    serializer_class = s.PermissionRowSerializer

    def get_queryset(self):
        if self.job_pass is None:
            return FileItem.objects.none().values("id")
        issues = self.request.query_params.get("issues") == "1"
        return acl_report._items(self.job_pass, issues).values(*acl_report._FIELDS)

    def list(self, request, *args, **kwargs):
        items = self.paginate_queryset(self.get_queryset())
        ids = {i["acl_id"] for i in items}
        plans = {r.pk: record_plan(r) for r in AclRecord.objects.filter(pk__in=ids)}
        rows = [acl_report.row_of(i, plans[i["acl_id"]]) for i in items if i["acl_id"] in plans]
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)


# --- reports as CSV: reports.registry gives each, as the report page's download does ------


class CsvRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        detail = data.get("detail", "") if isinstance(data, dict) else data
        return f"detail\r\n{detail}\r\n".encode()  # an error, when CSV was asked for


class ReportCsv(APIView):
    """A report of the job as CSV, the same file as the report page's download."""

    permission_classes = [StaffOrReadOnly]
    renderer_classes = [renderers.JSONRenderer, CsvRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("report", str, OpenApiParameter.PATH, enum=list(REPORTS)),
            OpenApiParameter("list", str, description="One of the report's lists "
                             "(errors: groups; assessment, permissions: see the page)."),
            OpenApiParameter("issues", int, enum=[0, 1]),
            OpenApiParameter("level", str, enum=EventLevel.values),
            *FILTERS,
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR},
        operation_id="jobs_report_csv",
    )  # fmt: skip
    def get(self, request, pk: int, report: str):
        kind = REPORTS.get(report)
        if kind is None:
            raise Http404("No such report.")
        job = selectors.job_get_for(user=request.user, pk=pk)
        job_pass = report_pass(job=job, number=request.query_params.get("pass", ""))
        q = ReportQuery.from_query(request.query_params, job=job, job_pass=job_pass,
                                   staff=_staff(request))  # fmt: skip
        try:
            csv = kind.csv(q)
        except KeyError:
            raise Http404("No such list.")
        return csv_response(csv_filename("job", job.pk, report, q.listing), csv.header, csv.rows())


class ContinuousStart(JobAction):
    """Put the job in continuous mode: once its first full pass has finished it follows
    the source's changes (refused in words for agent jobs and sources that cannot watch)."""

    def act(self, job: MigrationJob, request) -> None:
        from jobs import continuous  # the runner's imports stay out of start-up

        continuous.continuous_start(job=job, user=request.user)


class ContinuousStop(JobAction):
    """Take the job out of continuous mode."""

    def act(self, job: MigrationJob, request) -> None:
        from jobs import continuous

        continuous.continuous_stop(job=job, user=request.user)
