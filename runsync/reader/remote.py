"""Remote references for the reader: ``open_run("s3://bucket/runs/<id>")``, ``runsync ls URL``.

A remote run is read through a verified local copy that the syncer fetches (``runsync.syncer.cache``).
The reader depends on ``runsync.format`` only: ``import runsync`` installs the fetching functions in
``runsync._remote_hook``, and this module calls them from there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._remote_hook import fetchers
from ..format.errors import RunsyncError

__all__ = ["is_url", "as_path", "fetch_runs", "fetch_run", "local_root"]


def _need() -> tuple[Callable[..., Path], Callable[..., Path]]:
    got = fetchers()
    if got is None:  # pragma: no cover - runsync/__init__.py always installs them
        raise RunsyncError("reading a remote URL needs runsync's syncer, which is not installed in this process")
    return got


def is_url(ref: object) -> bool:
    """A remote to read through the cache (``file://`` URLs are local paths)."""
    return isinstance(ref, str) and "://" in ref and not ref.startswith("file://")


def as_path(ref: str | os.PathLike[str]) -> Path:
    """A local path, also from a ``file://`` URL."""
    s = os.fspath(ref)
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def fetch_runs(url: str, run_ids: list[str] | None = None, *, documents_only: bool = False,
               storage_options: dict[str, Any] | None = None) -> Path:
    """The committed state of runs under the remote root ``url``, in the local cache; its root."""
    return _need()[0](url, run_ids, documents_only=documents_only, storage_options=storage_options)


def fetch_run(url: str, storage_options: dict[str, Any] | None = None) -> Path:
    """``URL/<run id>`` → the local copy of that run (whole, verified)."""
    return _need()[1](url, storage_options)


def local_root(root: str | Path | None) -> Path:
    """A runs root to read: a local directory as is; a remote URL → its cached documents (for listing)."""
    # W&B's WANDB_DIR where RUNSYNC_DIR is unset, as the writer does (README "Coming from W&B")
    ref = root if root is not None else os.environ.get("RUNSYNC_DIR") or os.environ.get("WANDB_DIR") or "runs"
    if is_url(ref):
        return fetch_runs(str(ref), documents_only=True)
    return as_path(ref)
