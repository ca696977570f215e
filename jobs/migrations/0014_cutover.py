# Placeholder in a fixed chain (0011_delta → 0012_deletions → 0013_continuous → 0014_cutover)
# so that work on each can land in any order; its owner fills in the operations.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0013_continuous"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Cutover",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("step", models.CharField(
                    choices=[("checklist", "1. Freeze the source (checklist)"),
                             ("final_pass", "2. Final catch-up pass"),
                             ("verify", "3. Verify pass"),
                             ("permissions", "4. Permissions-only pass"),
                             ("ready", "5. Ready to switch")],
                    default="checklist", max_length=12)),
                ("state", models.CharField(
                    choices=[("open", "Waiting for the engineer"), ("running", "Pass running"),
                             ("stopped", "Stopped (see the reason)"),
                             ("ready", "Ready to switch"),
                             ("not_ready", "Finished, not ready to switch")],
                    default="open", max_length=10)),
                ("checklist", models.JSONField(blank=True, default=dict)),
                ("after_number", models.PositiveIntegerField(default=0)),
                ("reason", models.TextField(blank=True,
                                            help_text="Why the flow stopped, in words.")),
                ("started_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("ready_at", models.DateTimeField(blank=True, null=True)),
                ("final_pass", models.ForeignKey(
                    blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                    related_name="+", to="jobs.pass")),
                ("job", models.OneToOneField(
                    on_delete=django.db.models.deletion.CASCADE, related_name="cutover",
                    to="jobs.migrationjob")),
                ("permissions_pass", models.ForeignKey(
                    blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                    related_name="+", to="jobs.pass")),
                ("started_by", models.ForeignKey(
                    blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                    related_name="+", to=settings.AUTH_USER_MODEL)),
                ("verify_pass", models.ForeignKey(
                    blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL,
                    related_name="+", to="jobs.pass")),
            ],
        ),
    ]  # fmt: skip
