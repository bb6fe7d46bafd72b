"""What of a local run directory is pushed (spec §12.4): whole files only.

Pushed: run.json; parts of history, system and media; saved files; console
logs; stream documents, claims and environment records. Never pushed:
temporary files, WAL segments, runsync's own sync state, and files the spec
does not name.

A dead writer's WAL tail (a crashed run) is shipped as what recovery would
write for it (spec §8.5, §12.4 since 1.3): :func:`run_files` lists the
segments as the *source* of the push (their stats tell an unchanged run),
and ``syncer.tails.shipped_files`` replaces them by parts and documents built
with ``format.recovery`` in a temporary directory outside the run, which is
never modified. Nothing of a stream whose writer is alive is shipped from its
WAL: its tails are that writer's to recover.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..format.layout import (
    HISTORY_DIR,
    PART_RE,
    RUN_JSON,
    STREAM_RE,
    STREAMS_DIR,
    SYSTEM_DIR,
    StreamLayout,
    iter_run_dirs,
)
from ..format.manifest import BLOB_PREFIXES, MANIFEST, check_rel_path
from ..format.meta import State

__all__ = ["LocalFile", "run_files", "find_runs", "file_stats", "is_segment"]

_STREAM_DOC = re.compile(r"^(claim\.[0-9]{6}\.json|status\.json|config\.json|summary\.json|files\.json"
                         r"|environment\.[0-9]{6}\.json|diff\.[0-9]{6}\.patch)$")
_SEGMENT = re.compile(r"^wal\.([0-9]{6})\.[0-9]{6}$")
_CONSOLE = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[0-9]{6}\.[0-9]{6}\.log$")
_PART_DIRS = (HISTORY_DIR, SYSTEM_DIR, "media")


@dataclass(frozen=True)
class LocalFile:
    rel: str  # run-relative path, '/'-separated
    path: str  # where it is on this machine
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


# Plain strings, not pathlib: a no-op push of 1,000 runs is mostly this module (spec §12.5).
def _stat(path: str, rel: str) -> LocalFile | None:
    """One lstat: regular files only (a symlink is never followed out of a run)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None  # released or merged away meanwhile
    if not stat.S_ISREG(st.st_mode):
        return None
    return LocalFile(rel, path, st.st_size, st.st_mtime_ns, st.st_ino)


def _listed(d: str) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _add(out: list[LocalFile], base: str, rel: str) -> None:
    f = _stat(f"{base}/{rel}", rel)
    if f:
        out.append(f)


def _stream_files(base: str, prefix: str, stream: str, wal: list[LocalFile], docs: list[LocalFile]) -> None:
    """Dead incarnations' WAL (into ``wal``) and documents, claims, environment records (into ``docs``)
    of one stream (of one table)."""
    names = _listed(f"{base}/{prefix}")
    live_inc = None
    if any(_SEGMENT.match(n) for n in names):  # liveness matters only for WAL segments (a finished run has none)
        from ..format.liveness import stream_state  # psutil: only needed here

        state = stream_state(StreamLayout(Path(base, prefix), stream))
        live_inc = state.incarnation if state is not None and state.state == State.RUNNING else None
    for name in names:
        m = _SEGMENT.match(name)
        if m and int(m.group(1)) != live_inc:
            _add(wal, base, f"{prefix}/{name}")
    for name in names:
        if _STREAM_DOC.match(name):
            _add(docs, base, f"{prefix}/{name}")


def run_files(run_dir: Path) -> list[LocalFile]:
    """The files a push of the run depends on, in commit-safe order (data before documents), listed in the
    read order of spec §9.3: WAL tails first, then parts. A recovery that turns a tail into a part and then
    deletes its segment in between leaves the part listed; the other way round, neither would be.

    Includes the WAL segments of dead incarnations, which are never sent: pass the list through
    ``syncer.tails.shipped_files`` for what is (spec §12.4).
    """
    base = os.fspath(run_dir)
    wal: list[LocalFile] = []
    docs: list[LocalFile] = []
    streams = [n for n in _listed(f"{base}/{STREAMS_DIR}") if STREAM_RE.match(n)]
    for name in streams:
        _stream_files(base, f"{STREAMS_DIR}/{name}/{SYSTEM_DIR}", name, wal, docs)
    for name in streams:
        _stream_files(base, f"{STREAMS_DIR}/{name}", name, wal, docs)
    out: list[LocalFile] = wal
    for table in _PART_DIRS:
        for name in _listed(f"{base}/{table}"):
            if PART_RE.match(name):
                _add(out, base, f"{table}/{name}")
    for prefix in BLOB_PREFIXES:
        top = f"{base}/{prefix.rstrip('/')}"
        if os.path.isdir(top) and not os.path.islink(top):
            for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fn in sorted(filenames):
                    if not fn.startswith("."):
                        rel = os.path.relpath(os.path.join(dirpath, fn), base).replace(os.sep, "/")
                        _add(out, base, check_rel_path(rel))
    for name in _listed(f"{base}/console"):
        if _CONSOLE.match(name):
            _add(out, base, f"console/{name}")
    out += docs
    _add(out, base, RUN_JSON)
    assert all(x.rel != MANIFEST for x in out)
    return out


def is_segment(rel: str) -> bool:
    """Whether the run-relative path ``rel`` is a WAL segment (spec §2.2)."""
    return _SEGMENT.match(rel.rsplit("/", 1)[-1]) is not None
