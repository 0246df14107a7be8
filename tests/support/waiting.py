"""Bounded waiting for tests that watch another thread or process."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], *, timeout: float, what: str,
               detail: Callable[[], str] | None = None, poll: float = 0.05) -> None:
    """Return as soon as ``predicate()`` holds; fail with ``what`` (and ``detail()``, e.g. a
    log tail) once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(poll)
