"""Transfer windows: a weekly grid of hours, in a time zone, when a job may copy and at
what rate. Plain Python (no Django): the server gates leases with it and the pages say
when the next window opens.

A grid is 7 days (Monday first) × 24 hours; each cell is `None` (open, no limit), `0`
(closed) or a positive number of bytes/s (open at that rate). The hour is the local wall
clock hour in the schedule's zone, so "08-18" stays office hours across daylight saving.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOSED = 0
Cell = int | None  # None: open, unlimited; 0: closed; n > 0: open at n bytes/s
Grid = list[list[Cell]]

_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
    "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}  # fmt: skip


def open_grid() -> Grid:
    """Every hour open, unlimited (the default: no window)."""
    return [[None] * 24 for _ in DAYS]


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError, in words, for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)") from exc


def grid_check(grid: object) -> Grid:
    """The grid, checked: 7 lists of 24 cells, each null, 0 or a positive integer."""
    if not isinstance(grid, list) or len(grid) != 7:
        raise ValueError("a transfer window grid has 7 days (Monday first)")
    for day, hours in zip(DAYS, grid, strict=True):
        if not isinstance(hours, list) or len(hours) != 24:
            raise ValueError(f"{day}: a day has 24 hours")
        for cell in hours:
            if cell is not None and (
                isinstance(cell, bool) or not isinstance(cell, int) or cell < 0
            ):
                raise ValueError(f"{day}: an hour is null (open), 0 (closed) or bytes/s")
    return [list(hours) for hours in grid]  # type: ignore[union-attr]


@dataclass(frozen=True)
class Schedule:
    """A weekly grid in a zone."""

    grid: Grid = field(default_factory=open_grid)
    zone: str = "UTC"

    def __post_init__(self) -> None:
        grid_check(self.grid)
        zone_of(self.zone)

    def cell(self, at: datetime) -> Cell:
        """The grid's cell for the aware instant `at`."""
        local = at.astimezone(zone_of(self.zone))
        return self.grid[local.weekday()][local.hour]

    def hour_starts(self, after: datetime, hours: int = 24 * 8) -> Iterable[datetime]:
        """The starts of the local hours after `after` (UTC), in order."""
        local = after.astimezone(zone_of(self.zone))
        start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        for k in range(1, hours + 1):
            yield start + timedelta(hours=k)


def is_open(schedules: Sequence[Schedule], at: datetime) -> bool:
    """Open at `at` when every schedule (the job's, its agent pool's) is open."""
    return all(s.cell(at) != CLOSED for s in schedules)


def limit_at(schedules: Sequence[Schedule], at: datetime) -> int | None:
    """The lowest rate any schedule sets at `at` (None: no limit; 0: closed)."""
    cells = [s.cell(at) for s in schedules]
    if any(c == CLOSED for c in cells):
        return CLOSED
    limits = [c for c in cells if c]
    return min(limits) if limits else None


def next_opening(schedules: Sequence[Schedule], at: datetime) -> datetime | None:
    """When the window opens next after `at` (`at` itself when open now); None when no
    hour of the coming week is open in all schedules at once."""
    if is_open(schedules, at):
        return at
    starts = sorted({t for s in schedules for t in s.hour_starts(at)})
    for t in starts:
        if is_open(schedules, t):
            return t
    return None


def next_closing(schedules: Sequence[Schedule], at: datetime) -> datetime | None:
    """When the window closes next after `at`; None when it stays open all week."""
    starts = sorted({t for s in schedules for t in s.hour_starts(at)})
    for t in starts:
        if not is_open(schedules, t):
            return t
    return None


# --- the text form: "mon-fri 08-18 10MB/s; sat,sun closed" --------------------------------

_RULE = re.compile(
    r"^\s*(?P<days>\*|[a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*)"
    r"(?:\s+(?P<start>\d{1,2})-(?P<end>\d{1,2}))?"
    r"\s+(?P<value>closed|open|unlimited|\d+(?:\.\d+)?\s*[a-z]*(?:/s)?)\s*$"
)


def _days(text: str) -> list[int]:
    if text == "*":
        return list(range(7))
    found: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"unknown day in {part!r} (mon, tue, wed, thu, fri, sat, sun)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        found.extend(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return found


def parse_rate(text: str) -> int:
    """'10MB/s', '512 KiB/s', '1000000' -> bytes/s (MB = 10^6, MiB = 2^20)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)(?:/s)?", text.strip().lower())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"bad rate {text!r} (e.g. 10MB/s, 512KiB/s)")
    rate = int(float(m.group(1)) * _UNITS[m.group(2)])
    if rate <= 0:
        raise ValueError(f"bad rate {text!r}: say 'closed' for no transfer")
    return rate


def parse_schedule(text: str) -> Grid:
    """Rules separated by ';' or new lines, applied in order (a later rule wins), over a
    grid that starts all open: `DAYS [HH-HH] VALUE`, DAYS `*`, `mon`, `mon-fri`,
    `sat,sun`; hours from HH to HH (end excluded, 24 allowed; none: the whole day);
    VALUE `closed`, `unlimited` (or `open`) or a rate such as `10MB/s`. ValueError naming
    the rule for anything else."""
    grid = open_grid()
    for raw in re.split(r"[;\n]", text):
        if not raw.strip():
            continue
        m = _RULE.match(raw.lower())
        if not m:
            raise ValueError(
                f"cannot read {raw.strip()!r}: write DAYS [HH-HH] closed|unlimited|RATE, "
                "e.g. 'mon-fri 08-18 10MB/s'"
            )
        days = _days(m.group("days"))
        start = int(m.group("start") or 0)
        end = int(m.group("end") or 24) if m.group("start") else 24
        if not 0 <= start < end <= 24:
            raise ValueError(f"bad hours in {raw.strip()!r}: from 00 to 24, start before end")
        value = m.group("value")
        cell: Cell = (
            CLOSED
            if value == "closed"
            else None
            if value in ("open", "unlimited")
            else parse_rate(value)
        )
        for d in days:
            for h in range(start, end):
                grid[d][h] = cell
    return grid


def rate_text(rate: int) -> str:
    for unit, size in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if rate % size == 0:
            return f"{rate // size}{unit}/s"
    return f"{rate}B/s"


def cell_text(cell: Cell) -> str:
    return "closed" if cell == CLOSED else "unlimited" if cell is None else rate_text(cell)


def schedule_text(grid: Grid) -> str:
    """The grid as rules parse_schedule reads back to the same grid ('' when all open):
    consecutive days with the same hours share a rule."""
    rules = []
    d = 0
    while d < 7:
        first = d
        while d + 1 < 7 and grid[d + 1] == grid[first]:
            d += 1
        days = DAYS[first] if d == first else f"{DAYS[first]}-{DAYS[d]}"
        hours, h = grid[first], 0
        while h < 24:
            cell, start = hours[h], h
            while h < 24 and hours[h] == cell:
                h += 1
            if cell is not None:
                span = "" if (start, h) == (0, 24) else f" {start:02d}-{h:02d}"
                rules.append(f"{days}{span} {cell_text(cell)}")
        d += 1
    return "; ".join(rules)
