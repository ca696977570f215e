# The pass-end accounting check in constant time (issue 16): each batch keeps the files it
# recorded by state, and a Tally row per scan chunk, retry or catch-up decision keeps what
# it did to the pass's files; the check sums these instead of grouping the manifest.
# (Depends on the latest jobs migration when written; 0017 is another engineer's.)

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0017_transfer_windows"),
    ]

    operations = [
        migrations.AddField(
            model_name="batch",
            name="files_copied",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="batch",
            name="files_unchanged",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="batch",
            name="files_excluded",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="batch",
            name="files_failed",
            field=models.IntegerField(default=0),
        ),
        migrations.CreateModel(
            name="Tally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("unit", models.CharField(max_length=12)),
                ("seen", models.BigIntegerField(default=0)),
                ("pending", models.BigIntegerField(default=0)),
                ("copied", models.BigIntegerField(default=0)),
                ("unchanged", models.BigIntegerField(default=0)),
                ("excluded", models.BigIntegerField(default=0)),
                ("failed", models.BigIntegerField(default=0)),
                (
                    "job_pass",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tallies",
                        to="jobs.pass",
                    ),
                ),
            ],
        ),
    ]
