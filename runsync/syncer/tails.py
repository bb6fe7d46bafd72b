"""What a push or bundle sends for a dead writer's WAL tail (spec §8.5, §12.4; since 1.3).

Never the segments (three preallocated 16 MiB files for a short run, which
stock readers cannot read): the part(s) and documents the stream's recovery
would write, built with ``format.recovery`` — the very function the writer's
own recovery uses — in a temporary directory outside the run, under the
run-relative names recovery gives them. The source run is not modified.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..format.errors import FormatError
from ..format.history import write_part
from ..format.layout import HISTORY_DIR, STREAMS_DIR, SYSTEM_DIR, RunLayout
from ..format.meta import ConfigDoc, State, SummaryDoc, load_doc, save_doc
from .source import LocalFile, is_segment

__all__ = ["shipped_files"]


@contextmanager
def shipped_files(run_dir: Path, files: list[LocalFile]) -> Iterator[list[LocalFile]]:
    """What is sent for ``files`` (from :func:`run_files`): each dead writer's WAL segments replaced by the
    parts and documents its recovery would write (spec §8.5, §12.4).

    Those are built in a temporary directory outside the run, removed when the
    block ends; they carry the run-relative names recovery gives them, so after
    a real recovery the next push sees the same names (and replaces any whose
    bytes differ, by the usual hash comparison).
    """
    prefixes = sorted({f.rel.rsplit("/", 1)[0] for f in files if is_segment(f.rel)})
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
        kept = [docs.pop(f.rel, f) for f in files if not is_segment(f.rel)]
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
