"""Where background work goes: django-q2 by default, after the transaction commits.

The one-shot CLI runs the same task functions in its own process: it installs an inline
dispatcher that hands the work to its own threads instead of the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction

Dispatcher = Callable[[str, tuple[Any, ...]], None]
_inline: Dispatcher | None = None


def set_inline(dispatcher: Dispatcher | None) -> None:
    global _inline
    _inline = dispatcher


def enqueue(func: str, *args: Any) -> None:
    """Run `func(*args)` in the background once the current transaction commits."""
    if _inline is not None:
        handler = _inline
        transaction.on_commit(lambda: handler(func, args))
        return

    def send() -> None:
        from django_q.tasks import async_task

        async_task(func, *args, timeout=settings.MIGRATOR_TASK_TIMEOUT)

    transaction.on_commit(send)
