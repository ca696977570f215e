# Continuous mode (jobs/continuous.py): one ContinuousState per job in that mode. Part of
# the fixed chain (0011_delta → 0012_deletions → 0013_continuous → 0014_cutover).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0012_deletions")]

    operations = [
        migrations.CreateModel(
            name="ContinuousState",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),  # noqa: E501
                ("enabled", models.BooleanField(default=False)),
                ("lease_owner", models.CharField(blank=True, max_length=100)),
                ("lease_expires", models.DateTimeField(blank=True, null=True)),
                ("watching_since", models.DateTimeField(blank=True, null=True)),
                ("last_change_at", models.DateTimeField(blank=True, null=True)),
                ("minutes", models.JSONField(blank=True, default=dict)),
                ("changes_seen", models.BigIntegerField(default=0)),
                ("changes_applied", models.BigIntegerField(default=0)),
                ("oldest_unapplied_at", models.DateTimeField(blank=True, null=True)),
                ("reconcile_due", models.BooleanField(default=False)),
                ("reconcile_after", models.PositiveIntegerField(default=0)),
                ("last_reconcile_at", models.DateTimeField(blank=True, null=True)),
                ("last_reconcile_found", models.JSONField(blank=True, default=dict)),
                ("last_error", models.TextField(blank=True)),
                ("last_error_at", models.DateTimeField(blank=True, null=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("job", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="continuous", to="jobs.migrationjob")),  # noqa: E501
                ("reconcile_pass", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="jobs.pass")),  # noqa: E501
                ("sync_pass", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="jobs.pass")),  # noqa: E501
            ],
        ),
    ]
