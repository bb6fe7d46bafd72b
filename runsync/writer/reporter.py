"""How runsync's own failures reach the user: warnings through the ``runsync`` logger, never exceptions.

Training comes first: a failure inside runsync's machinery (disk full, a part
that could not be written) is reported once per kind, not raised into the loop.
"""

from __future__ import annotations

import logging
import threading
import time

from .._logging import get_logger

__all__ = ["Reporter"]

_log = get_logger("writer")


class Reporter:
    def __init__(self, run_label: str, silent: bool) -> None:
        self.label = run_label
        self.silent = silent
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def info(self, message: str) -> None:
        if not self.silent:
            _log.info(f"runsync: {message}")

    def problem(self, kind: str, message: str, repeat_after: float = 600.0) -> None:
        """Report a problem of ``kind`` once (again only after ``repeat_after`` s)."""
        with self._lock:
            self.last_error = message
            now = time.monotonic()
            last = self._seen.get(kind)
            if last is not None and now - last < repeat_after:
                return
            self._seen[kind] = now
        if not self.silent:
            _log.warning(f"runsync: WARNING [{self.label}] {message}")

    def resolved(self, kind: str, message: str) -> None:
        with self._lock:
            had = self._seen.pop(kind, None)
        if had is not None and not self.silent:
            _log.log(logging.INFO, f"runsync: [{self.label}] {message}")
