# The pass-end accounting check in constant time (issue 16): each batch keeps the files it
# recorded by state, and a Tally row per scan chunk, retry or catch-up decision keeps what
# it did to the pass's files; the check sums these instead of grouping the manifest.
# (Depends on the latest jobs migration when written; 0017 is another engineer's.)

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Count, Q


def tally_earlier_passes(apps, schema_editor):
    """Passes that may still be finished (running, or a job's current pass, which a retry
    reopens) were counted before these sums existed: one Tally each of their files by
    state now, from the manifest, so the batches recorded from here on add to it."""
    Pass = apps.get_model("jobs", "Pass")
    FileItem = apps.get_model("jobs", "FileItem")
    Tally = apps.get_model("jobs", "Tally")
    MigrationJob = apps.get_model("jobs", "MigrationJob")
    current = MigrationJob.objects.exclude(current_pass=None).values("current_pass_id")
    open_passes = Pass.objects.filter(Q(state="running") | Q(pk__in=current))
    for pass_id in open_passes.values_list("pk", flat=True):
        states = dict(
            FileItem.objects.filter(job_pass_id=pass_id, kind="file")
            .values_list("state")
            .annotate(n=Count("id"))
            .values_list("state", "n")
        )
        names = ("pending", "copied", "unchanged", "excluded", "failed")
        Tally.objects.create(
            job_pass_id=pass_id, unit="before-0018", seen=sum(states.values()),
            **{name: states.get(name, 0) for name in names},
        )  # fmt: skip


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
        migrations.RunPython(tally_earlier_passes, migrations.RunPython.noop),
    ]
