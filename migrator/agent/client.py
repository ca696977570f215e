"""The agent's HTTP client: JSON posts with its token, retried while the server is away."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger(__name__)


class AgentError(Exception):
    """The server refused (a 4xx): what it said, in words."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class Client:
    """Posts to the server; connection errors and 5xx answers are retried with backoff
    (up to `patience` seconds, None: until the server is back), so a result is never
    dropped while the server restarts."""

    def __init__(self, server: str, token: str = "", *, timeout: float = 60,
                 spool: Path | None = None) -> None:  # fmt: skip
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = requests.Session()
        self.requests = 0  # how many were sent, for the figures
        self.spool = spool  # results kept on disk until the server has them
        self._held_off = False  # a 429 was logged and no answer came since

    def post_durable(self, path: str, payload: dict) -> dict[str, Any]:
        """A result: written to the spool first, removed once the server answered, so an
        agent stopped while the server was away sends it again at its next start
        (replay_spool); every result post is idempotent on the server."""
        if self.spool is None:
            return self.post(path, payload)
        self.spool.mkdir(parents=True, exist_ok=True)
        kept = self.spool / f"{time.time_ns()}-{os.getpid()}.json"
        kept.write_text(json.dumps({"path": path, "payload": payload}))
        try:
            return self.post(path, payload)
        finally:
            kept.unlink(missing_ok=True)

    def replay_spool(self) -> int:
        """Send what an earlier run kept and could not send; returns how many."""
        if self.spool is None or not self.spool.is_dir():
            return 0
        sent = 0
        for kept in sorted(self.spool.glob("*.json")):
            try:
                saved = json.loads(kept.read_text())
                self.post(saved["path"], saved["payload"])
                sent += 1
            except AgentError as exc:  # taken over or recorded meanwhile: nothing to add
                log.info("a kept result was not needed any more: %s", exc)
            except ValueError:
                log.warning("an unreadable kept result was dropped: %s", kept.name)
            kept.unlink(missing_ok=True)
        return sent

    def post(
        self, path: str, payload: dict | None = None, *, patience: float | None = None
    ) -> dict[str, Any]:
        url = f"{self.server}/api/agent/{path.lstrip('/')}"
        headers = {"Authorization": f"Agent {self.token}"} if self.token else {}
        started, pause = time.monotonic(), 0.5
        while True:
            self.requests += 1
            try:
                response = self.session.post(
                    url, json=payload or {}, headers=headers, timeout=self.timeout
                )
            except requests.RequestException as exc:
                problem = f"cannot reach {self.server}: {exc.__class__.__name__}"
            else:
                if response.status_code == 429:  # too many failed tokens from this address
                    wait = _retry_after(response)
                    if patience is not None and time.monotonic() - started + wait > patience:
                        raise AgentError(429, _said(response))
                    if not self._held_off:  # once per stretch, not at every try
                        log.warning("the server holds this address off for now (%s); waiting "
                                    "as it asks, %d s, then trying again", _said(response),
                                    wait)  # fmt: skip
                        self._held_off = True
                    time.sleep(wait)
                    continue
                if response.status_code < 500:
                    try:
                        body = response.json()
                    except ValueError:
                        body = {"error": response.text[:200]}
                    if response.status_code >= 400:
                        raise AgentError(response.status_code, body.get("error", "refused"))
                    self._held_off = False
                    return body
                problem = f"the server answered {response.status_code}"
            if patience is not None and time.monotonic() - started > patience:
                raise AgentError(0, problem)
            log.warning("%s; trying again in %.1f s", problem, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


def _retry_after(response: requests.Response) -> int:
    """The seconds a 429 asks to wait (Retry-After), 60 when it does not say."""
    try:
        return max(1, int(response.headers.get("Retry-After", "")))
    except ValueError:
        return 60


def _said(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", "too many requests"))
    except ValueError:
        return response.text[:200] or "too many requests"
