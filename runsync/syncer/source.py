"""What of a local run directory is pushed (spec §12.4): whole files only.

Pushed: run.json; parts of history, system and media; saved files; console
logs; stream documents, claims and environment records. Never pushed:
temporary files, WAL segments, runsync's own sync state, and files the spec
does not name.

A dead writer's WAL tail (a crashed run) is shipped as what recovery would
write for it (spec §8.5, §12.4 since 1.3): :func:`run_files` lists the
segments as the *source* of the push (their stats tell an unchanged run),
and :func:`shipped_files` replaces them by parts and documents built with
``format.recovery`` in a temporary directory outside the run, which is never
modified. Nothing of a stream whose writer is alive is shipped from its WAL:
its tails are that writer's to recover.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..format.layout import (
    HISTORY_DIR,
    PART_RE,
    RUN_JSON,
    STREAM_RE,
    STREAMS_DIR,
    SYSTEM_DIR,
    RunLayout,
    StreamLayout,
    iter_run_dirs,
)
from ..format.errors import FormatError
from ..format.history import write_part
from ..format.manifest import BLOB_PREFIXES, MANIFEST, check_rel_path
from ..format.meta import ConfigDoc, State, SummaryDoc, load_doc, save_doc

__all__ = ["LocalFile", "run_files", "shipped_files", "find_runs", "file_stats"]

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


def _stream_files(base: str, prefix: str, stream: str, out: list[LocalFile]) -> None:
    """Documents, claims, environment records of one stream (of one table), and its WAL if its writer is dead."""
    names = _listed(f"{base}/{prefix}")
    dead = False
    if any(_SEGMENT.match(n) for n in names):  # liveness matters only for WAL segments (a finished run has none)
        from ..format.liveness import stream_state  # psutil: only needed here

        state = stream_state(StreamLayout(Path(base, prefix), stream))
        dead = state is not None and state.state != State.RUNNING
    for name in names:  # WAL tails first: data before the documents that describe it
        if dead and _SEGMENT.match(name):
            _add(out, base, f"{prefix}/{name}")  # a source of the push; shipped_files replaces it
    for name in names:
        if _STREAM_DOC.match(name):
            _add(out, base, f"{prefix}/{name}")


def run_files(run_dir: Path) -> list[LocalFile]:
    """The files a push of the run depends on, in commit-safe order (data before documents).

    Includes the WAL segments of dead writers, which are never sent: pass the
    list through :func:`shipped_files` for what is.
    """
    base = os.fspath(run_dir)
    out: list[LocalFile] = []
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
    streams = [n for n in _listed(f"{base}/{STREAMS_DIR}") if STREAM_RE.match(n)]
    for name in streams:
        _stream_files(base, f"{STREAMS_DIR}/{name}/{SYSTEM_DIR}", name, out)
    for name in streams:
        _stream_files(base, f"{STREAMS_DIR}/{name}", name, out)
    _add(out, base, RUN_JSON)
    assert all(x.rel != MANIFEST for x in out)
    return out


def _is_segment(rel: str) -> bool:
    return _SEGMENT.match(rel.rsplit("/", 1)[-1]) is not None


@contextmanager
def shipped_files(run_dir: Path, files: list[LocalFile]) -> Iterator[list[LocalFile]]:
    """What is sent for ``files`` (from :func:`run_files`): each dead writer's WAL segments replaced by the
    parts and documents its recovery would write (spec §8.5, §12.4).

    Those are built in a temporary directory outside the run, removed when the
    block ends; they carry the run-relative names recovery gives them, so after
    a real recovery the next push sees the same names (and replaces any whose
    bytes differ, by the usual hash comparison).
    """
    prefixes = sorted({f.rel.rsplit("/", 1)[0] for f in files if _is_segment(f.rel)})
    if not prefixes:
        yield files
        return
    with tempfile.TemporaryDirectory(prefix="runsync-tail-") as tmp:
        parts: list[LocalFile] = []
        docs: dict[str, LocalFile] = {}
        for i, prefix in enumerate(prefixes):
            p, d = _recovered(run_dir, prefix, Path(tmp, str(i)))
            parts += p
            docs.update({f.rel: f for f in d})
        kept = [docs.pop(f.rel, f) for f in files if not _is_segment(f.rel)]
        n_data = next((i for i, f in enumerate(kept) if f.rel.startswith(f"{STREAMS_DIR}/")), len(kept))
        # Data before the documents that describe it: the parts go with the other parts.
        yield kept[:n_data] + parts + list(docs.values()) + kept[n_data:]


def _recovered(run_dir: Path, prefix: str, tmp: Path) -> tuple[list[LocalFile], list[LocalFile]]:
    """(parts, documents) recovery would write for the dead stream at ``prefix`` (``streams/<s>[/system]``),
    built under ``tmp``; nothing if its writer turns out to be alive (then it recovers them itself)."""
    from ..format.liveness import stream_state
    from ..format.recovery import crashed_status, recovery_steps, scan_stream

    _streams, name, *sub = prefix.split("/")
    layout = RunLayout(run_dir, SYSTEM_DIR if sub else HISTORY_DIR)
    st = layout.stream(name)
    before = st.incarnations()
    state = stream_state(st)
    if state is None or state.state == State.RUNNING:
        return [], []
    history = scan_stream(layout, st)
    summary = _load_or(SummaryDoc, st.summary)
    config = _load_or(ConfigDoc, st.config)
    parts_dir = tmp / layout.table
    docs_dir = tmp / prefix
    os.makedirs(parts_dir)
    os.makedirs(docs_dir)
    parts: list[LocalFile] = []
    for part in recovery_steps(name, history, summary, config):
        if part is not None:
            path = write_part(parts_dir, name, part.lo, part.hi, part.table).path
            parts.append(_local(path, f"{layout.table}/{path.name}"))
    docs: list[LocalFile] = []
    if history.tails:
        for doc, fname in ((summary, "summary.json"), (config, "config.json")):
            save_doc(doc, docs_dir / fname, durable=False)
            docs.append(_local(docs_dir / fname, f"{prefix}/{fname}"))
    if state.state == State.CRASHED:
        save_doc(crashed_status(state.claim, state.status, history), docs_dir / "status.json", durable=False)
        docs.append(_local(docs_dir / "status.json", f"{prefix}/status.json"))
    if st.incarnations() != before:
        raise FormatError(f"stream {name!r} was claimed by a new writer while its crashed tail was being "
                          "read for the push; push again", run_dir)
    return parts, docs


def _local(path: Path, rel: str) -> LocalFile:
    st = os.stat(path)
    return LocalFile(rel, os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


_Doc = TypeVar("_Doc", SummaryDoc, ConfigDoc)


def _load_or(cls: type[_Doc], path: Path) -> _Doc:
    try:
        return load_doc(cls, path)
    except FileNotFoundError:
        return cls()
