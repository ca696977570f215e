"""Audit of edits made in the admin: the admin's own log entries (add, change) and deletions
(the admin's bulk delete writes its log with bulk_create, which sends no signal)."""

from __future__ import annotations

from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .choices import AuditAction
from .services import audit_record

AUDITED = {("jobs", "migrationjob"), ("jobs", "endpoint"), ("accounts", "customer")}
# added in the admin through a service that records the creation itself (job_create)
CREATION_RECORDED_BY_SERVICE = {("jobs", "migrationjob")}


@receiver(post_save, sender=LogEntry)
def audit_admin_change(sender, instance: LogEntry, created: bool, **kwargs) -> None:
    if not created or instance.action_flag not in (ADDITION, CHANGE):
        return
    ct = instance.content_type
    if ct is None or (ct.app_label, ct.model) not in AUDITED:
        return
    if (
        instance.action_flag == ADDITION
        and (ct.app_label, ct.model) in CREATION_RECORDED_BY_SERVICE
    ):
        return
    obj = ct.model_class()._default_manager.filter(pk=instance.object_id).first()
    if obj is None:
        return
    action = AuditAction.CREATE if instance.action_flag == ADDITION else AuditAction.EDIT
    # get_change_message() names the fields that changed, never their values
    audit_record(action=action, obj=obj, user=instance.user, detail=instance.get_change_message())


def audit_delete(sender, instance, **kwargs) -> None:
    audit_record(action=AuditAction.DELETE, obj=instance)


def connect() -> None:
    from django.apps import apps

    for app_label, model in AUDITED:
        post_delete.connect(
            audit_delete,
            sender=apps.get_model(app_label, model),
            dispatch_uid=f"accounts-audit-delete-{app_label}.{model}",
        )
