"""Objects deleted at the source: what a pass does with their copies at the destination.

Pure Python, no Django. The catch-up pass hands every destination object that has no row
in the new pass to jobs.deletions.gone_record as a Gone; at pass end `apply` keeps,
deletes (mirror) or moves them to the trash folder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Gone:
    """A destination object (file or folder) with no source entry in the new pass."""

    dest_path: str
    kind: str  # "file" | "dir"
    size: int = 0
    source_path: str = ""  # from the last pass's manifest, "" when we never wrote it
    ours: bool = False
