"""Reading runs where they were pushed (spec §12): a remote run is read through a verified local copy.

Every file is checked against its manifest hash on the way in, later reads fetch only what changed
(new parts, newer documents), and the copy keeps working with no network. Listing fetches only the
small JSON documents. The cache is ``$RUNSYNC_CACHE_DIR`` or ``~/.cache/runsync``; deleting it is safe.

The reader knows nothing of the syncer: ``import runsync`` installs these functions in
``runsync._remote_hook`` (imported on first use), where ``runsync.reader.remote`` finds them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..format.errors import RunsyncError
from .pull import pull
from .remote import Remote, RetryPolicy, env_storage_options, redact

__all__ = ["cache_root", "fetch_runs", "fetch_run"]

_DOCUMENTS = ("run.json",)


def cache_root(url: str) -> Path:
    """The local copy of the remote root ``url`` (named by a hash of the URL without credentials)."""
    base = Path(os.environ.get("RUNSYNC_CACHE_DIR") or Path.home() / ".cache" / "runsync")
    return base / "remotes" / hashlib.sha256(redact(url).rstrip("/").encode()).hexdigest()[:16]


def _is_document(rel: str) -> bool:
    return rel in _DOCUMENTS or (rel.startswith("streams/") and rel.endswith(".json"))


def fetch_runs(url: str, run_ids: list[str] | None = None, *, documents_only: bool = False,
               storage_options: dict[str, Any] | None = None) -> Path:
    """Bring the committed state of runs under the remote root ``url`` into the cache; return its root."""
    opts = env_storage_options() if storage_options is None else storage_options
    # Someone waiting on a table or a plot: a server that is down fails in seconds, not minutes (a push's
    # default policy rides out minutes of outage, which suits an unattended transfer).
    remote = Remote(url, storage_options=opts, policy=RetryPolicy(retries=3, timeout=15.0))
    root = cache_root(url)
    # force: the cache mirrors the remote, so a run the remote replaced under the same id replaces the cached one
    res = pull(remote, root, run_ids, only=_is_document if documents_only else None, trust_previous=True,
               prune=not documents_only, force=True)
    if res.failures:
        detail = "; ".join(f"{r}: {e}" for r, e in res.failures[:5])
        raise RunsyncError(f"could not read {len(res.failures)} run(s) from {remote.display}: {detail}")
    return root


def fetch_run(url: str, storage_options: dict[str, Any] | None = None) -> Path:
    """``URL/<run id>`` → the local copy of that run (whole, verified)."""
    parent, _, run_id = url.rstrip("/").rpartition("/")
    if not parent or "://" not in parent:
        raise RunsyncError(f"{url!r} does not name a run: expected REMOTE/<run id>")
    return fetch_runs(parent, [run_id], storage_options=storage_options) / run_id

