# Indexes that let the reports page through a pass of millions of rows without reading it
# (issue 16). Raw SQL with no model state: the path index needs a collation that only
# PostgreSQL has, and partial indexes are written here as the queries spell their
# conditions, which is what lets each database's planner prove that an index applies.
#
# - item_pass_path: the files report sorted by path walks the pass in byte order of the
#   path (640 ms, then 2.3 s a page sorting 1,000,000 rows on PostgreSQL): COLLATE "C" on
#   PostgreSQL (the text_pattern_ops index item_job_path cannot give an ORDER BY),
#   SQLite's default BINARY collation. reports.tables.by_path orders by the same expression.
# - item_pass_renamed: the renames report's rows (renamed, or excluded), in id order: a few
#   in a pass, so the report no longer walks every row to find none (1.2 s at 1,000,000).
# - item_pass_acl: the permissions report's rows (those with an ACL record), in id order
#   (1.7 s at 1,000,000 rows of a job that migrates no permissions).
# The two partial indexes hold only the rows they are for: the scan's insert rate of a
# job that renames nothing and migrates no permissions is unchanged.

from django.db import migrations

PATH = {
    "postgresql": '(job_pass_id, source_path COLLATE "C", id)',
    "sqlite": "(job_pass_id, source_path, id)",
}
INDEXES = {
    "item_pass_renamed": "(job_pass_id, id) WHERE (NOT (rules = '') OR state = 'excluded')",
    "item_pass_acl": "(job_pass_id, id) WHERE acl_id IS NOT NULL",
}


def create(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor not in PATH:
        return
    for name, columns in {"item_pass_path": PATH[vendor], **INDEXES}.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON jobs_fileitem {columns}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor in PATH:
        for name in ("item_pass_path", *INDEXES):
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0014_cutover"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
