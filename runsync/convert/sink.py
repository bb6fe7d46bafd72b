"""Writing an imported run (spec §3.1 ``source``, §6.4): the one place converters put runs on disk.

A converter reads another tool's run into an ``ImportedRun`` (rows with their
own steps and times, media, config, summary, files, console lines) and hands it
to ``write_import``. The writer's ``log()`` takes the time from the clock, so an
import goes through the format's own functions instead: it claims stream
``main`` like any writer (one incarnation per import that adds something),
writes one history part, one media part and one system part covering the seqs
it assigned, then the stream's documents and a final ``status.json`` — no WAL.

Idempotence: the run is found again by its ``source`` (kind, id) in run.json;
a row whose (step, key, time in µs) the stream already holds is not written
again, so importing the same source twice adds nothing and a source that grew
adds only its new rows.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..format.atomic import write_atomic
from ..format.errors import RunsyncError
from ..format.files import FileEntry, FilesDoc, object_path
from ..format.history import columns_to_table, list_parts, read_part, select_cover, write_part
from ..format.layout import ID_RE, RunLayout, iter_run_dirs
from ..format.liveness import host_identity
from ..format.media import MEDIA_DIR, MediaRow, media_table, read_media, write_media_part
from ..format.meta import (
    ConfigDoc,
    RunInfo,
    State,
    Status,
    SummaryDoc,
    deep_update,
    json_safe,
    load_doc,
    publish_doc,
    save_doc,
)
from ..format.values import ValueType, check_key, coerce
from ..format.wal import Columns
from ..writer.claim import claim_stream

__all__ = ["STREAM", "ConvertError", "ImportResult", "ImportedRun", "Source", "import_key", "write_import"]

STREAM = "main"
_HEARTBEAT = 5.0
_SLUG_RE = re.compile(r"[^a-z0-9_-]+")


class ConvertError(RunsyncError):
    """A source that cannot be imported or a target that cannot be exported to; says what to do."""


@dataclass(frozen=True)
class Source:
    """Where an imported run came from (run.json ``source``, spec §3.1, since 1.3)."""

    kind: str  # tensorboard | mlflow | wandb | csv
    uri: str  # the directory, file or tracking URI read
    id: str  # the run's id in the source (a path for sources without ids)

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "uri": self.uri, "id": self.id}


@dataclass
class ImportedRun:
    """One run read from another tool, in runsync's terms. Times are Unix seconds."""

    source: Source
    name: str
    project: str = "default"
    created: float | None = None
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    notes: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    state: str = State.FINISHED  # finished | failed | running (the source still running when read)
    ended: float | None = None
    error: str | None = None
    rows: list[tuple[int, float, str, Any]] = field(default_factory=list)  # (step, time, key, scalar)
    media: list[tuple[int, float, str, list[Any]]] = field(default_factory=list)  # (step, time, key, [Media])
    system: list[tuple[int, float, str, Any]] = field(default_factory=list)
    files: list[tuple[str, Path]] = field(default_factory=list)  # (name in the run, local path)
    console: list[str] = field(default_factory=list)  # whole lines, without their newline
    skipped: list[str] = field(default_factory=list)  # what the converter could not read, for the report
    # False for sources without times (CSV without a time column): rows get the import's time (a NaN time
    # here), and a row counts as already stored by its (step, key) alone
    dedupe_on_time: bool = True


@dataclass
class ImportResult:
    run_id: str
    path: Path
    created: bool
    rows: int
    media: int
    files: int
    skipped: list[str]

    def describe(self) -> str:
        what = "imported" if self.created else ("updated" if self.rows or self.media or self.files else "unchanged")
        line = f"{what} {self.run_id}: {self.rows} new rows, {self.media} new media, {self.files} new files"
        return line + "".join(f"\n  skipped: {s}" for s in self.skipped)


def import_key(key: str) -> str | None:
    """The history key for a source's key (§5.1): as is when valid; a key starting with ``_`` or
    named ``step``/``time`` gets the prefix ``imported/``; None when it cannot be a key at all."""
    try:
        return check_key(key)
    except (TypeError, ValueError):
        pass
    try:
        return check_key("imported/" + key)
    except (TypeError, ValueError):
        return None


def run_id_for(source: Source, name: str) -> str:
    """The source's run id when it is a valid runsync id (§2.1), else a stable one from the source."""
    if ID_RE.match(source.id):
        return source.id
    digest = hashlib.sha256(f"{source.kind}\0{source.id}".encode()).hexdigest()[:8]
    slug = _SLUG_RE.sub("-", (name or source.kind).lower()).strip("-_")[:50] or source.kind
    return f"{slug}-{digest}"


def _find_existing(root: Path, source: Source) -> Path | None:
    for d in iter_run_dirs(root):
        try:
            src = load_doc(RunInfo, d / "run.json").source
        except RunsyncError:
            continue
        if isinstance(src, dict) and src.get("kind") == source.kind and src.get("id") == source.id:
            return d
    return None


def _create_run(root: Path, run: ImportedRun) -> tuple[Path, bool]:
    found = _find_existing(root, run.source)
    if found is not None:
        return found, False
    run_id = run_id_for(run.source, run.name)
    d = root / run_id
    if (d / "run.json").exists():
        raise ConvertError(f"run {run_id} in {root} exists and is not an import of {run.source.kind} run "
                           f"{run.source.id!r}; import into another --dir, or move that run away")
    os.makedirs(d / "history", exist_ok=True)
    info = RunInfo(id=run_id, name=run.name or run_id, project=run.project or "default",
                   created=run.created if run.created is not None else time.time(), group=run.group,
                   job_type=run.job_type, tags=list(run.tags), notes=run.notes, source=run.source.as_dict())
    publish_doc(info, d / "run.json")
    return d, True


def _existing_rows(layout: RunLayout) -> set[tuple[int, str, int]]:
    out: set[tuple[int, str, int]] = set()
    for p in select_cover(list_parts(layout.history)):
        if p.stream != STREAM:
            continue
        t = read_part(p.path)
        out.update(zip(t.column("step").to_pylist(), t.column("key").to_pylist(),
                       t.column("time").cast("int64").to_pylist()))
    return out


def _us(t: float) -> int:
    return int(np.round(np.float64(t) * 1e6))


class _Batch:
    """New rows grouped into log calls: one seq per (time, step), in time order (spec §4.3)."""

    def __init__(self) -> None:
        self.calls: dict[tuple[int, int], list[tuple[str, int, Any]]] = {}

    def add(self, step: int, t: float, key: str, vtype: int, value: Any) -> None:
        self.calls.setdefault((_us(t), step), []).append((key, vtype, value))

    def seqs(self, first: int) -> dict[tuple[int, int], int]:
        return {k: first + i for i, k in enumerate(sorted(self.calls))}

    def columns(self, seqs: dict[tuple[int, int], int]) -> Columns:
        groups: dict[tuple[str, int], list[tuple[int, float, int, Any]]] = {}
        for (t_us, step), items in self.calls.items():
            for key, vtype, value in items:
                groups.setdefault((key, vtype), []).append((step, t_us / 1e6, seqs[(t_us, step)], value))
        cols = Columns()
        for (key, vtype), rows in sorted(groups.items()):
            rows.sort(key=lambda r: r[2])
            steps = np.array([r[0] for r in rows], np.int64)
            times = np.array([r[1] for r in rows], np.float64)
            sq = np.array([r[2] for r in rows], np.int64)
            vals: Any
            if vtype in (ValueType.STRING, ValueType.MEDIA):
                vals = [r[3] for r in rows]
            elif vtype == ValueType.NULL:
                vals = None
            elif vtype == ValueType.FLOAT:
                vals = np.array([r[3] for r in rows], np.float64)
            elif vtype == ValueType.INT:
                vals = np.array([r[3] for r in rows], np.int64)
            else:
                vals = np.array([bool(r[3]) for r in rows], np.bool_)
            cols.add(key, vtype, steps, times, sq, vals)
            cols.max_seq = max(cols.max_seq, int(sq.max()))
        return cols


def _rows_batch(rows: list[tuple[int, float, str, Any]], have: set[tuple[int, str, int]],
                skipped: list[str], by_time: bool = True) -> _Batch:
    batch = _Batch()
    bad: dict[str, str] = {}
    now = time.time()
    seen: set[Any] = have if by_time else {(s, k) for s, k, _t in have}
    for step, t, key, value in rows:
        k = import_key(key)
        if k is None:
            bad.setdefault(key, "not a valid key (spec §5.1)")
            continue
        if math.isnan(t):
            t = now
        row_id: Any = (int(step), k, _us(t)) if by_time else (int(step), k)
        if row_id in seen:
            continue  # stored by an earlier import, or repeated in the source
        seen.add(row_id)
        try:
            vtype, v = coerce(k, value)
        except (TypeError, ValueError) as e:
            bad.setdefault(key, str(e))
            continue
        batch.add(int(step), t, k, int(vtype), v)
    skipped.extend(f"key {k!r}: {why}" for k, why in bad.items())
    return batch


def _summary_scalars(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in summary.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            continue  # media and nested objects are not summary values (§3.3)
        if v is None or isinstance(v, (bool, int, float, str)):
            out[key] = v
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(type(a) is type(b) and a == b)


def write_import(root: Path, run: ImportedRun) -> ImportResult:
    """Create or extend the runsync run of ``run.source`` under ``root``; add only what is new."""
    os.makedirs(root, exist_ok=True)
    path, created = _create_run(root, run)
    layout = RunLayout(path)
    stream = layout.stream(STREAM)
    skipped = list(run.skipped)
    rows = _rows_batch(run.rows, _existing_rows(layout), skipped, run.dedupe_on_time)
    sys_layout = layout.with_table("system")
    sys_rows = _rows_batch(run.system, _existing_rows(sys_layout), skipped)
    media_items: dict[tuple[int, int, str], list[Any]] = {}
    have = _existing_rows(layout)
    for step, t, key, items in run.media:
        k = import_key(key)
        if k is None or not items:
            skipped.append(f"media key {key!r}: not a valid key (spec §5.1)")
            continue
        if (int(step), k, _us(t)) in have or (_us(t), int(step), k) in media_items:
            continue
        prepared = []
        for m in items:
            try:
                prepared.append(m.prepare(k))
            except Exception as e:  # noqa: BLE001 - a missing or unreadable media file: the other values still import
                skipped.append(f"media {k!r} at step {step}: {type(e).__name__}: {e}")
        if prepared:
            media_items[(_us(t), int(step), k)] = prepared
    for key_t, items in list(media_items.items()):
        rows.add(key_t[1], key_t[0] / 1e6, key_t[2], int(ValueType.MEDIA), items[0].kind)
    old_config = _load(ConfigDoc, stream.config)
    config = json_safe(run.config)
    merged = dict(old_config.config)
    deep_update(merged, config)
    config_changed = merged != old_config.config
    files_doc = _load(FilesDoc, stream.dir / "files.json")
    have_files = {(e.name, e.sha256) for e in files_doc.files}
    new_files = [(n, p, _sha256(p)) for n, p in run.files]
    new_files = [(n, p, s) for n, p, s in new_files if (n, s) not in have_files]
    old_summary = _load(SummaryDoc, stream.summary)
    summary = _summary_scalars(run.summary)
    summary_changed = any(not _same(old_summary.values.get(k), v) for k, v in summary.items())
    console = run.console[_console_lines(path):]
    if not (rows.calls or sys_rows.calls or config_changed or new_files or summary_changed or console) \
            and not created:
        return ImportResult(path.name, path, False, 0, 0, 0, skipped)
    claim, _history = claim_stream(layout, stream, path.name, resume=True, heartbeat_interval=_HEARTBEAT)
    now = time.time()
    host, boot = host_identity()
    status = Status(stream=STREAM, incarnation=claim.incarnation, state=State.RUNNING, host=host, boot_id=boot,
                    pid=claim.pid, pid_start=claim.pid_start, started=claim.time, heartbeat=now,
                    heartbeat_interval=_HEARTBEAT)
    save_doc(status, stream.status, durable=False)
    seq = claim.first_seq
    seqs = rows.seqs(seq)
    n_rows = sum(len(v) for v in rows.calls.values())
    summary_doc = old_summary
    if seqs:
        cols = rows.columns(seqs)
        lo, hi = min(seqs.values()), max(seqs.values())
        write_part(layout.history, STREAM, lo, hi, columns_to_table(cols, STREAM))
        n_media = _write_media(path, seqs, media_items, lo, hi)
        summary_doc.apply(cols)
        seq = hi + 1
    else:
        n_media = 0
    if sys_rows.calls:
        _write_system(layout, sys_rows, claim.incarnation)
    for k, v in summary.items():
        if not _same(summary_doc.values.get(k), v):
            summary_doc.values[k] = v
            summary_doc.time[k] = run.ended or now
            summary_doc.manual = sorted(set(summary_doc.manual) | {k})
    if config_changed:
        old_config.config = merged
        old_config.applied_seq = seq
        seq += 1
    summary_doc.applied_seq = max(summary_doc.applied_seq, seq - 1)
    os.makedirs(stream.dir, exist_ok=True)
    save_doc(old_config, stream.config)
    save_doc(summary_doc, stream.summary)
    if new_files:
        for name, p, sha in new_files:
            _store_object(path, p, sha)
            files_doc.files.append(FileEntry(name, sha, p.stat().st_size, p.stat().st_mtime, now, "now"))
        save_doc(files_doc, stream.dir / "files.json")
    if console:
        _write_console(path, claim.incarnation, console)
    last_step = max([s for (_t, s) in seqs] + [-1])
    status.state = State.FAILED if run.state == State.FAILED else State.FINISHED
    status.exit_code = 1 if status.state == State.FAILED else 0
    status.error = run.error
    if run.state == State.RUNNING and not run.error:
        status.error = f"the {run.source.kind} run was still running when imported; import again to add the rest"
    status.ended = run.ended if run.ended is not None else time.time()
    status.heartbeat = time.time()
    status.last_seq = seq - 1
    status.last_step = last_step
    save_doc(status, stream.status)
    return ImportResult(path.name, path, created, n_rows - n_media, n_media, len(new_files), skipped)


def _load(cls: Any, path: Path) -> Any:
    try:
        return load_doc(cls, path)
    except FileNotFoundError:
        return cls()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _store_object(run_dir: Path, src: Path, sha: str) -> None:
    """A saved file's bytes at ``files/sha256/<aa>/<sha>`` (spec §13.5), written whole (§2.3)."""
    dst = run_dir / object_path(sha)
    if dst.exists():
        return
    os.makedirs(dst.parent, exist_ok=True)
    write_atomic(dst, src.read_bytes())


def _write_media(run_dir: Path, seqs: dict[tuple[int, int], int], items: dict[tuple[int, int, str], list[Any]],
                 lo: int, hi: int) -> int:
    """Media rows (spec §13.2) of the new MEDIA history rows, one media part over the same seq range."""
    if not items:
        return 0
    media_dir = run_dir / MEDIA_DIR
    known = set(read_media(media_dir).column("sha256").to_pylist()) if media_dir.is_dir() else set()
    out: list[MediaRow] = []
    for (t_us, step, key), media in sorted(items.items()):
        for index, prepared in enumerate(media):
            fmt, data, meta = prepared.encode()
            sha = hashlib.sha256(data).hexdigest()
            out.append(MediaRow(STREAM, seqs[(t_us, step)], step, key, index, prepared.kind, fmt, prepared.caption,
                                meta, sha, len(data), None if sha in known else data))
            known.add(sha)
    os.makedirs(media_dir, exist_ok=True)
    out.sort(key=lambda r: (r.seq, r.key, r.index))
    write_media_part(media_dir, STREAM, lo, hi, media_table(out))
    return len(items)


def _write_system(layout: RunLayout, batch: _Batch, incarnation: int) -> None:
    """System rows (spec §14) through the stream's system sub-stream, claimed like the stream itself."""
    sys_layout = layout.with_table("system")
    st = sys_layout.stream(STREAM)
    claim, _h = claim_stream(sys_layout, st, layout.dir.name, resume=True, heartbeat_interval=_HEARTBEAT)
    seqs = batch.seqs(claim.first_seq)
    os.makedirs(sys_layout.history, exist_ok=True)
    write_part(sys_layout.history, STREAM, min(seqs.values()), max(seqs.values()),
               columns_to_table(batch.columns(seqs), STREAM))
    host, boot = host_identity()
    now = time.time()
    save_doc(Status(stream=STREAM, incarnation=claim.incarnation, state=State.FINISHED, host=host, boot_id=boot,
                    pid=claim.pid, pid_start=claim.pid_start, started=claim.time, heartbeat=now,
                    heartbeat_interval=_HEARTBEAT, ended=now, exit_code=0, last_seq=max(seqs.values())), st.status)


def _write_console(run_dir: Path, incarnation: int, lines: list[str]) -> None:
    """The source's console output as ``console/main.<inc>.000000.log`` (spec §15), whole lines."""
    d = run_dir / "console"
    os.makedirs(d, exist_ok=True)
    write_atomic(d / f"{STREAM}.{incarnation:06d}.000000.log", "".join(line + "\n" for line in lines).encode())



def _console_lines(run_dir: Path) -> int:
    """Lines of console output the stream already holds: a re-import appends only the lines after them."""
    n = 0
    for p in sorted((run_dir / "console").glob(f"{STREAM}.*.log")):
        with open(p, "rb") as f:
            n += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return n
