# Placeholder in a fixed chain (0011_delta → 0012_deletions → 0013_continuous → 0014_cutover)
# so that work on each can land in any order; its owner fills in the operations.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0010_agents")]

    operations = [
        migrations.AlterField(
            model_name="pass",
            name="kind",
            field=models.CharField(
                choices=[
                    ("copy", "Copy"),
                    ("assess", "Assessment"),
                    ("retry", "Retry failed"),
                    ("permissions", "Permissions only"),
                    ("verify", "Verify (re-compare every file)"),
                    ("sync", "Continuous sync"),
                ],
                default="copy",
                max_length=12,
            ),
        ),
        migrations.AddField(
            model_name="fileitem",
            name="change",
            field=models.CharField(
                blank=True,
                choices=[
                    ("", "—"),
                    ("new", "New"),
                    ("changed", "Changed at the source"),
                    ("conflict", "Changed at the destination (conflict)"),
                    ("missing", "Missing at the destination"),
                ],
                default="",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="pass", name="conflicts", field=models.BigIntegerField(default=0)
        ),
        migrations.AddField(
            model_name="pass", name="delta_changed", field=models.BigIntegerField(default=0)
        ),
        migrations.AddField(
            model_name="pass", name="delta_checked", field=models.BooleanField(default=False)
        ),
        migrations.AddField(
            model_name="pass", name="delta_new", field=models.BigIntegerField(default=0)
        ),
    ]
