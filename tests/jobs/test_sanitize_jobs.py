"""Awkward names, assessed then migrated with each profile: every file arrives under the
name the manifest gives, renames are recorded, nothing collides or is lost."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from jobs.models import FileItem, Pass
from migrator.sanitize import Sanitizer
from migrator.storage import connector_for

from .factories import new_job
from .factories import run_job as run

AWKWARD = {
    "a:b.txt": b"colon",
    "a_b.txt": b"underscore twin of a:b",
    "CON.txt": b"reserved on windows",
    "Case.txt": b"upper",
    "case.txt": b"lower twin",
    "trailing. ": b"trailing dot and space",
    unicodedata.normalize("NFC", "café.txt"): b"nfc",
    unicodedata.normalize("NFD", "café.txt"): b"nfd twin",
    "smile \U0001f600.txt": b"4-byte unicode",
    "#hash?.txt": b"gcs avoids these",
    "new\nline.txt": b"LF in a name",
    "x" * 250 + ".txt": b"long name",
    "bad:folder/inner.txt": b"child of a renamed folder",
    "bad:folder/deeper/leaf.txt": b"grandchild",
    "~$lock.docx": b"office lock file: junk",
    "Thumbs.db": b"junk",
    "_vti_cnf.txt": b"sharepoint forbids",
    "desktop.ini": b"junk on every profile",
}
JUNK = {"~$lock.docx", "Thumbs.db", "desktop.ini"}


def make_awkward(root: Path) -> None:
    for rel, data in AWKWARD.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


PROFILES = ["gcs", "windows", "sharepoint", "egnyte", "posix"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("dest_kind", ["file", "gs"])
def test_each_profile_lands_every_file_under_the_reported_name(
    tmp_path, gcs_server, profile, dest_kind
):
    src = tmp_path / "src"
    make_awkward(src)
    if dest_kind == "file":
        dest_url = (tmp_path / "dst").as_uri()
    else:
        dest_url = f"gs://{gcs_server.make_bucket()}/in"
    job = new_job(src.as_uri(), dest_url, options={"profile": profile})
    job = run(job)
    rows = list(FileItem.objects.filter(job=job, kind="file"))
    by_source = {r.source_path: r for r in rows}
    assert set(by_source) == set(AWKWARD)  # every source file is accounted for

    excluded = {r.source_path for r in rows if r.state == "excluded"}
    assert excluded == JUNK
    assert all(by_source[p].reason == "junk_file" for p in JUNK)

    copied = [r for r in rows if r.state == "copied"]
    failed = [r for r in rows if r.state == "failed"]
    assert len(copied) + len(failed) == len(AWKWARD) - len(JUNK)
    # the only acceptable failure is a path the destination cannot hold at all
    assert {r.reason for r in failed} <= {"path_too_long"}, [
        (r.source_path, r.reason) for r in failed
    ]

    destination = connector_for(dest_url)
    sanitizer = Sanitizer.for_destination(dest_kind, profile)
    dest_paths = [r.dest_path for r in copied]
    assert len({sanitizer.collision_key(p) for p in dest_paths}) == len(dest_paths)
    for row in copied:
        rel = row.dest_path.removeprefix("in/")
        assert destination.open(rel).read() == AWKWARD[row.source_path], row.source_path
        for part in rel.split("/"):
            assert sanitizer.profile.is_valid(part), (profile, part)
        if row.rules:
            assert row.renamed_from and row.renamed_from != row.dest_path
    # a renamed folder renames the paths under it consistently
    inner = by_source["bad:folder/inner.txt"].dest_path.rsplit("/", 1)[0]
    leaf = by_source["bad:folder/deeper/leaf.txt"].dest_path
    assert leaf.startswith(inner + "/deeper/")
    p = Pass.objects.get(job=job)
    assert p.seen == p.copied + p.unchanged + p.excluded + p.failed + p.pending


@pytest.mark.django_db(transaction=True)
def test_second_pass_keeps_the_same_names(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_awkward(src)
    job = run(new_job(src.as_uri(), dst.as_uri(), options={"profile": "windows"}))
    first = dict(FileItem.objects.filter(job=job).values_list("source_path", "dest_path"))
    job = run(job)
    second = Pass.objects.get(job=job, number=2)
    again = dict(FileItem.objects.filter(job_pass=second).values_list("source_path", "dest_path"))
    assert again == first
    assert second.copied == 0 and second.unchanged == len(AWKWARD) - len(JUNK) - second.failed


def test_cli_assess_reports_renames_and_copies_nothing(cli, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_awkward(src)
    result = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--json",
                     "--assess", "--profile", "windows")  # fmt: skip
    assert result.code == 0, result.stderr
    summary = result.json
    assert summary["state"] == "assessed"
    figures = summary["assessment"]
    assert figures["files"] == len(AWKWARD)
    assert figures["folders"] == 2
    renames = figures["renames_by_rule"]
    for rule in ("forbidden_char", "reserved_name", "collision", "trailing_dot_space"):
        assert renames.get(rule), (rule, renames)
    assert figures["excluded_by_reason"] == {"junk_file": len(JUNK)}
    assert figures["estimate"]["seconds"] is not None
    assert not dst.exists() or not any(dst.rglob("*"))

    bad = cli.run("--source", src.as_uri(), "--destination", dst.as_uri(), "--profile", "fat32")
    assert bad.code == 2 and "unknown profile" in bad.stderr
