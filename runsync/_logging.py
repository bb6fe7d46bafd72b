"""runsync's messages go through the ``logging.getLogger("runsync")`` hierarchy.

On a terminal they look as they always did (``runsync: …`` on stderr). A program or training
framework that configures logging for runsync or for the root logger gets them through its own
handlers instead — to capture, format or silence them (``logging.getLogger("runsync").setLevel(
logging.ERROR)``). ``RUNSYNC_SILENT=1`` turns them off. This module imports nothing else of runsync,
so every layer may use it.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["get_logger"]

ROOT = "runsync"


class _StderrUnlessConfigured(logging.Handler):
    """Prints to the *current* sys.stderr unless logging is configured elsewhere, so nothing is shown twice.

    Configured means: a handler on the root logger, or on the ``runsync`` logger other than this one.
    """

    def emit(self, record: logging.LogRecord) -> None:
        own = logging.getLogger(ROOT)
        if any(_configured(h) for h in logging.getLogger().handlers) or any(h is not self for h in own.handlers):
            return  # propagation (or the user's own handler) delivers it
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # a closed stderr must not break training
            pass


def _configured(handler: logging.Handler) -> bool:
    """A root handler someone configured; pytest's capture handlers are not (they show nothing on a terminal)."""
    return not type(handler).__module__.startswith("_pytest")


def _root() -> logging.Logger:
    log = logging.getLogger(ROOT)
    if not any(isinstance(h, _StderrUnlessConfigured) for h in log.handlers):
        h = _StderrUnlessConfigured()
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
    return log


def get_logger(name: str) -> logging.Logger:
    """``runsync.<name>``; messages already carry their ``runsync: `` prefix."""
    _root()
    return logging.getLogger(f"{ROOT}.{name}")
