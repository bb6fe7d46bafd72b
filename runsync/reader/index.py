"""One record per run, read fast: a single-pass record builder and a self-validating cache.

Listing a runs directory means reading, per run, run.json and each stream's
claim, status, config and summary, and deciding whether each writer is alive
(spec §3, §7). ``RunView`` does that correctly but re-reads documents several
times per run; :func:`build_record` reads each file once and falls back to
``RunView.documents()`` only for streams that still have WAL segments (their
config and summary may have a tail, spec §8.5).

The cache, ``<root>/.runsync/index/runs.json``, keeps each run's record with
the (path, mtime_ns, size, inode) of every file and directory the record was
built from: run.json, ``streams/``, each stream directory and every file in it.
A record is reused only if every one of those still stats the same; adding or
removing a stream or a file changes its directory's stat, and documents are
replaced by rename (a new inode). So the cache is always correct:

- stat is taken *before* reading, so a change during the read is seen next time;
- a record whose files changed less than :data:`RACY_SECONDS` before it was
  built is never stored (a second change within the file system's timestamp
  granularity would not change the stat — git's "racy clean" problem);
- the run state of a record whose state came from liveness (a stream neither
  finished nor failed) is recomputed on every use (spec §7.3: crash detection
  depends on the pid and the heartbeat's age, not on files); if it is running
  the whole record is rebuilt, and running runs are never stored;
- the cache is never required: a missing, corrupt, foreign-version or unwritable
  index (a read-only runs directory) is silently ignored.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..format.atomic import write_atomic
from ..format.errors import FormatError
from ..format.layout import RUN_JSON, STREAM_RE, STREAMS_DIR, RunLayout
from ..format.liveness import stream_state
from ..format.meta import Claim, ConfigDoc, RunInfo, State, SummaryDoc, deep_update, load_doc
from ..format.recovery import scan_stream
from .streams import first_by_stream

__all__ = [
    "INDEX_PATH",
    "INDEX_VERSION",
    "RACY_SECONDS",
    "SUMMARY_FROM",
    "build_record",
    "flatten_dict",
    "load_records",
    "run_state_now",
]

INDEX_PATH = Path(".runsync") / "index" / "runs.json"
INDEX_VERSION = 3  # bump when a record's fields or their meaning change (2: summary by stream order, §3.3;
# 3: a crashed run's tail counts, §8.5; a failed run's cause, §7.2)
# Record field: {summary key: the stream its value is from}, for keys whose streams' values differ (§3.3).
SUMMARY_FROM = "summary_from"
RACY_SECONDS = 2.0
_PARALLEL_MIN = 64  # build at least this many records before using threads (I/O-bound on network file systems)
_THREADS = 8
_CHUNK = 32

Dep = list[Any]  # [relative path, mtime_ns, size, inode]; [path, -1, -1, -1] for an absent path


def flatten_dict(d: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{prefix + "a.b": 1}``; empty dicts stay as values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# -- dependencies -------------------------------------------------------------------------------


def _stat(path: str, rel: str) -> Dep:
    try:
        st = os.stat(path)
    except OSError:
        return [rel, -1, -1, -1]
    return [rel, st.st_mtime_ns, st.st_size, st.st_ino]


def _scan(run_dir: Path) -> tuple[list[Dep], list[tuple[str, list[str]]]]:
    """(stats of everything a record is built from, [(stream, its file names)]), listing each directory once.

    Taken before the documents are read, so a change during the read shows next time.
    """
    base = str(run_dir)
    sep = os.sep
    deps = [_stat(base + sep + RUN_JSON, RUN_JSON), _stat(base + sep + STREAMS_DIR, STREAMS_DIR)]
    try:
        streams = sorted(n for n in os.listdir(base + sep + STREAMS_DIR) if STREAM_RE.match(n))
    except OSError:
        streams = []
    listing: list[tuple[str, list[str]]] = []
    for s in streams:
        rel = f"{STREAMS_DIR}/{s}"
        d = base + sep + STREAMS_DIR + sep + s
        deps.append(_stat(d, rel))
        try:
            names = sorted(n for n in os.listdir(d) if not n.startswith("."))
        except OSError:
            names = []
        listing.append((s, names))
        for n in names:
            deps.append(_stat(d + sep + n, f"{rel}/{n}"))
    return deps, listing


def _deps_unchanged(run_dir: Path, deps: list[Dep]) -> bool:
    base = str(run_dir) + os.sep
    for rel, mtime, size, ino in deps:
        try:
            st = os.stat(base + rel)
        except OSError:
            if mtime != -1:
                return False
            continue
        if st.st_mtime_ns != mtime or st.st_size != size or st.st_ino != ino:
            return False
    return True


# -- building a record ----------------------------------------------------------------------------

_PRECEDENCE = (State.RUNNING, State.CRASHED, State.FAILED, State.FINISHED)


def _run_state(states: set[str]) -> str:
    for st in _PRECEDENCE:
        if st in states:
            return st
    return State.CRASHED  # no stream ever claimed (spec §7.4)


def run_state_now(run_dir: Path, now: float | None = None) -> str:
    """The run state (spec §7.4), deciding liveness afresh."""
    layout = RunLayout(run_dir)
    return _run_state({s.state for s in (stream_state(st, now) for st in layout.streams()) if s is not None})


def _load_optional(cls: Any, path: Path) -> Any:
    try:
        return load_doc(cls, path)
    except FileNotFoundError:
        return None


def build_record(run_dir: Path, now: float | None = None,
                 listing: list[tuple[str, list[str]]] | None = None) -> tuple[dict[str, Any], bool]:
    """(record, liveness): the run's row for ``runsync.runs()``; ``liveness`` if its state depended on it.

    Same values as ``RunView(run_dir).meta`` and ``.documents()`` (spec §3.3 merge
    of several streams included), reading each document once; ``summary_from``
    names, for summary keys whose streams' values differ, the stream shown. ``listing``: the
    streams and their file names, if the caller has listed them already.
    """
    layout = RunLayout(run_dir)
    info = load_doc(RunInfo, layout.run_json)
    if listing is None:
        listing = _scan(run_dir)[1]
    states: set[str] = set()
    liveness = False
    started: list[float] = []
    ends: list[float] = []
    last_step = -1
    n_streams = 0
    docs: list[tuple[float, str, ConfigDoc | None, SummaryDoc | None]] = []
    with_tails = False
    causes: list[str] = []
    for name, names in listing:
        st = layout.stream(name)
        s = stream_state(st, now)
        if s is None:
            continue  # never claimed
        n_streams += 1
        states.add(s.state)
        if s.status is None or s.status.state not in (State.FINISHED, State.FAILED, State.CRASHED) \
                or s.status.incarnation != s.incarnation:
            liveness = True
        if s.status is not None and s.status.incarnation == s.incarnation:
            started.append(s.status.started)
            end = s.status.ended or s.status.heartbeat
            last_step = max(last_step, s.status.last_step)
            if s.state == State.FAILED and s.status.error:
                causes.append(s.status.error)  # why it failed (spec §7.2)
        else:
            started.append(s.claim.time)
            end = s.claim.time
        if end is not None:
            ends.append(end)
        if any(n.startswith("wal.") for n in names) or (
                s.claim.wal_dir is not None and s.state not in (State.FINISHED, State.FAILED)):
            with_tails = True  # segments here, or in a local WAL directory (spec §8.5, since 1.3)
            if s.state == State.CRASHED:
                # A dead writer's status is as old as its last heartbeat; its rows since are in its tail
                # (spec §8.5). Only such runs pay this decode, and the record is cached: a resume or
                # recovery changes the stream directory's files, so the record is rebuilt.
                h = scan_stream(layout, st)
                last_step = max(last_step, h.max_step)
                if h.max_time != float("-inf"):
                    ends.append(h.max_time)
        first = s.claim.time if s.incarnation == 0 else None
        if first is None:
            incs = st.incarnations()
            first = s.claim.time if incs[0] == s.incarnation else load_doc(Claim, st.claim(incs[0])).time
        docs.append((first, name, _load_optional(ConfigDoc, st.config), _load_optional(SummaryDoc, st.summary)))
    t0 = min(started) if started else info.created
    rec: dict[str, Any] = {
        "id": info.id,
        "name": info.name,
        "project": info.project,
        "group": info.group,
        "job_type": info.job_type,
        "tags": list(info.tags),
        "status": _run_state(states),
        "created": info.created,
        "start": t0,
        "duration": (max(ends) - t0) if ends else 0.0,
        "steps": last_step + 1,
        "streams": n_streams,
        "error": causes[0] if causes else None,
        "path": str(run_dir),
    }
    if with_tails:
        from .run import RunView

        config, summaries = RunView(run_dir).documents_by_stream()
    else:
        config, summaries = _merge_docs(docs)
    summary, differ = first_by_stream(summaries)
    rec.update(flatten_dict(config, "config."))
    rec.update(flatten_dict(summary, "summary."))
    if differ:
        rec[SUMMARY_FROM] = differ
    return rec, liveness


def _merge_docs(docs: list[tuple[float, str, ConfigDoc | None, SummaryDoc | None]]
                ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(config, {stream: summary}) of streams without WAL tails, as ``RunView.documents_by_stream()``."""
    config: dict[str, Any] = {}
    summaries: dict[str, dict[str, Any]] = {}
    for _t, name, cfg, summ in sorted(docs, key=lambda x: x[0]):
        if cfg is not None:
            if not config:
                config = cfg.config  # freshly parsed: ours to keep
            else:
                deep_update(config, cfg.config)
        if summ is not None:
            summaries[name] = summ.values
    return config, summaries


# -- the cache ------------------------------------------------------------------------------------


def _read_index(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION or not isinstance(data.get("runs"), dict):
        return {}
    return data["runs"]


def _write_index(path: Path, entries: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"version": INDEX_VERSION, "runs": entries}, allow_nan=True, separators=(",", ":"))
        write_atomic(path, data.encode("utf-8"), durable=False)
    except (OSError, TypeError, ValueError):
        pass  # read-only runs directory, full disk, a value JSON cannot hold: work without the cache


def _build(run_dir: Path) -> tuple[dict[str, Any] | None, list[Dep] | None, bool, str | None]:
    """(record, deps to store or None if not cacheable, liveness, error)."""
    t_start = time.time_ns()
    deps, listing = _scan(run_dir)
    try:
        rec, liveness = build_record(run_dir, listing=listing)
    except (FormatError, OSError, ValueError) as e:
        return None, None, False, str(e)
    except (TypeError, AttributeError, KeyError) as e:  # a document of the wrong shape: skip this run, list the rest
        return None, None, False, f"malformed document ({type(e).__name__}: {e})"
    racy = t_start - int(RACY_SECONDS * 1e9)
    cacheable = rec["status"] != State.RUNNING and all(d[1] < racy for d in deps)
    return rec, (deps if cacheable else None), liveness, None


def load_records(root: str | Path, cache: bool = True) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """(one record per readable run under ``root``, [(dir, error)] for unreadable ones), in name order.

    With ``cache``, reuse and refresh ``<root>/.runsync/index/runs.json`` (see
    the module docstring); the result is the same with or without it.
    """
    root = Path(root)
    try:
        names = sorted(n for n in os.listdir(root) if not n.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    index_path = root / INDEX_PATH
    old = _read_index(index_path) if cache else {}
    new: dict[str, Any] = {}
    out: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    todo: list[str] = []
    for name in names:
        d = root / name
        entry = old.get(name)
        if entry is not None:
            try:
                ok = _deps_unchanged(d, entry["deps"])
                rec = entry["record"]
                liveness = bool(entry["liveness"])
            except (KeyError, TypeError, ValueError):
                ok = False
            if ok:
                if liveness:
                    try:
                        state = run_state_now(d)
                    except (FormatError, OSError, ValueError):
                        state = State.RUNNING  # let the rebuild report it
                    if state == State.RUNNING:
                        todo.append(name)
                        continue
                    rec = dict(rec, status=state)
                rec["path"] = str(d)
                out[name] = rec
                new[name] = entry
                continue
        if os.path.isfile(os.path.join(d, RUN_JSON)):
            todo.append(name)
    if len(todo) >= _PARALLEL_MIN:
        chunks = [todo[i:i + _CHUNK] for i in range(0, len(todo), _CHUNK)]
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            built = [b for chunk in pool.map(lambda c: [_build(root / n) for n in c], chunks) for b in chunk]
    else:
        built = [_build(root / n) for n in todo]
    for name, (rec, deps, liveness, err) in zip(todo, built):
        if rec is None:
            errors[name] = err or "unreadable"
            continue
        out[name] = rec
        if deps is not None:
            new[name] = {"deps": deps, "liveness": liveness, "record": rec}  # "path" is replaced on use
    if cache and (new.keys() != old.keys() or any(new[k] is not old.get(k) for k in new)):
        _write_index(index_path, new)
    records = [out[n] for n in names if n in out]
    return records, [(root / n, errors[n]) for n in names if n in errors]
