"""Admin for permissions: a job's identity overrides (CSV upload, validated as a whole),
the re-apply action, the customer's directory identities ("AD users": refresh from the
directory, CSV and SCIM 2.0 JSON downloads). Hooked into jobs/admin.py."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounts.models import Customer
from migrator.acl.directory import DirectoryError
from migrator.acl.mapping import MappingCSVError
from migrator.web.csv import csv_filename, csv_response
from migrator.web.query import query_int

from . import permissions, services
from .models import DirectoryIdentity, IdentityOverride, MigrationJob
from .services import JobStateError

MAX_CSV_BYTES = 20 << 20


class IdentityOverrideInline(admin.TabularInline):
    """Read-only here: the whole list is replaced by an uploaded CSV."""

    model = IdentityOverride
    extra = 0
    can_delete = False
    fields = ["line", "source", "target", "type"]
    readonly_fields = fields
    verbose_name_plural = "identity overrides (upload a CSV: source,target,type)"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.action(description="Re-apply permissions of selected jobs (no data copied)")
def reapply_permissions(modeladmin, request, queryset) -> None:
    done = 0
    for job in queryset:
        try:
            services.job_start_permissions(job=job, user=request.user)
            done += 1
        except JobStateError as exc:
            modeladmin.message_user(request, str(exc), messages.WARNING)
    if done:
        modeladmin.message_user(request, f"Re-applying permissions: {done} job(s).")


def permissions_links(job: MigrationJob) -> str:
    if job.pk is None:
        return "—"
    state = (
        "on" if permissions.enabled(job) else 'off (options: {"permissions": {"enabled": true}})'
    )
    return format_html(
        'Permissions {} · <a href="{}">Upload identity CSV</a> · '
        '<a href="{}">Permissions report</a>',
        state,
        reverse("admin:jobs_migrationjob_identity_csv", args=[job.pk]),
        reverse("reports:job_report", args=[job.pk, "permissions"]),
    )


class IdentityCsvForm(forms.Form):
    csv_file = forms.FileField(label="CSV file", help_text="Columns: source,target,type.")


def job_permission_urls(model_admin) -> list:
    view = model_admin.admin_site.admin_view

    def identity_csv(request, job_id: int):
        job = get_object_or_404(MigrationJob, pk=job_id)
        if not model_admin.has_change_permission(request, job):
            raise Http404
        problems: list = []
        form = IdentityCsvForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["csv_file"]
            if upload.size > MAX_CSV_BYTES:
                problems = [f"the file is larger than {MAX_CSV_BYTES >> 20} MB"]
            else:
                try:
                    count = services.identity_overrides_import(
                        job=job, data=upload.read(), user=request.user
                    )
                except MappingCSVError as exc:
                    problems = [str(p) for p in exc.problems]
                else:
                    model_admin.message_user(
                        request, f"Imported {count} identity override(s).", messages.SUCCESS
                    )
                    return redirect(reverse("admin:jobs_migrationjob_change", args=[job.pk]))
        context = {
            **model_admin.admin_site.each_context(request),
            "title": f"Identity CSV — {job.name}",
            "job": job,
            "form": form,
            "problems": problems,
            "overrides": IdentityOverride.objects.filter(job=job).count(),
            "opts": model_admin.model._meta,
        }
        return TemplateResponse(request, "admin/jobs/identity_csv.html", context)

    return [
        path("<int:job_id>/identity-csv/", view(identity_csv),
             name="jobs_migrationjob_identity_csv"),
    ]  # fmt: skip


@admin.register(DirectoryIdentity)
class DirectoryIdentityAdmin(admin.ModelAdmin):
    """The "AD users" export: read-only rows, refreshed from the customer's directory."""

    change_list_template = "admin/jobs/directoryidentity/change_list.html"
    list_display = ["account", "kind", "upn", "mail", "display_name", "enabled", "groups",
                    "customer"]  # fmt: skip
    list_filter = ["customer", "kind", "enabled"]
    search_fields = ["account", "upn", "mail", "display_name", "sid"]
    readonly_fields = ["customer", "sid", "kind", "account", "upn", "mail", "display_name",
                       "enabled", "groups", "nested_groups", "members", "dn", "scim",
                       "refreshed_at"]  # fmt: skip
    list_select_related = ["customer"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        customers = Customer.objects.exclude(directory_uri="").order_by("name")
        chosen = request.GET.get("customer__id__exact", "")
        extra = {"directory_customers": customers, "chosen_customer": chosen}
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("refresh/", view(self.refresh_view), name="jobs_directoryidentity_refresh"),
            path("export.csv", view(self.csv_view), name="jobs_directoryidentity_csv"),
            path("scim.json", view(self.scim_view), name="jobs_directoryidentity_scim"),
            *super().get_urls(),
        ]

    def _customer(self, request) -> Customer:
        if not self.has_view_permission(request):
            raise Http404
        pk = request.POST.get("customer") or request.GET.get("customer", "")
        number = query_int(pk)
        if number is None:
            raise Http404("Choose a customer.")
        return get_object_or_404(Customer, pk=number)

    def refresh_view(self, request):
        if request.method != "POST":
            raise Http404
        customer = self._customer(request)
        try:
            counts = services.directory_export(customer=customer)
        except DirectoryError as exc:
            self.message_user(request, f"{customer.name}: {exc}", messages.ERROR)
        else:
            self.message_user(
                request,
                f"{customer.name}: {counts['user']} users and {counts['group']} groups read "
                "from the directory.",
                messages.SUCCESS,
            )
        url = reverse("admin:jobs_directoryidentity_changelist")
        return redirect(f"{url}?customer__id__exact={customer.pk}")

    def csv_view(self, request):
        customer = self._customer(request)
        return csv_response(
            csv_filename("identities", customer.name),
            permissions.IDENTITY_COLUMNS,
            permissions.identity_rows(customer),
        )

    def scim_view(self, request):
        customer = self._customer(request)
        response = StreamingHttpResponse(
            (chunk.encode("utf-8") for chunk in permissions.scim_chunks(customer)),
            content_type="application/scim+json; charset=utf-8",
        )
        name = csv_filename("identities", customer.name, "scim").removesuffix(".csv")
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response
