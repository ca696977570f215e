"""The scan's raw manifest writes (multi-row INSERT on SQLite, COPY text on PostgreSQL)
store every text exactly as given, ids ascending in row order."""

from __future__ import annotations

import pytest
from django.db import transaction

from jobs.manifest import Row, insert_rows
from jobs.models import FileItem

from .factories import PassFactory

AWKWARD = [
    "plain.txt", "tab\there", "new\nline", "cr\rhere", "back\\slash", "\\.", "\\N",
    "trailing\\", "é ✓ 😀", "zero\u200bwidth", "a\x0bvt\x1besc", "", "  spaces  ",
    "comma,quote\"", "\\t literal", "line\u2028sep",
]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_rows_round_trip_every_text_exactly():
    job_pass = PassFactory()
    rows = [
        Row(job_pass.job_id, job_pass.pk, "file", f"src/{i}/{text}", dest_path=f"dst/{text}",
            size=i, mtime_ns=10**18 + i, reason=text, message=text, md5=text[:32],
            renamed_from=text, rules=text, dest_key=f"key/{i}/{text}")
        for i, text in enumerate(AWKWARD * 3)
    ]  # fmt: skip
    with transaction.atomic():
        insert_rows(rows)
    ids = [r.pk for r in rows]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    stored = {item.pk: item for item in FileItem.objects.filter(job_pass=job_pass)}
    assert sorted(stored) == ids
    for row in rows:
        item = stored[row.pk]
        got = (item.source_path, item.dest_path, item.size, item.mtime_ns, item.reason,
               item.message, item.md5, item.renamed_from, item.rules, item.dest_key)  # fmt: skip
        want = (row.source_path, row.dest_path, row.size, row.mtime_ns, row.reason,
                row.message, row.md5, row.renamed_from, row.rules, row.dest_key)  # fmt: skip
        assert got == want
