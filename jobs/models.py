"""Endpoints, jobs, passes, the file manifest and the job's events. Fields and
constraints only; workflows live in services.py and sink.py."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts import crypto
from accounts.models import Customer
from migrator.engine.windows import open_grid

from .choices import (
    BatchState,
    Change,
    CutoverState,
    CutoverStep,
    DeletionAction,
    EventLevel,
    ItemKind,
    ItemState,
    JobState,
    OnExists,
    PassKind,
    PassState,
)


class Endpoint(models.Model):
    """A source or destination: a local folder, an SMB share, a GCS bucket."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="endpoints", null=True, blank=True
    )
    name = models.CharField(max_length=200)
    url = models.CharField(
        max_length=2000,
        help_text="file:///abs/path, gs://bucket/prefix or smb://DOMAIN;user@host[:port]/share/path",
    )
    secret_encrypted = models.TextField(blank=True, editable=False)
    # The directory that resolves this source's SIDs when it is not the customer's own
    # (an SMB share of another domain); empty: the customer's directory.
    directory_uri = models.CharField(
        "directory URI", max_length=500, blank=True, help_text="ldap://dc.example.com or ldaps://…"
    )
    directory_bind_dn = models.CharField("directory bind DN", max_length=500, blank=True)
    directory_bind_password_encrypted = models.TextField(blank=True, editable=False)
    directory_base_dn = models.CharField("directory base DN", max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def kind(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    def clean(self) -> None:
        # the URL is shown in lists, events and logs: a password in it would be shown too
        if urlsplit(self.url).password is not None:
            raise ValidationError({"url": "Put the password in the secret, not in the URL."})

    def set_secret(self, plain: str) -> None:
        self.secret_encrypted = crypto.encrypt(plain)

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)

    def set_directory_bind_password(self, plain: str) -> None:
        self.directory_bind_password_encrypted = crypto.encrypt(plain) if plain else ""

    def get_directory_bind_password(self) -> str:
        return crypto.decrypt(self.directory_bind_password_encrypted)


class MigrationJob(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=200)
    source = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+")
    destination = models.ForeignKey(Endpoint, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(
        max_length=24, choices=JobState.choices, default=JobState.DRAFT, db_index=True
    )
    on_exists = models.CharField(
        max_length=20, choices=OnExists.choices, default=OnExists.SKIP_IDENTICAL
    )
    bwlimit = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Bandwidth limit in bytes per second (empty: none)."
    )
    options = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"profile": "gcs|windows|smb|sharepoint|egnyte|posix", "replacement": "_", '
        '"normalize": "NFC", "case_insensitive": null, "filters": {...}, "assess_only": false}',
    )
    error = models.TextField(blank=True, help_text="Why the job could not run, in words.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_activity = models.DateTimeField(null=True, blank=True)
    current_pass = models.ForeignKey(
        "Pass", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # the kind of the next pass when it is not the usual one ("permissions": re-apply
    # permissions without copying data); cleared when that pass starts
    next_pass_kind = models.CharField(max_length=12, blank=True, editable=False)
    # a source the cloud cannot reach: the on-premises agents of this pool scan and copy
    # it (the worker cluster leaves its scan and batches alone)
    agent_pool = models.ForeignKey(
        "AgentPool", on_delete=models.PROTECT, null=True, blank=True, related_name="jobs",
        help_text="Run by the on-premises agents of this pool (the source is at the customer's).",
    )  # fmt: skip

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "migration job"

    def __str__(self) -> str:
        return self.name

    @property
    def is_live(self) -> bool:
        """Still moving (or paused): pages showing it refresh themselves."""
        return self.state in ("queued", "scanning", "assessing", "copying", "verifying", "paused")


class PathMapping(models.Model):
    """Source folder -> destination prefix; a job has one or more."""

    job = models.ForeignKey(MigrationJob, on_delete=models.CASCADE, related_name="mappings")
    position = models.PositiveIntegerField(default=0)
    source_path = models.CharField(max_length=2000, blank=True)
    destination_prefix = models.CharField(max_length=2000, blank=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"/{self.source_path} → /{self.destination_prefix}"


class Pass(models.Model):
    """One run over the source. Counters are added to per batch with F(); the accounting
    identity seen = copied + unchanged + excluded + failed + pending holds at all times."""

    job = models.ForeignKey(MigrationJob, on_delete=models.CASCADE, related_name="passes")
    number = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=PassKind.choices, default=PassKind.COPY)
    state = models.CharField(max_length=10, choices=PassState.choices, default=PassState.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    scan_finished = models.BooleanField(default=False)
    scan_cursor = models.TextField(blank=True)  # "<mapping position>/<last path>"
    scan_lease_expires = models.DateTimeField(null=True, blank=True)
    scan_lease_owner = models.CharField(max_length=100, blank=True)
    current_folder = models.TextField(blank=True)

    seen = models.BigIntegerField(default=0)
    copied = models.BigIntegerField(default=0)
    unchanged = models.BigIntegerField(default=0)
    excluded = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    bytes_seen = models.BigIntegerField(default=0)
    bytes_copied = models.BigIntegerField(default=0)
    bytes_done = models.BigIntegerField(default=0)  # copied + unchanged + excluded + failed
    folders_seen = models.BigIntegerField(default=0)
    folders_created = models.BigIntegerField(default=0)
    folders_failed = models.BigIntegerField(default=0)
    batches_total = models.IntegerField(default=0)
    batches_done = models.IntegerField(default=0)
    assessment = models.JSONField(null=True, blank=True)
    # permissions: items whose permissions were applied at the destination, and items
    # whose ACL had entries narrowed, deny entries, identities that map to nobody
    acl_applied = models.BigIntegerField(default=0)
    acl_narrowed = models.BigIntegerField(default=0)
    acl_denied = models.BigIntegerField(default=0)
    acl_unmapped = models.BigIntegerField(default=0)
    acl_manifest = models.TextField(
        blank=True, help_text="Where the permissions manifest was written, or why it was not."
    )
    acl_manifest_batches = models.IntegerField(null=True, blank=True, editable=False)
    # a catch-up pass (jobs/delta.py): files new and changed at the source, objects changed
    # at the destination since we wrote them; whether the destination was listed yet
    delta_new = models.BigIntegerField(default=0)
    delta_changed = models.BigIntegerField(default=0)
    conflicts = models.BigIntegerField(default=0)
    delta_checked = models.BooleanField(default=False)
    # deleted at source (jobs/deletions.py): objects we wrote that the source no longer
    # has, deletions (or moves to the trash) done and failed, and where the pass stands
    # with them ("", "awaiting_confirmation", "confirmed", "skipped", "done")
    deleted_at_source = models.BigIntegerField(default=0)
    deletes_done = models.BigIntegerField(default=0)
    deletes_failed = models.BigIntegerField(default=0)
    deletes_state = models.CharField(max_length=24, blank=True, default="")

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="pass_number_unique"),
        ]
        verbose_name_plural = "passes"

    def __str__(self) -> str:
        return f"{self.job} — pass {self.number}"

    @property
    def done(self) -> int:
        return self.copied + self.unchanged + self.excluded + self.failed

    @property
    def accounted(self) -> bool:
        return self.seen == self.done + self.pending


class FileItem(models.Model):
    """The manifest: one row per file or folder seen by a pass."""

    # no single-column FK indexes: the composite ones below lead with these columns, and
    # every index costs the scan's insert rate. No database FK constraints either: on
    # PostgreSQL they check every inserted row at commit, measured 1.7x the scan's time
    # over 200,000 entries. Rows are only written by the scan under its lock on the
    # pass; deletes still cascade (Django's collector does that, not the database).
    job = models.ForeignKey(
        MigrationJob, on_delete=models.CASCADE, related_name="+", db_index=False,
        db_constraint=False,
    )  # fmt: skip
    job_pass = models.ForeignKey(
        Pass, on_delete=models.CASCADE, related_name="items", db_index=False,
        db_constraint=False,
    )  # fmt: skip
    kind = models.CharField(max_length=4, choices=ItemKind.choices, default=ItemKind.FILE)
    source_path = models.TextField()
    dest_path = models.TextField(blank=True)
    size = models.BigIntegerField(default=0)
    mtime_ns = models.BigIntegerField(default=0)
    state = models.CharField(max_length=10, choices=ItemState.choices, default=ItemState.PENDING)
    reason = models.CharField(max_length=40, blank=True)
    message = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    md5 = models.CharField(max_length=32, blank=True)
    crc32c = models.CharField(max_length=8, blank=True)
    renamed_from = models.TextField(blank=True, help_text="Destination path before renaming.")
    rules = models.CharField(max_length=200, blank=True, help_text="Sanitization rules fired.")
    # the destination path as the destination compares names (case-folded where it is
    # case-insensitive): unique per pass, so two source names never land on one object
    dest_key = models.TextField(blank=True)
    # the last part of the source path, case-folded: search finds files by name with it
    name_key = models.TextField(blank=True, default="")
    # a catch-up pass: new, changed, conflict or missing, compared with the last pass
    change = models.CharField(max_length=8, choices=Change.choices, blank=True, default="")
    # the item's security descriptor as translated (few distinct ones per pass); no
    # index or constraint: the scan's insert rate matters more
    acl = models.ForeignKey(
        "AclRecord",
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
        related_name="+",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["job_pass", "dest_key"],
                condition=~models.Q(dest_key=""),
                name="item_dest_unique_per_pass",
            ),
        ]
        indexes = [
            # a pass's rows in id order, all of them or one state's: keyset pages, batch
            # ranges and the CSV walk them as ranges (SQLite adds the rowid to every
            # index; PostgreSQL needs id named, or it sorts the whole pass per page)
            models.Index(fields=["job_pass", "state", "id"], name="item_pass_state_id"),
            models.Index(fields=["job_pass", "id"], name="item_pass_id"),
            models.Index(
                fields=["job_pass", "name_key"],
                name="item_pass_name",
                opclasses=["int8_ops", "text_pattern_ops"],
            ),
            # byte-order on PostgreSQL (opclasses are ignored elsewhere): cheaper inserts
            # than the locale's collation, and path-prefix lookups use it
            models.Index(
                fields=["job", "source_path"],
                name="item_job_path",
                opclasses=["int8_ops", "text_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        return self.source_path


class Batch(models.Model):
    """A range of manifest rows copied as one unit of work, leased with an expiry."""

    job = models.ForeignKey(MigrationJob, on_delete=models.CASCADE, related_name="+")
    job_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="batches")
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    files = models.IntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    state = models.CharField(max_length=10, choices=BatchState.choices, default=BatchState.QUEUED)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # files this batch recorded, by state, from the rows it updated, in their transaction:
    # the pass-end accounting check sums these (and the Tally rows) instead of grouping
    # the manifest (jobs.selectors.pass_tallies)
    files_copied = models.IntegerField(default=0)
    files_unchanged = models.IntegerField(default=0)
    files_excluded = models.IntegerField(default=0)
    files_failed = models.IntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["state", "lease_expires"], name="batch_state_lease")]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.first_id}–{self.last_id})"


class Tally(models.Model):
    """What one unit of work other than a batch did to a pass's files, by state (signed),
    written in the transaction of the rows it counts: a scan chunk (files seen, and the
    state each starts in), a retry (failed back to pending), a catch-up pass's decisions
    (unchanged to pending or excluded). With the batches' counts these are what the
    pass-end accounting check sums: hundreds of rows, not the pass's millions."""

    job_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="tallies")
    unit = models.CharField(max_length=12)  # scan, retry, catch-up
    seen = models.BigIntegerField(default=0)
    pending = models.BigIntegerField(default=0)
    copied = models.BigIntegerField(default=0)
    unchanged = models.BigIntegerField(default=0)
    excluded = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.unit} tally of pass {self.job_pass_id}"


class Event(models.Model):
    """The job's log, for people: what happened, in words."""

    job = models.ForeignKey(MigrationJob, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    level = models.CharField(max_length=8, choices=EventLevel.choices, default=EventLevel.INFO)
    message = models.TextField()
    path = models.TextField(blank=True)
    staff_only = models.BooleanField(default=False)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["job", "level", "id"], name="event_job_level")]

    def __str__(self) -> str:
        return self.message


class ProgressSample(models.Model):
    """Progress over time, at most one row every few seconds per pass (for throughput)."""

    job_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(auto_now_add=True)
    files_done = models.BigIntegerField()
    bytes_done = models.BigIntegerField()

    class Meta:
        ordering = ["job_pass", "id"]

    def __str__(self) -> str:
        return f"{self.files_done} files at {self.at:%H:%M:%S}"


class AclRecord(models.Model):
    """One distinct security descriptor met in a pass, as translated for the destination:
    the source entries and what became of them, in words and as data."""

    job = models.ForeignKey(MigrationJob, on_delete=models.CASCADE, related_name="+")
    job_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="acl_records")
    key = models.CharField(max_length=64, help_text="Digest of the descriptor and item kind.")
    kind = models.CharField(max_length=4, choices=ItemKind.choices, default=ItemKind.FILE)
    source_sd = models.BinaryField(help_text="The source's security descriptor, as read.")
    owner = models.TextField(blank=True)
    protected = models.BooleanField(default=False, help_text="Inheritance broken here.")
    source_aces = models.JSONField(default=list, help_text="The source entries, in words.")
    grants = models.JSONField(default=list)
    narrowed = models.JSONField(default=list)
    denied = models.JSONField(default=list)
    unmapped = models.JSONField(default=list)
    refused = models.BooleanField(default=False, help_text="Refused by the deny policy.")
    destination = models.JSONField(
        default=dict, help_text="What is written at the destination (object ACL, descriptor)."
    )
    items = models.BigIntegerField(default=0, help_text="Items of the pass with this ACL.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job_pass", "key"], name="aclrecord_key_per_pass"),
        ]
        verbose_name = "ACL record"

    def __str__(self) -> str:
        return f"ACL {self.key[:12]} ({self.items} items)"


class IdentityOverride(models.Model):
    """One line of a job's identity CSV: a source principal and its destination identity."""

    job = models.ForeignKey(
        MigrationJob, on_delete=models.CASCADE, related_name="identity_overrides"
    )
    source = models.CharField(max_length=500, help_text="SID, DOMAIN\\name, account or UPN.")
    target = models.CharField(max_length=320, help_text="Email, or a domain for type domain.")
    type = models.CharField(max_length=10)
    line = models.PositiveIntegerField(default=0, help_text="Line of the uploaded CSV.")

    class Meta:
        ordering = ["job", "line"]
        constraints = [
            models.UniqueConstraint(fields=["job", "source"], name="identity_override_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.source} → {self.target}"


class DirectoryIdentity(models.Model):
    """A user or group read from a customer's directory: the "AD users" export, what the
    destination needs to create the accounts."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="directory_identities"
    )
    sid = models.CharField("SID", max_length=200)
    kind = models.CharField(max_length=10)  # "user", "group"
    account = models.CharField("sAMAccountName", max_length=256, blank=True)
    upn = models.CharField("UPN", max_length=320, blank=True)
    mail = models.CharField(max_length=320, blank=True)
    display_name = models.CharField(max_length=256, blank=True)
    enabled = models.BooleanField(null=True)
    groups = models.TextField(blank=True, help_text="Direct groups, comma-separated.")
    nested_groups = models.TextField(blank=True, help_text="Every group, nesting included.")
    members = models.TextField(blank=True, help_text="A group's direct members.")
    dn = models.TextField("DN", blank=True)
    scim = models.JSONField(default=dict, help_text="The SCIM 2.0 resource.")
    refreshed_at = models.DateTimeField()

    class Meta:
        ordering = ["customer", "kind", "account"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "sid"], name="directory_identity_unique"),
        ]
        verbose_name_plural = "directory identities"

    def __str__(self) -> str:
        return self.upn or self.account or self.sid


class AgentPool(models.Model):
    """On-premises agents of one customer that share its jobs' work."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="agent_pools")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "name"], name="agent_pool_unique_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.customer})"


class EnrollmentCode(models.Model):
    """A one-time code that lets one agent join a pool; only its SHA-256 is kept."""

    pool = models.ForeignKey(AgentPool, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey("Agent", on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="+")  # fmt: skip

    def __str__(self) -> str:
        return f"enrolment code for {self.pool.name}"


class Agent(models.Model):
    """One enrolled agent: its token (only a SHA-256 kept) and what it last said."""

    pool = models.ForeignKey(AgentPool, on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=200, help_text="The host it runs on, as it said.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    version = models.CharField(max_length=50, blank=True)
    status = models.JSONField(default=dict, blank=True)  # its last heartbeat
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.pool.name})"


class Deletion(models.Model):
    """An object at the destination whose source is gone (deleted at the source, or an
    extra we never wrote), and what the job's deletion policy did with it."""

    job = models.ForeignKey(MigrationJob, on_delete=models.CASCADE, related_name="+")
    job_pass = models.ForeignKey(Pass, on_delete=models.CASCADE, related_name="deletions")
    dest_path = models.TextField()
    source_path = models.TextField(blank=True, help_text="Empty when we never wrote it.")
    kind = models.CharField(max_length=4, choices=ItemKind.choices, default=ItemKind.FILE)
    size = models.BigIntegerField(default=0)
    ours = models.BooleanField(default=False, help_text="Written by an earlier pass.")
    action = models.CharField(max_length=24, choices=DeletionAction.choices,
                              default=DeletionAction.PENDING)  # fmt: skip
    reason = models.CharField(max_length=40, blank=True)
    message = models.TextField(blank=True)
    trash_path = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job_pass", "dest_path"], name="deletion_path_unique"),
        ]
        indexes = [models.Index(fields=["job_pass", "action", "id"], name="deletion_pass_action")]

    def __str__(self) -> str:
        return self.dest_path


class Cutover(models.Model):
    """A job's cutover (jobs/cutover.py): the checklist, then a final catch-up pass, a
    verify pass and (permissions on) a permissions-only pass, then the ready report."""

    job = models.OneToOneField(MigrationJob, on_delete=models.CASCADE, related_name="cutover")
    step = models.CharField(
        max_length=12, choices=CutoverStep.choices, default=CutoverStep.CHECKLIST
    )
    state = models.CharField(
        max_length=10, choices=CutoverState.choices, default=CutoverState.OPEN
    )
    # checklist item -> who ticked it and when, in words ("" or absent: not ticked)
    checklist = models.JSONField(default=dict, blank=True)
    # the pass a running step waits for: the first of its kind numbered above this
    after_number = models.PositiveIntegerField(default=0)
    final_pass = models.ForeignKey(
        "Pass", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    verify_pass = models.ForeignKey(
        "Pass", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    permissions_pass = models.ForeignKey(
        "Pass", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reason = models.TextField(blank=True, help_text="Why the flow stopped, in words.")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
        related_name="+",
    )  # fmt: skip
    started_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"cutover of job {self.job_id}: {self.step}"


class ContinuousState(models.Model):
    """A job in continuous mode (jobs/continuous.py): whether it should follow its source's
    changes, the runner's lease (exactly one runs), and what staff and customers see."""

    job = models.OneToOneField(MigrationJob, on_delete=models.CASCADE, related_name="continuous")
    enabled = models.BooleanField(default=False)
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)
    sync_pass = models.ForeignKey(
        "Pass", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    watching_since = models.DateTimeField(null=True, blank=True)
    last_change_at = models.DateTimeField(null=True, blank=True)
    # {"seen": {minute: n}, "applied": {minute: n}} over the last hour (epoch minutes)
    minutes = models.JSONField(default=dict, blank=True)
    changes_seen = models.BigIntegerField(default=0)
    changes_applied = models.BigIntegerField(default=0)
    oldest_unapplied_at = models.DateTimeField(null=True, blank=True)
    reconcile_due = models.BooleanField(default=False)
    reconcile_after = models.PositiveIntegerField(default=0)  # its pass: numbered above this
    reconcile_pass = models.ForeignKey(
        "Pass", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    last_reconcile_at = models.DateTimeField(null=True, blank=True)
    # what the last reconciliation found that notifications missed: new, changed, deleted
    last_reconcile_found = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"continuous mode of job {self.job_id}"

    # what the continuous-state panel shows (templates/reports/_continuous.html, the API)

    def _last_hour(self, key: str) -> int:
        now_minute = int(timezone.now().timestamp() // 60)
        return sum(
            n for m, n in (self.minutes or {}).get(key, {}).items() if int(m) > now_minute - 60
        )

    @property
    def seen_last_hour(self) -> int:
        return self._last_hour("seen")

    @property
    def applied_last_hour(self) -> int:
        return self._last_hour("applied")

    @property
    def lag_seconds(self) -> float:
        """How long the oldest change not yet applied has waited (0: none waits)."""
        if not self.oldest_unapplied_at:
            return 0.0
        return max(0.0, (timezone.now() - self.oldest_unapplied_at).total_seconds())

    @property
    def lag_words(self) -> str:
        return duration_words(self.lag_seconds) if self.oldest_unapplied_at else "none"

    @property
    def found_words(self) -> str:
        """What the last reconciliation found that notifications missed, in words."""
        found = self.last_reconcile_found or {}
        if not found:
            return ""
        copied, deleted = found.get("copied", 0), found.get("deleted", 0)
        if not copied + deleted:
            return f"pass {found.get('pass')}: nothing that notifications missed"
        return (
            f"pass {found.get('pass')}: {copied + deleted} change(s) that notifications "
            f"missed ({copied} copied, {deleted} deleted at the source)"
        )


def duration_words(seconds: float) -> str:
    """A short duration as people say it: "3 s", "4 min 10 s", "2 h 5 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s} s" if s else f"{minutes} min"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min" if m else f"{hours} h"


# --- notifications (jobs/notifications.py): webhooks, their delivery log, who wants what -------


class Webhook(models.Model):
    """An HTTPS endpoint of a customer's that receives the events of its jobs (or of one
    job) as signed JSON. The signing secret is encrypted at rest and never shown again."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="webhooks")
    job = models.ForeignKey(
        MigrationJob, on_delete=models.CASCADE, null=True, blank=True, related_name="webhooks",
        help_text="Empty: every job of the customer.",
    )  # fmt: skip
    name = models.CharField(max_length=200, blank=True)
    url = models.CharField(
        "URL", max_length=2000, help_text="https://… (plain http only to loopback in development)"
    )
    secret_encrypted = models.TextField(blank=True, editable=False)
    events = models.JSONField(default=list, blank=True, help_text="Empty: every event.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer", "id"]

    def __str__(self) -> str:
        return self.name or f"webhook {self.pk} of {self.customer}"

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)

    def clean(self) -> None:
        from .notifications import webhook_url_problem

        problem = webhook_url_problem(self.url)
        if problem:
            raise ValidationError({"url": problem})
        if self.job_id and self.customer_id and self.job.customer_id != self.customer_id:
            raise ValidationError({"job": "The job belongs to another customer."})

    def set_secret(self, plain: str) -> None:
        self.secret_encrypted = crypto.encrypt(plain)

    def get_secret(self) -> str:
        return crypto.decrypt(self.secret_encrypted)


class WebhookDelivery(models.Model):
    """One attempt to deliver one event to a webhook: what was sent and what came back."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    attempt = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=10, default="pending")  # pending|delivered|retry|failed
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "next_retry_at"], name="delivery_state_retry")]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} → webhook {self.webhook_id}, attempt {self.attempt}"


class NotificationPreference(models.Model):
    """Which events a person is emailed about: for one job, one customer's jobs, or (staff,
    customer empty) every job. No row: no email."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, null=True, blank=True, related_name="+",
        help_text="Empty: every customer (staff only).",
    )  # fmt: skip
    job = models.ForeignKey(
        MigrationJob, on_delete=models.CASCADE, null=True, blank=True, related_name="+",
        help_text="Empty: every job of the customer.",
    )  # fmt: skip
    events = models.JSONField(default=list, blank=True)
    email = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user", "customer", "job"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "customer", "job"], name="notification_preference_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"notifications of {self.user} for {self.job or self.customer or 'every job'}"


class TransferWindow(models.Model):
    """When a job (or every job of an agent pool) may copy, and how fast: a weekly grid of
    hours in a time zone (migrator.engine.windows). Outside it no batch is leased."""

    job = models.OneToOneField(
        MigrationJob, on_delete=models.CASCADE, null=True, blank=True,
        related_name="transfer_window",
    )  # fmt: skip
    pool = models.OneToOneField(
        AgentPool, on_delete=models.CASCADE, null=True, blank=True,
        related_name="transfer_window",
    )  # fmt: skip
    zone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone")
    grid = models.JSONField(
        default=open_grid,
        help_text="7 days (Monday first) x 24 hours: null open, 0 closed, n bytes/s",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(job__isnull=False, pool__isnull=True)
                | models.Q(job__isnull=True, pool__isnull=False),
                name="transfer_window_job_or_pool",
            )
        ]

    def __str__(self) -> str:
        return f"transfer window of {self.job or self.pool}"


class BandwidthBucket(models.Model):
    """The job's bandwidth shared by all its workers: the time (epoch seconds) until which
    the bytes already granted occupy the limit (jobs.windows.SharedBucket)."""

    job = models.OneToOneField(
        MigrationJob, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    next_at = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"bandwidth of job {self.job_id}"
