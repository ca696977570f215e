"""Roles, account sources and audited actions, defined once."""

from django.db import models


class DirectoryKind(models.TextChoices):
    NONE = "", "No directory"
    ACTIVE_DIRECTORY = "ad", "Active Directory"
    OPENLDAP = "openldap", "OpenLDAP (uid, groupOfNames)"


class AccountSource(models.TextChoices):
    """Where a Django user's password is checked. A user of one source never signs in
    through another, even when the names collide."""

    LOCAL = "local", "Local account"
    STAFF_DIRECTORY = "staff_directory", "Staff directory"
    CUSTOMER_DIRECTORY = "customer_directory", "Customer's directory"


class MembershipSource(models.TextChoices):
    MANUAL = "manual", "Added by staff"
    INVITATION = "invitation", "Invitation"
    DIRECTORY = "directory", "Customer's directory group (refreshed at each login)"


class AuditAction(models.TextChoices):
    CREATE = "create", "Create"
    EDIT = "edit", "Edit"
    DELETE = "delete", "Delete"
    START = "start", "Start"
    PAUSE = "pause", "Pause"
    RESUME = "resume", "Resume"
    CANCEL = "cancel", "Cancel"
    RETRY = "retry", "Retry failed"
