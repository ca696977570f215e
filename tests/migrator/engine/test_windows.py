"""Transfer windows, pure: open or closed, the limit, the next opening, across days and
daylight saving in a zone; the text form and its errors."""

from datetime import UTC, datetime

import pytest

from migrator.engine.windows import (
    Schedule,
    is_open,
    limit_at,
    next_closing,
    next_opening,
    parse_schedule,
    schedule_text,
)

OFFICE = "mon-fri 08-18 10MB/s; sat,sun closed; mon-fri 00-06 closed"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_office_hours_in_paris_limit_open_and_closed():
    s = Schedule(parse_schedule(OFFICE), "Europe/Paris")
    # Wednesday 2026-01-07 09:30 UTC = 10:30 in Paris (CET, UTC+1): office hours
    assert limit_at([s], utc(2026, 1, 7, 9, 30)) == 10_000_000
    # 17:30 UTC = 18:30 Paris: evening, open without a limit
    assert is_open([s], utc(2026, 1, 7, 17, 30))
    assert limit_at([s], utc(2026, 1, 7, 17, 30)) is None
    # 04:00 UTC = 05:00 Paris: closed before 06
    assert not is_open([s], utc(2026, 1, 7, 4, 0))
    assert limit_at([s], utc(2026, 1, 7, 4, 0)) == 0
    assert next_opening([s], utc(2026, 1, 7, 4, 0)) == utc(2026, 1, 7, 5, 0)
    assert next_opening([s], utc(2026, 1, 7, 17, 30)) == utc(2026, 1, 7, 17, 30)  # open now


def test_next_opening_across_the_weekend():
    s = Schedule(parse_schedule(OFFICE), "Europe/Paris")
    # Saturday 2026-01-10 12:00 UTC: closed until Monday 06:00 Paris = 05:00 UTC
    assert next_opening([s], utc(2026, 1, 10, 12)) == utc(2026, 1, 12, 5)
    # Friday 23:00 Paris (22:00 UTC) is open; it closes at Saturday 00:00 Paris
    assert next_closing([s], utc(2026, 1, 9, 22, 15)) == utc(2026, 1, 9, 23)


def test_local_hours_follow_daylight_saving():
    s = Schedule(parse_schedule("* closed; * 08-09 unlimited"), "Europe/Paris")
    # winter (CET, UTC+1): 08:00 Paris = 07:00 UTC; summer (CEST, UTC+2): 06:00 UTC
    assert next_opening([s], utc(2026, 1, 5, 0)) == utc(2026, 1, 5, 7)
    assert next_opening([s], utc(2026, 7, 6, 0)) == utc(2026, 7, 6, 6)
    # the night the clocks go forward (Sunday 2026-03-29): Saturday 08:00 was 07:00 UTC,
    # Sunday's 08:00 is 06:00 UTC
    assert next_opening([s], utc(2026, 3, 28, 8)) == utc(2026, 3, 29, 6)
    # and back (Sunday 2026-10-25): 08:00 Paris is 07:00 UTC again
    assert next_opening([s], utc(2026, 10, 24, 7)) == utc(2026, 10, 25, 7)


def test_new_york_and_a_window_that_never_opens():
    s = Schedule(parse_schedule("* closed; tue 22-24 5MiB/s"), "America/New_York")
    # Tuesday 22:00 in New York (EST, UTC-5) is Wednesday 03:00 UTC
    assert next_opening([s], utc(2026, 1, 5, 12)) == utc(2026, 1, 7, 3)
    assert limit_at([s], utc(2026, 1, 7, 3, 30)) == 5 * 1024 * 1024
    never = Schedule(parse_schedule("* closed"), "UTC")
    assert next_opening([never], utc(2026, 1, 5)) is None


def test_two_schedules_job_and_pool_both_must_be_open_and_the_lower_limit_wins():
    job = Schedule(parse_schedule("* 20MB/s"), "UTC")
    pool = Schedule(parse_schedule("* 5MB/s; mon 00-12 closed"), "Europe/Berlin")
    assert limit_at([job, pool], utc(2026, 1, 6, 12)) == 5_000_000
    assert limit_at([job], utc(2026, 1, 6, 12)) == 20_000_000
    # Monday 2026-01-05 05:00 UTC = 06:00 Berlin: the pool is closed until 12:00 Berlin
    assert not is_open([job, pool], utc(2026, 1, 5, 5))
    assert next_opening([job, pool], utc(2026, 1, 5, 5)) == utc(2026, 1, 5, 11)


def test_text_form_round_trips_and_bad_input_says_what_is_wrong():
    grid = parse_schedule(OFFICE)
    assert grid[0][8] == 10_000_000 and grid[0][18] is None and grid[0][3] == 0
    assert grid[5] == [0] * 24 and grid[6] == [0] * 24
    assert parse_schedule(schedule_text(grid)) == grid
    assert schedule_text(parse_schedule("")) == ""
    assert parse_schedule("fri-mon 1500KB/s")[6][0] == 1_500_000  # wraps past Sunday
    for bad, words in [
        ("mon-fri 08-18 fast", "cannot read"),
        ("mun 08-18 closed", "unknown day"),
        ("mon 18-08 closed", "bad hours"),
        ("mon 08-25 closed", "bad hours"),
        ("mon 10XB/s", "bad rate"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_schedule(bad)
    with pytest.raises(ValueError, match="unknown time zone"):
        Schedule(grid, "Mars/Olympus")
    with pytest.raises(ValueError, match="24 hours"):
        Schedule([[None] * 23] * 7, "UTC")
