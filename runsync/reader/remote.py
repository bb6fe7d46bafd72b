"""Reading runs where they were pushed (spec §12): ``open_run("s3://bucket/runs/<id>")``, ``runsync ls URL``.

A remote run is read through a verified local copy in a cache, then by the
local reader: every file is checked against its manifest hash on the way in,
later reads fetch only what changed (new parts, newer documents), and the copy
keeps working with no network. Listing fetches only the small JSON documents.
The cache is ``$RUNSYNC_CACHE_DIR`` or ``~/.cache/runsync``; deleting it is safe.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..format.errors import RunsyncError

__all__ = ["is_url", "cache_root", "fetch_runs", "fetch_run", "local_root"]

_DOCUMENTS = ("run.json",)


def is_url(ref: object) -> bool:
    """A remote to read through the cache (``file://`` URLs are local paths)."""
    return isinstance(ref, str) and "://" in ref and not ref.startswith("file://")


def as_path(ref: str | os.PathLike[str]) -> Path:
    """A local path, also from a ``file://`` URL."""
    s = os.fspath(ref)
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def cache_root(url: str) -> Path:
    """The local copy of the remote root ``url`` (named by a hash of the URL without credentials)."""
    from ..syncer.remote import redact

    base = Path(os.environ.get("RUNSYNC_CACHE_DIR") or Path.home() / ".cache" / "runsync")
    return base / "remotes" / hashlib.sha256(redact(url).rstrip("/").encode()).hexdigest()[:16]


def _is_document(rel: str) -> bool:
    return rel in _DOCUMENTS or (rel.startswith("streams/") and rel.endswith(".json"))


def fetch_runs(url: str, run_ids: list[str] | None = None, *, documents_only: bool = False,
               storage_options: dict[str, Any] | None = None) -> Path:
    """Bring the committed state of runs under the remote root ``url`` into the cache; return its root."""
    from ..syncer import Remote, RetryPolicy
    from ..syncer.pull import pull

    # Someone waiting on a table or a plot: a server that is down fails in seconds, not minutes (a push's
    # default policy rides out minutes of outage, which suits an unattended transfer).
    remote = Remote(url, storage_options=storage_options, policy=RetryPolicy(retries=3, timeout=15.0))
    root = cache_root(url)
    res = pull(remote, root, run_ids, only=_is_document if documents_only else None, trust_previous=True,
               prune=not documents_only)
    if res.failures:
        detail = "; ".join(f"{r}: {e}" for r, e in res.failures[:5])
        raise RunsyncError(f"could not read {len(res.failures)} run(s) from {remote.display}: {detail}")
    return root


def fetch_run(url: str, storage_options: dict[str, Any] | None = None) -> Path:
    """``URL/<run id>`` → the local copy of that run (whole, verified)."""
    parent, _, run_id = url.rstrip("/").rpartition("/")
    if not parent or "://" not in parent:
        raise RunsyncError(f"{url!r} does not name a run: expected REMOTE/<run id>")
    from ..syncer.remote import env_storage_options

    opts = env_storage_options() if storage_options is None else storage_options
    return fetch_runs(parent, [run_id], storage_options=opts) / run_id


def local_root(root: str | Path | None) -> Path:
    """A runs root to read: a local directory as is; a remote URL → its cached documents (for listing)."""
    # W&B's WANDB_DIR where RUNSYNC_DIR is unset, as the writer does (README "Coming from W&B")
    ref = root if root is not None else os.environ.get("RUNSYNC_DIR") or os.environ.get("WANDB_DIR") or "runs"
    if is_url(ref):
        from ..syncer.remote import env_storage_options

        return fetch_runs(str(ref), documents_only=True, storage_options=env_storage_options())
    return as_path(ref)
