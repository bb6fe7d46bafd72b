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

__all__ = ["get_logger", "quiet_network_noise"]

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


class _DropOrphanedNetworkErrors(logging.Filter):
    """asyncio's 'Task exception was never retrieved' for a connection error of a task an HTTP client
    (aiohttp under s3fs, gcsfs, adlfs) abandoned after a network drop: the operation itself was retried
    and reported by runsync, so the traceback is noise (issue 13 §2)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Task exception was never retrieved"):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        names = f"{type(exc).__module__}.{type(exc).__name__}" if exc is not None else ""
        return not (names.startswith("aiohttp") or "Connection" in names or "Disconnected" in names)


_quieted = False


def quiet_network_noise() -> None:
    """Install the filter above on asyncio's logger, once per process (called when a remote connects)."""
    global _quieted
    if not _quieted:
        _quieted = True
        logging.getLogger("asyncio").addFilter(_DropOrphanedNetworkErrors())
