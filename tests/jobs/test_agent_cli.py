"""The agent's command as its operator sees it: its current throughput, its log file, its
bandwidth limit and its patience with a server that refuses it for a while."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from accounts.api.authentication import AuthFailureThrottle
from accounts.models import Customer
from jobs import services
from migrator.agent.client import AgentError, Client
from migrator.agent.worker import Agent as AgentWorker
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


@pytest.fixture
def no_failed_tries() -> Iterator[None]:
    """Failed tokens are counted per address in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()


@pytest.mark.django_db(transaction=True)
def test_an_agent_held_off_with_429_waits_as_told_and_goes_on(
    live_server, tmp_path, caplog, monkeypatch, no_failed_tries
):
    # 3 failures in 3 s (not the minute of the settings), so the address is let in again
    # within the test; the cache keeps whole seconds, so a 1 s window would not hold
    monkeypatch.setattr(AuthFailureThrottle, "parse_rate", lambda self, rate: (3, 3))
    pool = services.agent_pool_create(customer=Customer.objects.create(name="Acme"), name="HQ")
    _, token = services.agent_enroll(code=services.enrollment_code_create(pool=pool), name="a1")
    for _ in range(3):  # someone guessing tokens from the agent's address
        with pytest.raises(AgentError) as refused:
            Client(live_server.url, "mgr-agent-guessed").post("work/")
        assert refused.value.status == 401
    with pytest.raises(AgentError) as held:  # held off: what a refusal would have been
        Client(live_server.url, token).post("work/", patience=0)
    assert held.value.status == 429 and "Too many failed tokens" in str(held.value)

    agent = AgentWorker(Client(live_server.url, token), spool=str(tmp_path))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="migrator.agent"):
        assert agent.run(idle_exit=0) == 0  # not 2: it waited and was answered
    told = [r.getMessage() for r in caplog.records if "holds this address off" in r.getMessage()]
    assert len(told) == 1, told
    asked = re.search(r"waiting as it asks, (\d+) s", told[0])
    assert asked and 1 <= int(asked[1]) <= 3
    assert time.monotonic() - started >= int(asked[1]) - 0.1
