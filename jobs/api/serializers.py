"""What the API shows of endpoints, jobs, passes, the manifest, events and permissions,
and what it takes to create endpoints and jobs. Endpoint secrets are write-only; endpoint
URLs, job errors and connection messages are for staff only (customers read words)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Customer
from accounts.selectors import sees_all_customers
from migrator.engine.windows import Schedule, parse_schedule, schedule_text
from reports.tables import mtime_text

from .. import plain, selectors, windows
from ..choices import JOB_RUNNING, OnExists
from ..models import (
    AgentPool,
    ContinuousState,
    Endpoint,
    Event,
    FileItem,
    MigrationJob,
    Pass,
    TransferWindow,
)


def _staff(serializer: serializers.Serializer) -> bool:
    request = serializer.context.get("request")
    return sees_all_customers(getattr(request, "user", None))


class EndpointSerializer(serializers.ModelSerializer):
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        style={"input_type": "password"},
        help_text="Password or service-account JSON. Write-only: never returned.",
    )
    customer = serializers.PrimaryKeyRelatedField(
        queryset=Customer.objects.all(), allow_null=True, required=False
    )
    has_secret = serializers.BooleanField(read_only=True)

    class Meta:
        model = Endpoint
        fields = ["id", "name", "url", "kind", "customer", "has_secret", "secret",
                  "created_at", "updated_at"]  # fmt: skip
        read_only_fields = ["kind", "created_at", "updated_at"]


class MappingSerializer(serializers.Serializer):
    source_path = serializers.CharField(allow_blank=True, max_length=2000, default="")
    destination_prefix = serializers.CharField(allow_blank=True, max_length=2000, default="")


class ContinuousSerializer(serializers.Serializer):
    """A job's continuous mode, as the panel on its page shows it (issue 15)."""

    enabled = serializers.BooleanField()
    watching_since = serializers.DateTimeField(allow_null=True)
    last_change_at = serializers.DateTimeField(allow_null=True)
    changes_seen_last_hour = serializers.IntegerField(source="seen_last_hour")
    changes_applied_last_hour = serializers.IntegerField(source="applied_last_hour")
    lag_seconds = serializers.FloatField(
        help_text="How long the oldest change not yet applied has waited (0: none waits)."
    )
    last_reconcile_at = serializers.DateTimeField(allow_null=True)
    last_reconcile_found = serializers.CharField(
        source="found_words", help_text="What it found that notifications missed, in words."
    )
    last_error = serializers.CharField(help_text="The last watch error (staff read it whole).")
    last_error_at = serializers.DateTimeField(allow_null=True)


class TransferWindowSerializer(serializers.Serializer):
    """A job's transfer window: when it may copy and how fast, as rules in a zone."""

    rules = serializers.CharField(
        allow_blank=True,
        help_text="'* closed; mon-fri 08-18 10MB/s; sat,sun unlimited': days (* mon … sun, "
        "ranges), hours HH-HH (end excluded), closed | unlimited | a rate; a later rule "
        "wins; empty: always open.",
    )
    zone = serializers.CharField(default="UTC", help_text="IANA time zone of the hours.")
    grid = serializers.ListField(
        read_only=True, help_text="7 days (Monday first) of 24 hours: null open, 0 closed, "
        "n bytes/s.",
    )  # fmt: skip

    def validate(self, data: dict) -> dict:
        try:
            Schedule(parse_schedule(data["rules"]), data["zone"])
        except ValueError as exc:
            raise serializers.ValidationError([str(exc)]) from exc
        return data


class JobSerializer(serializers.ModelSerializer):
    """A job as its reader may see it: staff read the endpoints' ids and the error as the
    system wrote it; a customer reads the route and the error in words."""

    mappings = MappingSerializer(many=True, read_only=True)
    route = serializers.SerializerMethodField(help_text="The endpoints' kinds, in words.")
    error = serializers.SerializerMethodField()
    transfer_window = serializers.SerializerMethodField(
        help_text="When the job may copy and how fast (null: always, at bwlimit)."
    )
    continuous = serializers.SerializerMethodField(
        help_text="Continuous mode's state on a job's own page; null in lists and for a job "
        "never in continuous mode."
    )
    current_pass = serializers.SlugRelatedField(
        slug_field="number", read_only=True, allow_null=True
    )
    agent_pool = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True,
        help_text="The on-premises agent pool that runs the job (null: the cloud's workers).",
    )  # fmt: skip
    agent_pool_name = serializers.CharField(source="agent_pool.name", read_only=True,
                                            allow_null=True)  # fmt: skip

    class Meta:
        model = MigrationJob
        fields = ["id", "name", "customer", "state", "source", "destination", "route",
                  "mappings", "on_exists", "bwlimit", "options", "agent_pool",
                  "agent_pool_name", "error", "current_pass", "created_at", "queued_at",
                  "started_at", "finished_at", "last_activity", "continuous",
                  "transfer_window"]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(TransferWindowSerializer(allow_null=True))
    def get_transfer_window(self, job: MigrationJob) -> dict | None:
        if self.parent is not None:  # a list of jobs: one more query each, left out
            return None
        window = TransferWindow.objects.filter(job=job).first()
        if window is None:
            return None
        return {"rules": schedule_text(window.grid), "zone": window.zone, "grid": window.grid}

    def get_route(self, job: MigrationJob) -> str:
        return plain.route_words(job.source, job.destination)

    @extend_schema_field(ContinuousSerializer(allow_null=True))
    def get_continuous(self, job: MigrationJob) -> dict | None:
        if self.parent is not None:  # a list of jobs: one more query each, left out
            return None
        state = ContinuousState.objects.filter(job=job).first()
        if state is None:
            return None
        data = ContinuousSerializer(state).data
        if not _staff(self) and data["last_error"]:
            data["last_error"] = "the watch of the source was interrupted"  # hosts, shares
        return data

    def get_error(self, job: MigrationJob) -> str:
        return job.error if _staff(self) else selectors.job_public_error(job)


class JobCreateSerializer(serializers.Serializer):
    customer = serializers.PrimaryKeyRelatedField(queryset=Customer.objects.all())
    name = serializers.CharField(max_length=200)
    source = serializers.PrimaryKeyRelatedField(queryset=Endpoint.objects.all())
    destination = serializers.PrimaryKeyRelatedField(queryset=Endpoint.objects.all())
    mappings = MappingSerializer(many=True, required=False)
    on_exists = serializers.ChoiceField(OnExists.choices, default=OnExists.SKIP_IDENTICAL)
    bwlimit = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, help_text="Bytes per second."
    )
    options = serializers.DictField(
        required=False,
        help_text='{"profile": "gcs|windows|smb|sharepoint|egnyte|posix", "filters": {...}, '
        '"assess_only": false, …} as in the admin.',
    )
    agent_pool = serializers.PrimaryKeyRelatedField(
        queryset=AgentPool.objects.all(),
        required=False,
        allow_null=True,
        help_text="An agent pool of the same customer: its on-premises agents run the job "
        "(omitted or null: the cloud's workers).",
    )
    transfer_window = TransferWindowSerializer(
        required=False, help_text="When the job may copy (omitted: always, at bwlimit)."
    )

    def validate(self, data: dict) -> dict:
        pool, customer = data.get("agent_pool"), data["customer"]
        if pool is not None and pool.customer_id != customer.pk:
            raise serializers.ValidationError({"agent_pool": [
                f"The agent pool “{pool.name}” belongs to another customer: "
                f"pick a pool of {customer.name}."
            ]})  # fmt: skip
        return data


class RetrySerializer(serializers.Serializer):
    group = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="Only this error group's files (its key, from the errors report).",
    )


class ProgressSerializer(serializers.Serializer):
    """jobs.selectors.job_progress: counters, rate and ETA of the job's current pass."""

    state = serializers.CharField()
    pass_number = serializers.IntegerField(allow_null=True)
    seen = serializers.IntegerField()
    done = serializers.IntegerField()
    pending = serializers.IntegerField(default=0)
    fraction = serializers.FloatField()
    bytes_seen = serializers.IntegerField()
    bytes_done = serializers.IntegerField()
    bytes_fraction = serializers.FloatField()
    files_rate = serializers.FloatField(allow_null=True, help_text="Files per second now.")
    bytes_rate = serializers.FloatField(allow_null=True, help_text="Bytes per second now.")
    avg_files_rate = serializers.FloatField(allow_null=True)
    avg_bytes_rate = serializers.FloatField(allow_null=True, default=None)
    eta_seconds = serializers.FloatField(allow_null=True)
    rate_h = serializers.CharField()
    eta_h = serializers.CharField()
    elapsed_h = serializers.CharField(default="—")
    waiting = serializers.CharField(
        default="", help_text='What the pass waits for: "waiting for confirmation of N deletions".'
    )
    window = serializers.SerializerMethodField(
        help_text='"waiting for window until Mon 07 Dec 08:00 (Europe/Paris)" while the job '
        "is outside its transfer window, else empty."
    )

    def get_window(self, progress: dict) -> str:
        p = progress.get("pass")
        if p is None or progress.get("state") not in JOB_RUNNING:
            return ""
        return windows.waiting_texts(job_ids=[p.job_id]).get(p.job_id, "")


class PassSerializer(serializers.ModelSerializer):
    # a catch-up pass's delta (issue 15); null where the pass has no such counter
    delta_new = serializers.SerializerMethodField()
    delta_changed = serializers.SerializerMethodField()
    deleted_at_source = serializers.SerializerMethodField()
    conflicts = serializers.SerializerMethodField()

    class Meta:
        model = Pass
        fields = ["number", "kind", "state", "started_at", "finished_at", "scan_finished",
                  "seen", "copied", "unchanged", "excluded", "failed", "pending",
                  "bytes_seen", "bytes_copied", "bytes_done", "folders_seen",
                  "folders_created", "folders_failed", "batches_total", "batches_done",
                  "acl_applied", "acl_narrowed", "acl_denied", "acl_unmapped",
                  "delta_new", "delta_changed", "deleted_at_source", "conflicts"]  # fmt: skip
        read_only_fields = fields

    def get_delta_new(self, p: Pass) -> int | None:
        return getattr(p, "delta_new", None)

    def get_delta_changed(self, p: Pass) -> int | None:
        return getattr(p, "delta_changed", None)

    def get_deleted_at_source(self, p: Pass) -> int | None:
        return getattr(p, "deleted_at_source", None)

    def get_conflicts(self, p: Pass) -> int | None:
        return getattr(p, "conflicts", None)


class CutoverCommandSerializer(serializers.Serializer):
    where = serializers.CharField()
    lines = serializers.ListField(child=serializers.CharField())


class CutoverItemSerializer(serializers.Serializer):
    key = serializers.CharField()
    title = serializers.CharField()
    help = serializers.CharField()
    ticked = serializers.CharField(help_text="Who ticked it and when; empty while not ticked.")
    commands = CutoverCommandSerializer(many=True)


class CutoverLeftSerializer(serializers.Serializer):
    what = serializers.CharField()
    count = serializers.IntegerField()


class CutoverReportSerializer(serializers.Serializer):
    ready = serializers.BooleanField()
    verdict = serializers.CharField()
    left = CutoverLeftSerializer(many=True)
    review = CutoverLeftSerializer(many=True)


class CutoverSerializer(serializers.Serializer):
    step = serializers.CharField(help_text="Empty while no cutover was started.")
    state = serializers.CharField(help_text="not_started, open, running, stopped, ready, not_ready")
    reason = serializers.CharField(help_text="Why the flow stopped, in words.")
    checklist = CutoverItemSerializer(many=True)
    final_pass = serializers.IntegerField(allow_null=True, help_text="The pass's number.")
    verify_pass = serializers.IntegerField(allow_null=True)
    permissions_pass = serializers.IntegerField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    ready_at = serializers.DateTimeField(allow_null=True)
    report = CutoverReportSerializer(allow_null=True)


class CutoverTickSerializer(serializers.Serializer):
    item = serializers.ChoiceField(choices=["read_only", "continuous"])
    ticked = serializers.BooleanField(default=True)


class FileItemSerializer(serializers.ModelSerializer):
    mtime = serializers.SerializerMethodField()
    message = serializers.SerializerMethodField()

    class Meta:
        model = FileItem
        fields = ["id", "kind", "source_path", "dest_path", "size", "mtime", "state",
                  "reason", "message", "attempts", "md5", "crc32c", "renamed_from",
                  "rules"]  # fmt: skip
        read_only_fields = fields

    def get_mtime(self, item: FileItem) -> str:
        return mtime_text(item.mtime_ns)

    def get_message(self, item: FileItem) -> str:
        return item.message if _staff(self) else plain.item_message(item.reason, item.message)


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "created_at", "level", "message", "path"]
        read_only_fields = fields


class PermissionRowSerializer(serializers.Serializer):
    """One path of the permissions report (reports.permissions.row_of), lists in words."""

    id = serializers.IntegerField()
    path = serializers.CharField()
    destination_path = serializers.CharField()
    kind = serializers.CharField()
    state = serializers.CharField()
    reason = serializers.CharField()
    source_entries = serializers.ListField(child=serializers.CharField())
    grants = serializers.ListField(child=serializers.CharField())
    narrowed = serializers.ListField(child=serializers.CharField())
    denied = serializers.ListField(child=serializers.CharField())
    unmapped = serializers.ListField(child=serializers.CharField())
    inheritance = serializers.CharField()
    owner = serializers.CharField(allow_blank=True)
