"""The engine runs without Django: on a worker, in the on-premises agent, in a test."""

import subprocess
import sys

ENGINE_MODULES = [
    "migrator.storage",
    "migrator.storage.base",
    "migrator.storage.local",
    "migrator.storage.gcs",
    "migrator.storage.smb",
    "migrator.engine.copy",
    "migrator.engine.compare",
    "migrator.engine.streams",
    "migrator.acl.sd",
    "migrator.sanitize",
]


def test_engine_imports_no_django():
    code = (
        "import importlib, sys\n"
        f"for m in {ENGINE_MODULES!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'django_q', 'jobs', 'accounts', 'reports'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
