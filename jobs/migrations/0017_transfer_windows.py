# Transfer windows (issue 17): a weekly grid of hours per job or agent pool, and the
# bandwidth bucket the workers of a job share.

import django.db.models.deletion
from django.db import migrations, models

import migrator.engine.windows


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0016_notifications"),
    ]

    operations = [
        migrations.CreateModel(
            name="BandwidthBucket",
            fields=[
                (
                    "job",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="jobs.migrationjob",
                    ),
                ),
                ("next_at", models.FloatField(default=0.0)),
            ],
        ),
        migrations.CreateModel(
            name="TransferWindow",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "zone",
                    models.CharField(default="UTC", help_text="IANA time zone", max_length=64),
                ),
                (
                    "grid",
                    models.JSONField(
                        default=migrator.engine.windows.open_grid,
                        help_text="7 days (Monday first) x 24 hours: null open, 0 closed, n bytes/s",
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "job",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="transfer_window",
                        to="jobs.migrationjob",
                    ),
                ),
                (
                    "pool",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="transfer_window",
                        to="jobs.agentpool",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("job__isnull", False), ("pool__isnull", True)),
                            models.Q(("job__isnull", True), ("pool__isnull", False)),
                            _connector="OR",
                        ),
                        name="transfer_window_job_or_pool",
                    )
                ],
            },
        ),
    ]
