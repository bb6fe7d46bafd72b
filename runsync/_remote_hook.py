"""How the reader reaches remote runs without importing the syncer (the layering of the README).

``runsync/__init__.py`` installs functions that import ``runsync.syncer.cache`` on first call; the
reader (``runsync.reader.remote``) asks for them here. Every import of a runsync subpackage runs
``runsync/__init__.py`` first, so they are always installed. Imports nothing else of runsync.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["install", "fetchers"]

_fetchers: tuple[Callable[..., Path], Callable[..., Path]] | None = None


def install(fetch_runs: Callable[..., Path], fetch_run: Callable[..., Path]) -> None:
    global _fetchers
    _fetchers = (fetch_runs, fetch_run)


def fetchers() -> tuple[Callable[..., Path], Callable[..., Path]] | None:
    return _fetchers
