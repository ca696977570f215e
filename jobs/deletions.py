"""Deleted at source: recording what the catch-up pass found gone, and applying the
job's deletion policy (keep, mirror, trash) at pass end, with the safety cap."""

from __future__ import annotations

from collections.abc import Sequence

from migrator.engine.deletes import Gone


def gone_record(*, job_pass, items: Sequence[Gone]) -> None:
    """Store destination objects that are gone at the source (idempotent per
    (pass, dest_path)). Not yet stored: the model lands next."""
    del job_pass, items
