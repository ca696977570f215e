"""Customers, who may see them (memberships), where accounts come from, invitations and
the audit of staff actions. Fields and constraints only; workflows live in services.py."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from . import crypto
from .choices import AccountSource, AuditAction, DirectoryKind, MembershipSource


class Customer(models.Model):
    """A company whose file shares we migrate."""

    name = models.CharField(max_length=200, unique=True)
    max_running_jobs = models.PositiveIntegerField(
        default=4, help_text="Jobs of this customer that may run at once; the rest wait in order."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Optional: the customer's own directory, for customers whose AD is federated. Its
    # users sign in as name@domain or DOMAIN\name and become viewers of this customer.
    directory_kind = models.CharField(
        "directory", max_length=10, choices=DirectoryKind.choices, blank=True, default=""
    )
    directory_uri = models.CharField(
        "server URI", max_length=500, blank=True, help_text="ldap://dc.example.com or ldaps://…"
    )
    directory_start_tls = models.BooleanField("StartTLS", default=False)
    directory_ca_file = models.CharField(
        "CA file", max_length=500, blank=True, help_text="Path of a PEM file on the server."
    )
    directory_bind_dn = models.CharField("bind DN", max_length=500, blank=True)
    directory_bind_password_encrypted = models.TextField(blank=True, editable=False)
    directory_user_search_base = models.CharField("user search base", max_length=500, blank=True)
    directory_group_search_base = models.CharField(
        "group search base", max_length=500, blank=True, help_text="Empty: the user search base."
    )
    directory_viewer_group = models.CharField(
        "viewer group DN",
        max_length=500,
        blank=True,
        help_text="Members (also through nested groups) are viewers of this customer; "
        "checked at each login.",
    )
    directory_domains = models.CharField(
        "sign-in domains",
        max_length=500,
        blank=True,
        help_text="Comma-separated: the UPN suffix first (example.com), then other names "
        "users may type, such as the NetBIOS domain (EXAMPLE).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_directory(self) -> bool:
        return bool(self.directory_kind and self.directory_uri and self.domain_names)

    @property
    def domain_names(self) -> list[str]:
        return [d.strip().lower() for d in self.directory_domains.split(",") if d.strip()]

    @property
    def has_directory_bind_password(self) -> bool:
        return bool(self.directory_bind_password_encrypted)

    def set_directory_bind_password(self, plain: str) -> None:
        self.directory_bind_password_encrypted = crypto.encrypt(plain)

    def get_directory_bind_password(self) -> str:
        return crypto.decrypt(self.directory_bind_password_encrypted)

    def directory_connection(self) -> dict:
        """How to reach this customer's directory, the one builder for sign-in (accounts),
        SID resolution and the identity export (jobs): uri, kind, bind, bases, TLS."""
        return {
            "uri": self.directory_uri,
            "kind": self.directory_kind,
            "bind_dn": self.directory_bind_dn,
            "bind_password": self.get_directory_bind_password()
            if self.has_directory_bind_password
            else "",
            "user_search_base": self.directory_user_search_base,
            "group_search_base": self.directory_group_search_base,
            "start_tls": self.directory_start_tls,
            "ca_file": self.directory_ca_file,
        }


class Profile(models.Model):
    """Where a user's password is checked. Users without one are local accounts."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_profile"
    )
    source = models.CharField(
        max_length=20, choices=AccountSource.choices, default=AccountSource.LOCAL
    )
    directory_customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    last_directory_login = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.get_source_display()})"


class Membership(models.Model):
    """A customer viewer may see this customer's migrations (read-only, in the portal)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    source = models.CharField(
        max_length=12, choices=MembershipSource.choices, default=MembershipSource.MANUAL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer__name", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "customer"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.customer}"


class Invitation(models.Model):
    """A customer viewer invited by email; the link lets them choose a password once."""

    email = models.EmailField()
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="invitations")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="invitations"
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} → {self.customer}"


class AuditEntry(models.Model):
    """A staff action that changed a job or an endpoint: who, when, what, from where."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    username = models.CharField(max_length=150, blank=True)  # kept if the user is deleted
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    action = models.CharField(max_length=10, choices=AuditAction.choices)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=50)
    object_repr = models.CharField("object", max_length=200)
    customer_name = models.CharField("customer", max_length=200, blank=True)  # a snapshot
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.username} {self.action} {self.object_type} {self.object_repr}"


class ApiToken(models.Model):
    """A key for the REST API. Only its SHA-256 is stored: the token itself is shown once,
    when it is made. It acts as its user: staff may do everything, a customer viewer reads
    its customers' jobs. Revoked tokens are kept (who had one, when it was last used)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What it is for: “CI”, “nightly report”.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(
        max_length=12, editable=False, help_text="The token's first characters, to recognise it."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def active(self) -> bool:
        return self.revoked_at is None
