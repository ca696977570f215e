# The files report sorted by path walks an index in that order instead of sorting the pass
# (issue 16: 640 ms a page at 1,000,000 rows on PostgreSQL). Byte order on both databases:
# on PostgreSQL the path COLLATE "C" (the locale's collation costs more per comparison, and
# the text_pattern_ops index item_job_path cannot give an ORDER BY), on SQLite the default
# BINARY collation. Raw SQL, with no model state: Django's Collate("source_path", "C")
# would not build on SQLite, which has no collation named C. reports.tables.by_path orders
# and filters by the same expression, so the planner matches this index.

from django.db import migrations

INDEX = "item_pass_path"
COLUMNS = {
    "postgresql": '(job_pass_id, source_path COLLATE "C", id)',
    "sqlite": "(job_pass_id, source_path, id)",
}


def create(apps, schema_editor):
    columns = COLUMNS.get(schema_editor.connection.vendor)
    if columns:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON jobs_fileitem {columns}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0014_cutover"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
