"""The support engineer's admin: endpoints (secrets write-only), jobs with live progress
and actions, passes, the manifest and events (read-only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from migrator.storage import StorageError, kind_of
from migrator.web.csv import csv_filename, csv_response
from migrator.web.query import query_int

from . import (
    admin_agents,  # noqa: F401 - registers the agent pools and agents
    admin_notifications,  # noqa: F401 - registers webhooks, deliveries, preferences
    cutover,
    selectors,
    services,
)
from .admin_cutover import cutover_link, job_cutover_urls, pass_history_table
from .admin_permissions import (
    IdentityOverrideInline,
    job_permission_urls,
    permissions_links,
    reapply_permissions,
)
from .admin_windows import WindowFormMixin, window_grid, window_save
from .choices import JOB_ACTIVE, STATE_COLOURS, EventLevel, ItemState, JobState
from .connectors import check_endpoint
from .deletions import DeletionStateError, deletions_confirm, deletions_skip
from .models import Endpoint, MigrationJob, Pass, PathMapping


def state_badge(state: str, label: str) -> str:
    colour = STATE_COLOURS.get(state, "#6b7280")
    return format_html(
        '<span class="mg-state" style="background:{};color:#fff;padding:1px 8px;'
        'border-radius:9px;white-space:nowrap">{}</span>',
        colour,
        label,
    )


def progress_bar(fraction: float, text: str) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return format_html(
        '<div class="mg-progress" role="progressbar" aria-valuenow="{}" aria-valuemin="0" '
        'aria-valuemax="100" title="{}" style="width:160px;background:#e5e7eb;border-radius:4px">'
        '<div style="width:{}%;background:#2563eb;height:10px;border-radius:4px"></div></div>'
        "<small>{}</small>",
        f"{pct:.0f}",
        text,
        f"{pct:.1f}",
        text,
    )


class EndpointForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Password or service-account JSON. Write-only: leave empty to keep it.",
    )
    clear_secret = forms.BooleanField(required=False, help_text="Remove the stored secret.")
    directory_password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Bind password of the source's own directory. Write-only.",
    )

    class Meta:
        model = Endpoint
        fields = ["name", "customer", "url", "directory_uri", "directory_bind_dn",
                  "directory_base_dn"]  # fmt: skip

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            kind_of(url)
        except ValueError as exc:
            raise forms.ValidationError(str(exc))
        return url

    def save(self, commit: bool = True) -> Endpoint:
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("clear_secret"):
            endpoint.secret_encrypted = ""
        elif self.cleaned_data.get("secret"):
            endpoint.set_secret(self.cleaned_data["secret"])
        if self.cleaned_data.get("directory_password"):
            endpoint.set_directory_bind_password(self.cleaned_data["directory_password"])
        if commit:
            endpoint.save()
        return endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["name", "kind", "url", "customer", "has_secret"]
    list_filter = ["customer"]
    search_fields = ["name", "url"]
    actions = ["test_connection"]

    @admin.display(boolean=True, description="secret stored")
    def has_secret(self, obj: Endpoint) -> bool:
        return obj.has_secret

    @admin.action(description="Test connection")
    def test_connection(self, request, queryset) -> HttpResponseRedirect | None:
        for endpoint in queryset:
            try:
                was_pinned = "hostkey=" in endpoint.url
                host_key = check_endpoint(endpoint, pin=True)  # an unpinned key: pinned now
            except (StorageError, ValueError) as exc:
                self.message_user(request, f"{endpoint.name}: {exc}", messages.ERROR)
            else:
                shown = f"{endpoint.name}: connection OK"
                if host_key:  # an SFTP server: its key (check() refused any other pinned)
                    how = "pinned" if was_pinned else "pinned now, on first use"
                    shown += f" (SSH host key {host_key}, {how})"
                self.message_user(request, shown, messages.SUCCESS)
        if request.POST.get("_from_change") and len(queryset) == 1:  # its change page's button
            return redirect(reverse("admin:jobs_endpoint_change", args=[queryset[0].pk]))
        return None


class PathMappingInline(admin.TabularInline):
    model = PathMapping
    extra = 0
    fields = ["position", "source_path", "destination_prefix"]


class PassInline(admin.TabularInline):
    model = Pass
    extra = 0
    can_delete = False
    fields = ["number", "kind", "state", "started_at", "finished_at", "seen", "copied",
              "unchanged", "excluded", "failed", "pending", "folders_seen"]  # fmt: skip
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class MigrationJobForm(WindowFormMixin, forms.ModelForm):
    """The options are checked as jobs.services.job_create checks them: a job that could
    not run is refused here, in words, not at its first scan."""

    def clean(self) -> dict:
        cleaned = super().clean()
        destination = cleaned.get("destination")
        if destination is None or "options" not in cleaned:
            return cleaned  # their own errors show
        try:
            services.job_options_check(
                options=cleaned["options"] or {}, destination=destination,
                source=cleaned.get("source"), agent_pool=cleaned.get("agent_pool"),
            )  # fmt: skip
        except ValueError as exc:
            self.add_error("options", str(exc))
        return cleaned


def _mappings_of(formsets) -> list[tuple[str, str]]:
    """The path mappings typed into the add form, in their order ([] when none)."""
    typed = [
        row
        for formset in formsets
        if formset.model is PathMapping
        for row in formset.cleaned_data
        if row and not row.get("DELETE")
    ]
    typed.sort(key=lambda row: row.get("position") or 0)
    return [(row["source_path"], row["destination_prefix"]) for row in typed]


def _job_action(service, verb: str):
    def action(modeladmin, request, queryset):
        done = 0
        for job in queryset:
            try:
                service(job=job, user=request.user)
                done += 1
            except services.JobStateError as exc:
                modeladmin.message_user(request, str(exc), messages.WARNING)
        if done:
            modeladmin.message_user(request, f"{verb}: {done} job(s).", messages.SUCCESS)

    action.__name__ = f"action_{verb.lower().replace(' ', '_')}"
    action.short_description = f"{verb} selected jobs"
    return action


def _continuous_start(*, job: MigrationJob, user) -> None:
    from . import continuous  # the runner's imports stay out of start-up

    continuous.continuous_start(job=job, user=user)


def _continuous_stop(*, job: MigrationJob, user) -> None:
    from . import continuous

    continuous.continuous_stop(job=job, user=user)


@admin.action(description="Retry one error group of selected jobs (from the errors report)")
def action_retry_error_group(modeladmin, request, queryset):
    """The errors report's "Retry this group" button posts here with the group's key:
    only that group's files go back to pending and are copied again."""
    group = request.POST.get("group", "")[:64]
    job = queryset.first()
    if not group or job is None:
        modeladmin.message_user(
            request, "Pick the group on the job's errors report.", messages.WARNING
        )
        return None
    try:
        n = services.job_retry_failed(job=job, user=request.user, group=group)
        modeladmin.message_user(request, f"Retrying {n} file(s) of the group.", messages.SUCCESS)
    except services.JobStateError as exc:
        modeladmin.message_user(request, str(exc), messages.WARNING)
    return redirect(reverse("reports:job_report", args=[job.pk, "errors"]))


def error_groups_table(job: MigrationJob) -> str:
    """The job's failures by cause, largest first, with the normalised error text (staff
    read it) and a button that retries one group (the form is outside the change form)."""
    groups = selectors.error_groups(
        job_pass=job.current_pass, profile=str((job.options or {}).get("profile") or "")
    )
    if not groups:
        return "—"
    rows = format_html_join(
        "",
        "<tr><td><strong>{}</strong><br><small>{}</small></td><td>{}</td><td>{}</td>"
        "<td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                g.reason_label,
                g.error,
                g.folder or "(top folder)",
                g.count,
                g.bytes_h,
                f"{g.first_seen:%Y-%m-%d %H:%M:%S}" if g.first_seen else "",
                f"{g.last_seen:%H:%M:%S}" if g.last_seen else "",
                format_html_join("", "{}<br>", ((e,) for e in g.examples)),
                f"{g.cause} {g.fix}",
                format_html(
                    '<button type="submit" form="mg-retry-group" name="group" value="{}">'
                    "Retry this group</button>",
                    g.key,
                )
                if g.files
                else "",
            )
            for g in groups
        ),
    )
    return format_html(
        '<table class="mg-error-groups"><thead><tr><th>Cause</th><th>Folder</th>'
        "<th>Items</th><th>Bytes</th><th>First – last seen</th><th>Examples</th>"
        "<th>What to do</th><th></th></tr></thead><tbody>{}</tbody></table>"
        '<p><a href="{}">Errors report</a> · <a href="{}">Groups as CSV</a></p>',
        rows,
        reverse("reports:job_report", args=[job.pk, "errors"]),
        reverse("reports:job_report", args=[job.pk, "errors"]) + "?format=csv&list=groups",
    )


def _deletions_action(service, name: str, description: str, done: str):
    """Confirm or skip the deletions a pass over the cap waits for (jobs/deletions.py)."""

    def action(modeladmin, request, queryset):
        for job in queryset:
            try:
                n = service(job=job, user=request.user)
            except DeletionStateError as exc:
                modeladmin.message_user(request, str(exc), messages.WARNING)
            else:
                modeladmin.message_user(request, f"{job.name}: {n} {done}.", messages.SUCCESS)

    action.__name__ = name
    action.short_description = description
    return action


action_confirm_deletions = _deletions_action(
    deletions_confirm, "action_confirm_deletions",
    "Confirm the deletions waiting for confirmation", "deletion(s) confirmed, applied now",
)  # fmt: skip
action_skip_deletions = _deletions_action(
    deletions_skip, "action_skip_deletions",
    "Skip the deletions waiting for confirmation (delete nothing)", "deletion(s) skipped",
)  # fmt: skip


@admin.register(MigrationJob)
class MigrationJobAdmin(admin.ModelAdmin):
    form = MigrationJobForm
    list_display = ["name", "customer", "state_display", "progress", "rate", "eta",
                    "last_activity", "report_link"]  # fmt: skip
    list_filter = ["state", "customer"]
    search_fields = ["name"]
    inlines = [PathMappingInline, PassInline, IdentityOverrideInline]
    readonly_fields = ["state_display", "progress", "rate", "eta", "error", "created_at",
                       "started_at", "finished_at", "last_activity", "recent_events",
                       "signoff_display", "permissions_display", "error_groups",
                       "agents_health", "cutover_display", "pass_history",
                       "window_grid"]  # fmt: skip
    fields = ["name", "customer", "source", "destination", "agent_pool", "on_exists",
              "bwlimit", "transfer_window", "window_zone", "options",
              *readonly_fields]  # fmt: skip
    list_select_related = ["customer", "current_pass"]
    actions = [
        _job_action(services.job_start, "Start"),
        _job_action(services.job_pause, "Pause"),
        _job_action(services.job_resume, "Resume"),
        _job_action(services.job_cancel, "Cancel"),
        _job_action(services.job_retry_failed, "Retry failed"),
        action_retry_error_group,
        reapply_permissions,
        action_confirm_deletions,
        action_skip_deletions,
        _job_action(services.job_start_verify, "Verify"),
        _job_action(cutover.cutover_start, "Start cutover"),
        _job_action(_continuous_start, "Start continuous mode"),
        _job_action(_continuous_stop, "Stop continuous mode"),
    ]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
        # a new job is written by save_related, through job_create, once its mappings
        # (an inline) are known

    def save_related(self, request, form, formsets, change) -> None:
        if change:
            super().save_related(request, form, formsets, change)
            services.job_mapping_ensure(job=form.instance)
            window_save(form, form.instance)
            return
        job = form.instance
        created = services.job_create(
            customer=job.customer,
            name=job.name,
            source=job.source,
            destination=job.destination,
            mappings=_mappings_of(formsets) or (("", ""),),
            on_exists=job.on_exists,
            bwlimit=job.bwlimit,
            options=job.options,
            agent_pool=job.agent_pool,
            user=request.user,
        )
        job.pk = created.pk  # the admin's log entry and redirect name the created job
        window_save(form, created)
        job.refresh_from_db()
        job._state.adding = False
        form.save_m2m()
        for formset in formsets:
            if formset.model is PathMapping:  # written by job_create; named in the log
                formset.new_objects = list(created.mappings.all())
                formset.changed_objects, formset.deleted_objects = [], []
            else:
                self.save_formset(request, form, formset, change=False)

    @admin.display(description="transfer window")
    def window_grid(self, obj: MigrationJob) -> str:
        return window_grid(obj)

    @admin.display(description="state", ordering="state")
    def state_display(self, obj: MigrationJob) -> str:
        return state_badge(obj.state, obj.get_state_display())

    def _progress(self, obj: MigrationJob) -> dict:
        return selectors.job_progress(job=obj, job_pass=obj.current_pass)

    @admin.display(description="progress")
    def progress(self, obj: MigrationJob) -> str:
        p = self._progress(obj)
        text = f"{p['done']:,} / {p['seen']:,} files · {p['bytes_done_h']} / {p['bytes_seen_h']}"
        bar = progress_bar(p["fraction"], text)
        if obj.state not in (*JOB_ACTIVE, JobState.PAUSED):
            return bar
        # refreshes itself while the job runs; a constant few queries per refresh
        url = reverse("admin:jobs_migrationjob_live", args=[obj.pk]) + "?part=cell"
        return format_html(
            '<div hx-get="{}" hx-trigger="every 3s" hx-swap="innerHTML">{}</div>', url, bar
        )

    @admin.display(description="throughput")
    def rate(self, obj: MigrationJob) -> str:
        p = self._progress(obj)
        return f"{p['rate_h']} (avg {p.get('avg_rate_h', '—')})"

    @admin.display(description="ETA")
    def eta(self, obj: MigrationJob) -> str:
        return self._progress(obj)["eta_h"]

    @admin.display(description="recent events")
    def recent_events(self, obj: MigrationJob) -> str:
        if obj.pk is None:  # the add form: no events yet
            return "—"
        return format_html(
            '<a href="{}">Full event log</a> · <a href="{}">Manifest</a> · '
            '<a href="{}">View report</a>',
            reverse("admin:jobs_migrationjob_events", args=[obj.pk]),
            reverse("admin:jobs_migrationjob_manifest", args=[obj.pk]),
            reverse("reports:job", args=[obj.pk]),
        )

    # --- pages of their own: live panel, manifest and events (keyset paged), CSV -----

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:job_id>/live/", view(self.live_view), name="jobs_migrationjob_live"),
            path("<int:job_id>/manifest/", view(self.manifest_view),
                 name="jobs_migrationjob_manifest"),
            path("<int:job_id>/manifest.csv", view(self.manifest_csv),
                 name="jobs_migrationjob_manifest_csv"),
            path("<int:job_id>/events/", view(self.events_view), name="jobs_migrationjob_events"),
            path("<int:job_id>/events.csv", view(self.events_csv),
                 name="jobs_migrationjob_events_csv"),
            path("<int:job_id>/from-assessment/", view(self.from_assessment_view),
                 name="jobs_migrationjob_from_assessment"),
            *job_permission_urls(self),
            *job_cutover_urls(self),
            *super().get_urls(),
        ]  # fmt: skip

    @admin.display(description="accepted by the customer")
    def signoff_display(self, obj: MigrationJob) -> str:
        signoff = getattr(obj, "signoff", None)
        if signoff is None:
            return "—"
        return f"{signoff.user.get_username()} at {signoff.accepted_at:%Y-%m-%d %H:%M %Z}"

    @admin.display(description="agents")
    def agents_health(self, obj: MigrationJob) -> str:
        if obj.agent_pool_id is None:
            return "— (run by the worker cluster)"
        return admin_agents.pool_health(obj.agent_pool)

    @admin.display(description="failures by cause")
    def error_groups(self, obj: MigrationJob) -> str:
        if obj.pk is None or obj.current_pass is None:
            return "—"
        return error_groups_table(obj)

    @admin.display(description="permissions")
    def permissions_display(self, obj: MigrationJob) -> str:
        return permissions_links(obj)

    @admin.display(description="cutover")
    def cutover_display(self, obj: MigrationJob) -> str:
        return cutover_link(obj)

    @admin.display(description="pass history")
    def pass_history(self, obj: MigrationJob) -> str:
        return pass_history_table(obj)

    @admin.display(description="report")
    def report_link(self, obj: MigrationJob) -> str:
        return format_html('<a href="{}">View report</a>', reverse("reports:job", args=[obj.pk]))

    def from_assessment_view(self, request, job_id: int):
        job = self._job(request, job_id)
        if request.method != "POST" or not self.has_add_permission(request):
            raise Http404
        if job.state != JobState.ASSESSED:
            self.message_user(request, f"“{job.name}” has no finished assessment.", messages.ERROR)
            return redirect(reverse("admin:jobs_migrationjob_change", args=[job.pk]))
        created = services.job_create_from_assessment(job=job, user=request.user)
        self.message_user(
            request, f"Created “{created.name}” with the assessment's choices.", messages.SUCCESS
        )
        return redirect(reverse("admin:jobs_migrationjob_change", args=[created.pk]))

    def _job(self, request, job_id: int) -> MigrationJob:
        job = get_object_or_404(
            MigrationJob.objects.select_related("current_pass", "customer"), pk=job_id
        )
        if not self.has_view_permission(request, job):
            raise Http404
        return job

    def _pass(self, request, job: MigrationJob) -> Pass:
        number = request.GET.get("pass")
        if number and number.isdigit():
            return get_object_or_404(Pass, job=job, number=query_int(number) or 0)
        if job.current_pass is None:
            raise Http404("This job has not run yet.")
        return job.current_pass

    def live_view(self, request, job_id: int):
        job = self._job(request, job_id)
        level = request.GET.get("level", "")
        events = []
        if request.GET.get("part") != "cell":
            events, _ = selectors.events_page(job_id=job.pk, level=level, limit=15)
        context = {
            "job": job,
            "state_badge": state_badge(job.state, job.get_state_display()),
            "p": self._progress(job),
            "events": events,
            "level": level,
            "levels": EventLevel.choices,
            "active": job.state in (*JOB_ACTIVE, JobState.PAUSED),
        }
        template = (
            "admin/jobs/live_cell.html"
            if request.GET.get("part") == "cell"
            else ("admin/jobs/live.html")
        )
        return TemplateResponse(request, template, context)

    def manifest_view(self, request, job_id: int):
        job = self._job(request, job_id)
        job_pass = self._pass(request, job)
        filters = selectors.ManifestFilter.from_query(request.GET)
        after = request.GET.get("after", "")
        rows, next_after = selectors.manifest_page(
            job_pass=job_pass, filters=filters, after=query_int(after) or 0
        )
        query = request.GET.copy()
        query.pop("after", None)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Manifest — {job.name} (pass {job_pass.number})",
            "job": job,
            "job_pass": job_pass,
            "rows": rows,
            "next_after": next_after,
            "filters": filters,
            "states": ItemState.choices,
            "query": query.urlencode(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/jobs/manifest.html", context)

    def manifest_csv(self, request, job_id: int):
        job = self._job(request, job_id)
        job_pass = self._pass(request, job)
        filters = selectors.ManifestFilter.from_query(request.GET)
        return csv_response(
            csv_filename("job", job.pk, "pass", job_pass.number, "files"),
            selectors.MANIFEST_COLUMNS,
            selectors.manifest_rows(job_pass=job_pass, filters=filters),
        )

    def events_view(self, request, job_id: int):
        job = self._job(request, job_id)
        level = request.GET.get("level", "")
        before = request.GET.get("before", "")
        rows, next_before = selectors.events_page(
            job_id=job.pk, level=level, before=query_int(before)
        )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Event log — {job.name}",
            "job": job,
            "rows": rows,
            "next_before": next_before,
            "level": level,
            "levels": EventLevel.choices,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/jobs/events.html", context)

    def events_csv(self, request, job_id: int):
        job = self._job(request, job_id)
        return csv_response(
            csv_filename("job", job.pk, "events"),
            selectors.EVENT_COLUMNS,
            selectors.event_rows(job_id=job.pk, level=request.GET.get("level", "")),
        )


@admin.register(Pass)
class PassAdmin(admin.ModelAdmin):
    list_display = ["__str__", "state", "seen", "copied", "unchanged", "excluded", "failed",
                    "pending", "folders_seen", "started_at", "finished_at"]  # fmt: skip
    list_select_related = ["job"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
