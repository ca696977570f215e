# Deleted at source (jobs/deletions.py): the pass's deletion counters and state, and one
# Deletion row per destination object whose source is gone. Part of the fixed chain
# (0011_delta → 0012_deletions → 0013_continuous → 0014_cutover).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0011_delta")]

    operations = [
        migrations.AddField(
            model_name="pass",
            name="deleted_at_source",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="pass",
            name="deletes_done",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="pass",
            name="deletes_failed",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="pass",
            name="deletes_state",
            field=models.CharField(blank=True, default="", max_length=24),
        ),
        migrations.CreateModel(
            name="Deletion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("dest_path", models.TextField()),
                (
                    "source_path",
                    models.TextField(blank=True, help_text="Empty when we never wrote it."),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[("file", "File"), ("dir", "Folder")], default="file", max_length=4
                    ),
                ),
                ("size", models.BigIntegerField(default=0)),
                (
                    "ours",
                    models.BooleanField(default=False, help_text="Written by an earlier pass."),
                ),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("kept", "Deleted at source, kept at the destination"),
                            ("pending", "To be deleted"),
                            ("deleted", "Deleted at the destination"),
                            ("trashed", "Moved to the trash folder"),
                            ("failed", "Could not be deleted"),
                            ("awaiting_confirmation", "Waiting for confirmation (over the cap)"),
                        ],
                        default="pending",
                        max_length=24,
                    ),
                ),
                ("reason", models.CharField(blank=True, max_length=40)),
                ("message", models.TextField(blank=True)),
                ("trash_path", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "job",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="jobs.migrationjob",
                    ),
                ),
                (
                    "job_pass",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deletions",
                        to="jobs.pass",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["job_pass", "action", "id"], name="deletion_pass_action")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("job_pass", "dest_path"), name="deletion_path_unique"
                    )
                ],
            },
        ),
    ]
