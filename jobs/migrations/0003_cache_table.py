from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    # the shared cache (DatabaseCache) where django-q2 keeps cluster stats
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_reap_schedule")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
