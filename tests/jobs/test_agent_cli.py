"""The agent's command as its operator sees it: its current throughput, its log file, its
bandwidth limit and its patience with a server that refuses it for a while."""

from __future__ import annotations

from migrator.agent.worker import Rate


def test_the_throughput_is_the_rate_of_the_last_work_not_of_the_whole_run():
    rate = Rate(window=45)
    assert rate.bytes_per_s(now=1000) == 0
    rate.add(1000, 1010, 10_000_000)  # after an hour idle, 10 MB in 10 s
    assert rate.bytes_per_s(now=1010) == 1_000_000
    rate.add(1010, 1020, 30_000_000)  # faster now
    assert rate.bytes_per_s(now=1020) == 2_000_000
    # the window: work ended within the last 45 s, over those 45 s (the first batch is out)
    assert rate.bytes_per_s(now=1060) == 30_000_000 / 45
    assert rate.bytes_per_s(now=1070) == 0  # idle for longer than the window: nothing
