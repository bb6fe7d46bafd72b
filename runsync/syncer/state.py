"""Local sync state (spec §12.5): what was pushed where, so a no-op push only stats.

One JSON file per (source root, remote) under ``<src>/.runsync/sync/``. It caches
content hashes by (size, mtime, inode) and records, per run, the manifest last
committed to that remote. It is a cache: deleting it costs a re-hash and a
look at the remote, never data; ``--verify`` ignores it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..format.atomic import write_atomic

__all__ = ["SyncState", "remote_key"]


def remote_key(remote_display: str) -> str:
    """The remote as sync state names it: one name however the user spelled it (issue 13 §2).

    A local path or ``file://`` URL becomes its absolute, normalised path (``remote``, ``./remote``,
    ``remote/``, ``/abs/remote`` and ``file:///abs/remote`` are one remote); a URL loses trailing
    slashes and its scheme's case. ``remote_display`` holds no credentials (``Remote.display``).
    """
    s = remote_display.strip()
    if s.startswith("file://"):
        s = s[len("file://"):]
    elif "://" in s:
        scheme, _, rest = s.partition("://")
        return f"{scheme.lower()}://{rest.rstrip('/')}"
    return os.path.realpath(os.path.expanduser(s))


class SyncState:
    def __init__(self, src_root: Path, remote_display: str) -> None:
        # "bundle:" and such name no remote: kept as they are
        remote_display = remote_display if remote_display.endswith(":") else remote_key(remote_display)
        key = hashlib.sha256(remote_display.encode()).hexdigest()[:16]
        self.path = src_root / ".runsync" / "sync" / f"{key}.json"
        self.remote = remote_display
        self.runs: dict[str, dict[str, Any]] = {}
        self.dirty = False  # anything recorded since loading
        try:
            data = json.loads(self.path.read_bytes())
            if data.get("remote") == remote_display:
                self.runs = data.get("runs", {})
        except (FileNotFoundError, ValueError, OSError):
            pass

    def hash_of(self, run_id: str, rel: str, size: int, mtime_ns: int, ino: int) -> str | None:
        e = self.runs.get(run_id, {}).get("hashes", {}).get(rel)
        if e and e[0] == size and e[1] == mtime_ns and e[2] == ino:
            return str(e[3])
        return None

    def committed(self, run_id: str) -> dict[str, list[Any]]:
        """rel → [size, sha256] of the manifest last committed for ``run_id``."""
        return dict(self.runs.get(run_id, {}).get("committed", {}))

    def unchanged(self, run_id: str, stats: list[tuple[str, int, int, int]]) -> bool:
        """True if the run's files are exactly those hashed and committed last time, and that commit is
        one this version would make: a commit that names WAL segments (pushed before format 1.3) is
        redone, so the remote gets the tail as parts and the segments go (spec §12.4)."""
        from .source import is_segment

        return self.changed(run_id, stats) == 0 and not any(is_segment(p) for p in self.committed(run_id))

    def changed(self, run_id: str, stats: list[tuple[str, int, int, int]]) -> int | None:
        """How many of the run's files differ (by stats) from the last commit; None if never committed."""
        r = self.runs.get(run_id)
        if not r or "committed" not in r:
            return None
        old = {x[0]: tuple(x) for x in r.get("stats", [])}
        now = {x[0] for x in stats}
        return sum(1 for s in stats if old.get(s[0]) != tuple(s)) + sum(1 for p in old if p not in now)

    def trusted(self, run_id: str) -> bool:
        """Whether the recorded commit vouches for the remote's run-path document copies (§12.1.2)."""
        return bool(self.runs.get(run_id, {}).get("trusted", True))

    def record(self, run_id: str, hashes: dict[str, list[Any]], committed: dict[str, list[Any]] | None,
               stats: list[tuple[str, int, int, int]], trusted: bool = True) -> None:
        self.dirty = True
        r = self.runs.setdefault(run_id, {})
        r["hashes"] = hashes
        if committed is not None:
            r["committed"] = committed
            r["stats"] = [list(s) for s in stats]
            r["trusted"] = trusted

    def save(self) -> None:
        os.makedirs(self.path.parent, exist_ok=True)
        data = json.dumps({"remote": self.remote, "runs": self.runs}, separators=(",", ":")).encode()
        write_atomic(self.path, data, durable=False)
