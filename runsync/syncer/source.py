"""What of a local run directory is pushed (spec §12.4): whole files only.

Pushed: run.json; parts of history, system and media; saved files; console
logs; stream documents, claims and environment records; and the WAL segments
of incarnations that are no longer alive (a crashed run's tail). Never pushed:
temporary files, the WAL of a live writer (it is being written), runsync's own
sync state, and files the spec does not name.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..format.layout import HISTORY_DIR, PART_RE, RUN_JSON, SYSTEM_DIR, RunLayout, StreamLayout, iter_run_dirs
from ..format.liveness import stream_state
from ..format.manifest import BLOB_PREFIXES, MANIFEST, check_rel_path
from ..format.meta import State

__all__ = ["LocalFile", "run_files", "find_runs", "file_stats"]

_STREAM_DOC = re.compile(r"^(claim\.[0-9]{6}\.json|status\.json|config\.json|summary\.json|files\.json"
                         r"|environment\.[0-9]{6}\.json|diff\.[0-9]{6}\.patch)$")
_SEGMENT = re.compile(r"^wal\.([0-9]{6})\.[0-9]{6}$")
_CONSOLE = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[0-9]{6}\.[0-9]{6}\.log$")
_PART_DIRS = (HISTORY_DIR, SYSTEM_DIR, "media")


@dataclass(frozen=True)
class LocalFile:
    rel: str  # run-relative path, '/'-separated
    path: Path
    size: int
    mtime_ns: int
    ino: int


def file_stats(files: list[LocalFile]) -> list[tuple[str, int, int, int]]:
    """(path, size, mtime_ns, inode) per file: what the sync state compares to skip unchanged runs."""
    return [(f.rel, f.size, f.mtime_ns, f.ino) for f in files]


def find_runs(src: Path) -> list[Path]:
    """``src`` itself if it is a run directory, else the run directories under it."""
    if (src / RUN_JSON).is_file():
        return [src]
    return iter_run_dirs(src)


def _stat(path: Path, rel: str) -> LocalFile | None:
    """One lstat: regular files only (a symlink is never followed out of a run)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None  # released or merged away meanwhile
    if not stat.S_ISREG(st.st_mode):
        return None
    return LocalFile(rel, path, st.st_size, st.st_mtime_ns, st.st_ino)


def _listed(d: Path) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _stream_files(st: StreamLayout, prefix: str, out: list[LocalFile]) -> None:
    """Documents, claims, environment records and dead incarnations' WAL of one stream (of one table)."""
    names = _listed(st.dir)
    live_inc = None
    if any(_SEGMENT.match(n) for n in names):  # liveness matters only for WAL segments (a finished run has none)
        state = stream_state(st)
        live_inc = state.incarnation if state is not None and state.state == State.RUNNING else None
    for name in names:  # WAL tails first: data before the documents that describe it
        m = _SEGMENT.match(name)
        if m and int(m.group(1)) != live_inc:
            f = _stat(st.dir / name, f"{prefix}/{name}")
            if f:
                out.append(f)
    for name in names:
        if _STREAM_DOC.match(name):
            f = _stat(st.dir / name, f"{prefix}/{name}")
            if f:
                out.append(f)


def run_files(run_dir: Path) -> list[LocalFile]:
    """The files of a run to push, in commit-safe order (data before documents)."""
    layout = RunLayout(run_dir)
    out: list[LocalFile] = []
    for table in _PART_DIRS:
        for name in _listed(run_dir / table):
            if PART_RE.match(name):
                f = _stat(run_dir / table / name, f"{table}/{name}")
                if f:
                    out.append(f)
    for prefix in BLOB_PREFIXES:
        base = run_dir / prefix.rstrip("/")
        if base.is_dir() and not base.is_symlink():
            for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if fn.startswith("."):
                        continue
                    p = Path(dirpath) / fn
                    rel = p.relative_to(run_dir).as_posix()
                    check_rel_path(rel)
                    f = _stat(p, rel)
                    if f:
                        out.append(f)
    for name in _listed(run_dir / "console"):
        if _CONSOLE.match(name):
            f = _stat(run_dir / "console" / name, f"console/{name}")
            if f:
                out.append(f)
    for st in layout.with_table(SYSTEM_DIR).streams():
        _stream_files(st, f"streams/{st.name}/{SYSTEM_DIR}", out)
    for st in layout.streams():
        _stream_files(st, f"streams/{st.name}", out)
    f = _stat(layout.run_json, RUN_JSON)
    if f:
        out.append(f)
    assert all(x.rel != MANIFEST for x in out)
    return out
