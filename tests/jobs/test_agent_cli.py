"""The agent's command as its operator sees it: its current throughput, its log file, its
bandwidth limit and its patience with a server that refuses it for a while."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from django.core.cache import cache

from accounts.api.authentication import AuthFailureThrottle
from accounts.models import Customer
from jobs import services
from migrator.agent.__main__ import _logging
from migrator.agent.client import AgentError, Client
from migrator.agent.worker import Agent as AgentWorker
from migrator.agent.worker import Rate

from .conftest import Stack, make_tree, setup, tree_of


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


# --- the agent's log file and its bandwidth limit, through the real command ------------------

MB2 = 8 * 256 * 1024  # the data of a run: 2 MiB in 8 files, one batch


def two_megabytes(root: Path) -> dict[str, bytes]:
    made = {f"d/f{i}.bin": os.urandom(256 * 1024) for i in range(8)}
    for rel, data in made.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return made


def copy_seconds(log: str) -> float:
    """From the agent's log: the first batch taken to the last batch done, in seconds."""
    stamps = {"take": [], "done": []}
    for line in log.splitlines():
        if re.search(r" batch \d+: \d+ items to do$", line):
            kind = "take"
        elif re.search(r" batch \d+: \d+ of \d+ items$", line):
            kind = "done"
        else:
            continue
        stamps[kind].append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"))
    assert stamps["take"] and len(stamps["done"]) == len(stamps["take"]), log[-2000:]
    return (max(stamps["done"]) - min(stamps["take"])).total_seconds()


def test_the_log_file_rotates_as_documented(tmp_path):
    root = logging.getLogger()
    before = list(root.handlers)
    _logging(tmp_path / "agent.json", verbose=False)
    try:
        (handler,) = [h for h in root.handlers if h not in before]
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        assert Path(handler.baseFilename) == tmp_path / "agent.log"  # beside the config
        assert (handler.maxBytes, handler.backupCount) == (10 * 1024 * 1024, 5)  # 10 MB × 5
    finally:
        for h in root.handlers[:]:
            if h not in before:
                root.removeHandler(h)
                h.close()


def test_a_run_logs_to_a_file_beside_its_config_and_keeps_to_its_bwlimit(stack: Stack, tmp_path):
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = two_megabytes(src)
    job_id, (code,) = setup(stack, src, dst, secret="share-pass-never-logged")
    assert stack.enroll("a1", code).returncode == 0
    token = json.loads((tmp_path / "a1" / "a.json").read_text())["token"]
    proc = stack.start_agent("a1", "--bwlimit", "1000000", "--workers", "1", "--idle-exit", "3")
    assert stack.finished(job_id, timeout=120) == "completed"
    assert proc.wait(timeout=60) == 0
    assert tree_of(dst) == expected
    log = (tmp_path / "a1" / "agent.log").read_text()
    assert re.search(r"INFO migrator\.agent: scanned pass \d+", log)
    assert re.search(r"INFO migrator\.agent: batch \d+: 9 of 9 items", log)  # 8 files, 1 dir
    assert token not in log and "share-pass-never-logged" not in log
    assert "\r" not in (tmp_path / "a1.err").read_text()  # no terminal: no progress line
    # 2 MiB at 1 MB/s: about 2.1 s of copying (unlimited, it takes a few milliseconds here)
    assert copy_seconds(log) >= MB2 / 1_000_000 * 0.85


def test_the_jobs_own_bwlimit_wins_when_it_is_lower_than_the_agents(stack: Stack, tmp_path):
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = two_megabytes(src)
    job_id, (code,) = setup(stack, src, dst, bw=500_000)
    assert stack.enroll("a1", code).returncode == 0
    proc = stack.start_agent("a1", "--bwlimit", "8000000", "--workers", "1", "--idle-exit", "3")
    assert stack.finished(job_id, timeout=120) == "completed"
    assert proc.wait(timeout=60) == 0
    assert tree_of(dst) == expected
    # 2 MiB at the job's 0.5 MB/s: about 4.2 s (at the agent's 8 MB/s it would be 0.26 s)
    assert copy_seconds((tmp_path / "a1" / "agent.log").read_text()) >= MB2 / 500_000 * 0.85


def test_on_a_terminal_the_agent_draws_a_live_line_a_few_times_a_second(stack: Stack, tmp_path):
    src, dst = tmp_path / "share", tmp_path / "copy"
    expected = make_tree(src, files=40, folders=4, size=50_000)  # 2 MB, 5 batches
    job_id, (code,) = setup(stack, src, dst)
    assert stack.enroll("a1", code).returncode == 0
    master, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator.agent", "--config", str(tmp_path / "a1" / "a.json"),
         "run", "--bwlimit", "1000000", "--workers", "2", "--idle-exit", "3"],
        env=stack.agent_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=terminal, start_new_session=True,
    )  # fmt: skip
    stack.procs.append(proc)
    os.close(terminal)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the agent closed the terminal
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    assert stack.finished(job_id, timeout=120) == "completed"
    assert proc.wait(timeout=60) == 0
    seconds = time.monotonic() - started
    reader.join(10)
    os.close(master)
    assert tree_of(dst) == expected
    text = shown.decode()
    size = r"([\d.]+ [KMG]?B)"
    draws = re.findall(
        rf"scanned ([\d,]+) entries · done ([\d,]+) items, {size} · {size}/s now", text
    )
    assert draws, text[-2000:]
    items = 40 + 4  # the files and their folders
    assert draws[-1][:3] == (f"{items}", f"{items}", "2.0 MB"), draws[-1]
    # live: it moved while the agent copied, batch by batch, and showed a rate
    assert len({d[1] for d in draws}) >= 3, draws
    assert any(float(d[3].split()[0]) > 0 for d in draws), draws
    # a few times a second at most: never redrawn faster than every 0.25 s
    assert len(draws) <= seconds * 4 + 2, (len(draws), seconds)
