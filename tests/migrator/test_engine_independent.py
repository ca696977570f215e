"""The engine runs without Django: on a worker, in the on-premises agent, in a test."""

import importlib.util
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FRAMEWORK = ("django", "rest_framework", "django_q", "jobs", "accounts", "reports")
# what the engine imports that is not in the standard library (crc32c; python-ldap and
# pyasn1 for the directory)
THIRD_PARTY = ("google_crc32c", "ldap", "ldapurl", "ldif", "_ldap", "pyasn1", "pyasn1_modules")


def modules_under(path: Path, prefix: str) -> list[str]:
    """Every module and subpackage below the package at `path`. A subpackage that cannot
    be imported fails the listing: walk_packages alone would skip it and its modules."""

    def unimportable(name: str) -> None:
        raise ImportError(f"{name} cannot be imported, so its modules cannot be listed") from (
            sys.exc_info()[1]
        )

    found = pkgutil.walk_packages([str(path)], prefix=prefix, onerror=unimportable)
    return [info.name for info in found]


def engine_modules() -> list[str]:
    """Every module of migrator.storage, migrator.engine, migrator.acl, migrator.agent
    (the on-premises agent runs the engine with no Django), and sanitize."""
    names = ["migrator.sanitize"]
    for package in ("storage", "engine", "acl", "agent"):
        names.append(f"migrator.{package}")
        names += modules_under(REPO / "migrator" / package, f"migrator.{package}.")
    return sorted(names)


def test_every_engine_module_is_listed():
    modules = engine_modules()
    for required in ("migrator.acl.apply", "migrator.engine.plan", "migrator.engine.prefetch",
                     "migrator.engine.scan", "migrator.engine.batch", "migrator.engine.sink",
                     "migrator.storage.smb", "migrator.storage.smb.connector",
                     "migrator.storage.smb.wire", "migrator.agent", "migrator.agent.__main__",
                     "migrator.agent.client", "migrator.agent.sinks",
                     "migrator.agent.worker"):  # fmt: skip
        assert required in modules


def test_a_subpackage_that_cannot_be_imported_fails_the_listing(tmp_path, monkeypatch):
    """walk_packages imports each subpackage to look inside it: one that cannot be imported
    (as migrator.storage.smb would without smbprotocol) fails, it does not drop out."""
    for top, init in (("probe_whole", ""), ("probe_broken", "import no_such_dependency\n")):
        for folder, text in (("", ""), ("fine", ""), ("sub", init)):
            (tmp_path / top / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / top / folder / "__init__.py").write_text(text)
            (tmp_path / top / folder / "inner.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert sorted(modules_under(tmp_path / "probe_whole", "probe_whole.")) == [
            "probe_whole.fine", "probe_whole.fine.inner", "probe_whole.inner",
            "probe_whole.sub", "probe_whole.sub.inner",
        ]  # fmt: skip
        with pytest.raises(ImportError, match="probe_broken.sub cannot be imported") as caught:
            modules_under(tmp_path / "probe_broken", "probe_broken.")
        assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] in ("probe_whole", "probe_broken")]:
            del sys.modules[name]


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
