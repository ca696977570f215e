"""python -m migrator.agent enroll --server URL --code CODE | run [--bwlimit B/S]"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import multiprocessing
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from . import VERSION
from .client import AgentError, Client
from .worker import PROGRESS_FIELDS, Agent

REFRESH = 0.25  # seconds between two draws of the terminal's line
_progress: Any = None  # each process's figures, shared with the processes forked after it

DEFAULT_CONFIG = Path(
    os.environ.get("MIGRATOR_AGENT_CONFIG", "~/.config/migrator-agent/agent.json")
).expanduser()


def _write_config(path: Path, config: dict) -> None:
    """Mode 0600 from the start: the token is never readable by anyone else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    os.chmod(path, 0o600)


def _logging(config_path: Path, verbose: bool) -> None:
    handler = logging.handlers.RotatingFileHandler(
        config_path.with_name("agent.log"), maxBytes=10 << 20, backupCount=5
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if verbose or sys.stderr.isatty():
        stream = logging.StreamHandler()
        if sys.stderr.isatty():  # a log line takes the progress line's place; it is redrawn
            stream.setFormatter(logging.Formatter("\r\x1b[K%(message)s"))
        root.addHandler(stream)
    root.setLevel(logging.INFO)


def _work(
    server: str, token: str, bwlimit: int | None, spool: str, idle_exit: float | None,
    slot: int = 0,
) -> tuple[int, int]:  # fmt: skip
    """One agent loop (a process of its own with --workers): its exit code, its requests."""
    client = Client(server, token, spool=Path(spool) / "spool")
    agent = Agent(client, bwlimit=bwlimit, spool=spool, progress=_progress, slot=slot)
    return agent.run(idle_exit=idle_exit), client.requests


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def progress_line(values: Any, workers: int) -> str:
    """The agent's live line: all its processes' figures summed."""
    totals = [sum(values[w * PROGRESS_FIELDS + i] for w in range(workers))
              for i in range(PROGRESS_FIELDS)]  # fmt: skip
    scanned, items, nbytes, rate = totals
    return (f"scanned {scanned:,.0f} entries · done {items:,.0f} items, {_size(nbytes)} · "
            f"{_size(rate)}/s now")  # fmt: skip


def _draw(values: Any, workers: int, stop: threading.Event) -> None:
    """Redraw the line in place, a few times a second, while the agent runs."""
    shown = ""
    while not stop.wait(REFRESH):
        line = progress_line(values, workers)
        if line != shown:
            sys.stderr.write(f"\r\x1b[K{line}")
            sys.stderr.flush()
            shown = line
    sys.stderr.write(f"\r\x1b[K{progress_line(values, workers)}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migrator.agent", description=__doc__)
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        help=f"where the agent keeps its token (default {DEFAULT_CONFIG})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    enroll = sub.add_parser("enroll", help="join a pool with a one-time enrolment code")
    enroll.add_argument("--server", required=True, help="https://migrator.example.com")
    enroll.add_argument("--code", required=True)
    enroll.add_argument("--name", default=socket.gethostname())
    run = sub.add_parser("run", help="work for the pool until stopped")
    run.add_argument("--bwlimit", type=int, default=None, help="bytes per second, at most")
    run.add_argument(
        "--workers",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes taking work at once (one Python process holds one core)",
    )
    run.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        help="stop after this many seconds without work (for scripts)",
    )
    run.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "enroll":
        try:
            answer = Client(args.server).post(
                "enroll/",
                {"code": args.code, "name": args.name, "version": VERSION},
                patience=30,
            )
        except AgentError as exc:
            sys.stderr.write(f"migrator-agent: enrolment refused: {exc}\n")
            return 2
        _write_config(
            args.config,
            {
                "server": args.server,
                "token": answer["token"],
                "agent_id": answer["agent_id"],
                "pool": answer["pool"],
            },
        )
        print(
            f"Enrolled as agent {answer['agent_id']} of pool {answer['pool']}; "
            f"token kept in {args.config} (mode 0600)."
        )
        return 0

    try:
        config = json.loads(args.config.read_text())
    except (OSError, ValueError) as exc:
        sys.stderr.write(
            f"migrator-agent: no usable config at {args.config} ({exc}): enroll first\n"
        )
        return 2
    _logging(args.config, args.verbose)
    workers = max(1, args.workers)
    bwlimit = args.bwlimit // workers if args.bwlimit else None  # the limit is the agent's

    spool = args.config.parent / "spool"
    replayed = Client(config["server"], config["token"], spool=spool).replay_spool()
    if replayed:
        logging.getLogger("migrator.agent").info("sent %d kept result(s) again", replayed)
    work = (config["server"], config["token"], bwlimit, str(args.config.parent), args.idle_exit)
    global _progress
    fork = multiprocessing.get_context("fork")
    stop = threading.Event()
    drawer = None
    if sys.stderr.isatty():  # a live line on a terminal; a service's log has the events
        _progress = fork.Array("d", PROGRESS_FIELDS * workers, lock=False)
        drawer = threading.Thread(target=_draw, args=(_progress, workers, stop), daemon=True)
        drawer.start()
    try:
        if workers == 1:
            code, requests = _work(*work)
        else:
            with fork.Pool(workers) as pool:
                done = [r.get() for r in [pool.apply_async(_work, (*work, slot))
                                          for slot in range(workers)]]  # fmt: skip
            code, requests = max(c for c, _ in done), sum(n for _, n in done)
    finally:
        stop.set()
        if drawer is not None:
            drawer.join()
    print(json.dumps({"exit": code, "requests": requests}))  # for scripts and benchmarks
    return code


if __name__ == "__main__":
    sys.exit(main())
