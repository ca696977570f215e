"""The engine runs without Django: on a worker, in the on-premises agent, in a test."""

import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FRAMEWORK = ("django", "rest_framework", "django_q", "jobs", "accounts", "reports")
# what the engine imports that is not in the standard library (crc32c; python-ldap and
# pyasn1 for the directory)
THIRD_PARTY = ("google_crc32c", "ldap", "ldapurl", "ldif", "_ldap", "pyasn1", "pyasn1_modules")


def engine_modules() -> list[str]:
    """Every module of migrator.storage, migrator.engine, migrator.acl, and sanitize."""
    names = ["migrator.sanitize"]
    for package in ("storage", "engine", "acl"):
        names.append(f"migrator.{package}")
        path = [str(REPO / "migrator" / package)]
        for info in pkgutil.walk_packages(path, prefix=f"migrator.{package}."):
            names.append(info.name)
    return sorted(names)


def test_every_engine_module_is_listed():
    modules = engine_modules()
    for required in ("migrator.acl.apply", "migrator.engine.plan", "migrator.engine.prefetch",
                     "migrator.engine.scan", "migrator.engine.batch", "migrator.engine.sink",
                     "migrator.storage.smb"):  # fmt: skip
        assert required in modules


def test_engine_imports_no_django():
    code = (
        "import importlib, sys\n"
        f"for m in {engine_modules()!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORK!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == ""


SCRIPT = """
import importlib.util, os, sys
assert importlib.util.find_spec("django") is None, "Django is on this interpreter's path"
from migrator.engine.memory import run_pass
from migrator.engine.filters import Filters
src, dst = sys.argv[1], sys.argv[2]
sink = run_pass("file://" + src, "file://" + dst, batch_files=4, profile="windows",
                filters=Filters.from_dict({"exclude": ["*.tmp"]}))
c = sink.counts()
print(c["seen"], c["copied"], c["excluded"], c["failed"], c["pending"], sink.batches_recorded)
"""


def test_a_whole_pass_runs_from_a_plain_script_with_no_django_on_the_path(tmp_path):
    """`python -S` (no site-packages) with only the engine's few non-stdlib packages linked
    into a folder of their own: a scan and every batch, into an in-memory sink."""
    libs = tmp_path / "libs"
    libs.mkdir()
    for name in THIRD_PARTY:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        origin = Path(spec.origin)
        target = origin.parent if spec.submodule_search_locations else origin
        os.symlink(target, libs / target.name)
    src, dst = tmp_path / "src", tmp_path / "dst"
    for i in range(10):
        (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 3}" / f"f{i}.txt").write_bytes(b"x" * i)
    (src / "CON.txt").write_bytes(b"reserved on Windows")
    (src / "scratch.tmp").write_bytes(b"left out")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{REPO}{os.pathsep}{libs}"}
    out = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT, str(src), str(dst)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    seen, copied, excluded, failed, pending, batches = map(int, out.stdout.split())
    assert (seen, copied, excluded, failed, pending) == (12, 11, 1, 0, 0)
    assert seen == copied + excluded + failed + pending
    assert batches == 4  # 11 files and 3 folders in batches of 4
    assert (dst / "CON_.txt").read_bytes() == b"reserved on Windows"
    assert (dst / "d2" / "f8.txt").read_bytes() == b"x" * 8
    assert not (dst / "scratch.tmp").exists()
