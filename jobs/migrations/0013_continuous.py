# Placeholder in a fixed chain (0011_delta → 0012_deletions → 0013_continuous → 0014_cutover)
# so that work on each can land in any order; its owner fills in the operations.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("jobs", "0012_deletions")]

    operations = []
