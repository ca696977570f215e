"""What every process pays at start: migrator_run, each worker and each copy process set
Django up, and the admin is imported then (its autodiscover). Nothing there may load the
REST API's stack: DRF's template tags once pulled in psycopg and requests (105 ms), and
the API's authentication module drf-spectacular, slowing every migrator_run by 0.15 s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("rest_framework.compat", "drf_spectacular.plumbing", "requests", "psycopg",
         "google.cloud.storage", "smbprotocol")  # fmt: skip

PROBE = """
import json, sys
import django
django.setup()
from django.core.management import load_command_class
load_command_class("jobs", "migrator_run")
print(json.dumps(sorted(m for m in %r if m in sys.modules)))
"""


def test_setting_up_django_for_a_run_loads_none_of_the_api_stack(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "migrator.settings",
        "MIGRATOR_DEV": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    env.pop("REDIS_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
