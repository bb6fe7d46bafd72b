"""What ``runsync ui`` serves: the runs under a directory or a remote, kept current, read per chart.

The page is the report's (``report.js``); instead of one inlined blob it asks
for an *index* (the runs table: each run's record, the keys there are to
chart) and then, per chart, for that key's series of the runs it draws. A
:class:`RunStore` keeps both in memory:

- ``scan()`` (every few seconds, on a worker thread) lists the run directories
  and takes one stat per file of each (spec §9.3, watching runs: run.json, the
  run directory's entries, every file of every stream — WAL segments grow while
  a run trains). A run whose stats did not change keeps its record and its
  data; a changed one gets a new *run version* ``rv`` and is re-read on the
  next request. A running run's record is rebuilt every pass (its state
  depends on its heartbeat, spec §7.3).
- ``data(id)`` reads a run once per version with ``build.read_run`` — the
  report's own reader, downsampled the same way — and keeps the result; a
  finished run is therefore read once, a live one once per change. What the
  index needs of a run (its keys, its problems) is kept for every run; the
  series of at most ``max_runs_in_memory`` runs (the most recently used) are,
  so memory stays bounded with any number of runs (an evicted run is read
  again when a chart asks for it).
- a remote (``s3://…``) is read through the verified cache of
  ``runsync.reader.remote``: each scan refreshes the runs' documents, and a run
  is fetched whole (every file checked against its manifest, spec §12) before
  it is read. Nothing is written anywhere else: the runs directory is never
  touched (the listing cache of ``runsync runs`` is not used).

Runs are named only by ids that match the format's run-id pattern (spec §2.1)
and that the last scan found; no path ever comes from a request.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..format.errors import FormatError
from ..format.layout import ID_RE, RUN_JSON, STREAMS_DIR
from ..format.meta import State
from .build import FORMAT, ReportOptions, read_run, run_entry, xkey_order
from .downsample import pick, points_per_series
from .media import MediaBudget, collect_media

__all__ = ["RunStore", "key_block", "run_signature"]


def run_signature(run_dir: Path) -> str:
    """A short hash of the stats of every file a run's page data depends on; changes when the run does (spec §9.3)."""
    h = hashlib.sha256()

    def add(path: str, rel: str) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            h.update(f"{rel}:-\n".encode())
            return False
        h.update(f"{rel}:{st.st_mtime_ns}:{st.st_size}:{st.st_ino}\n".encode())
        return True

    base = str(run_dir)
    try:
        top = sorted(n for n in os.listdir(base) if not n.startswith("."))
    except OSError:
        return "gone"
    add(os.path.join(base, RUN_JSON), RUN_JSON)
    for name in top:
        if name == RUN_JSON:
            continue
        path = os.path.join(base, name)
        add(path, name)
        if name == STREAMS_DIR and os.path.isdir(path):
            for s in sorted(os.listdir(path)):
                sd = os.path.join(path, s)
                if add(sd, f"{name}/{s}") and os.path.isdir(sd):
                    for f in sorted(os.listdir(sd)):
                        add(os.path.join(sd, f), f"{name}/{s}/{f}")
    return h.hexdigest()[:16]


def _undelta(a: list[int]) -> np.ndarray:
    return np.cumsum(np.asarray(a, dtype=np.int64)) if a else np.zeros(0, dtype=np.int64)


def _delta(a: np.ndarray) -> list[int]:
    return np.diff(a, prepend=np.int64(0)).tolist() if len(a) else []


def key_block(block: dict[str, Any], key: str, max_points: int) -> dict[str, Any] | None:
    """The part of a run's history or system ``block`` that one chart needs: ``key``'s series alone.

    Same schema as the block (``runsync.report``): a step table holding only the
    steps this key's points use, the x-axis keys' values there, and the series
    (with its per-stream lines). A series of more than ``max_points`` points is
    downsampled again with ``downsample.pick`` (a chart of many runs gets fewer
    points per run), so every point sent is still a logged one.
    """
    ser = block.get("series", {}).get(key)
    if ser is None:
        return None
    steps = _undelta(block["steps"])
    times = _undelta(block["time"])
    parts = [ser, *ser.get("streams", [])]
    chosen: list[tuple[np.ndarray, np.ndarray | None]] = []
    for part in parts:
        idx = _undelta(part["i"])
        keep = None
        if len(idx) > max_points:
            y = np.array([float(v) for v in part["y"]], dtype=np.float64)  # "NaN"/"Infinity" parse as such
            keep = pick(steps[idx], y, max_points)
        chosen.append((idx, keep))
    used = np.unique(np.concatenate([idx if keep is None else idx[keep] for idx, keep in chosen]))

    def encoded(part: dict[str, Any], idx: np.ndarray, keep: np.ndarray | None) -> dict[str, Any]:
        sel = idx if keep is None else idx[keep]
        ys = part["y"] if keep is None else [part["y"][k] for k in keep.tolist()]
        out: dict[str, Any] = {"i": _delta(np.searchsorted(used, sel)), "y": ys, "n": part["n"]}
        if part.get("f32"):
            out["f32"] = 1
        return out

    main = encoded(ser, *chosen[0])
    if ser.get("streams"):
        main["agg"] = ser.get("agg", "mean")
        main["streams"] = [dict(s=st["s"], **encoded(st, *c)) for st, c in zip(ser["streams"], chosen[1:])]
    ulist = used.tolist()
    xs = {k: {"v": [x["v"][j] for j in ulist], **({"f32": 1} if x.get("f32") else {})}
          for k, x in block.get("x", {}).items()}
    return {"steps": _delta(steps[used]), "time": _delta(times[used]), "x": xs, "series": {key: main}}


@dataclass
class _Run:
    rec: dict[str, Any]
    sig: str
    entry: dict[str, Any]
    data: dict[str, Any] | None = None  # {"history"?, "system"?} of this version, while in memory
    media: dict[str, Any] | None = None
    # What the index shows of the run: {"history", "x", "system", "media", "problems"}; "sig": of which version
    # (a changed run keeps the keys of its previous version until it is read again).
    keys: dict[str, Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class RunStore:
    """The runs of one source, as the served page sees them (see the module docstring)."""

    def __init__(self, source: str, title: str | None = None, options: ReportOptions | None = None,
                 media_bytes_per_run: int = 2_000_000, max_runs_in_memory: int = 256) -> None:
        from ..reader.remote import as_path, is_url

        self.source = source
        self.url = source.rstrip("/") if is_url(source) else None
        self.root = None if self.url else as_path(source)
        self.title = title or f"runsync ui: {self.url or Path(self.root or '.').resolve().name}"
        self.opts = options or ReportOptions()
        self.media_bytes = media_bytes_per_run
        self.max_in_memory = max(1, max_runs_in_memory)
        self._loaded: OrderedDict[str, _Run] = OrderedDict()  # runs whose series are in memory, oldest use first
        self.version = 0  # bumped whenever the index changes
        self._runs: dict[str, _Run] = {}
        self._order: list[str] = []
        self._errors: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._index: dict[str, Any] | None = None

    # ------------------------------------------------------------ scanning
    def _docs_root(self) -> Path:
        if self.url is None:
            assert self.root is not None
            return self.root
        from ..reader.remote import local_root

        return local_root(self.url)  # the runs' documents, fetched into the verified cache

    def scan(self) -> bool:
        """List the runs again; True if anything the page shows changed. Raises RunsyncError for the source."""
        from ..reader.index import build_record
        from ..reader.runs import known_columns, sort_records

        root = self._docs_root()
        if not root.is_dir():
            raise FormatError("no such directory of runs (set RUNSYNC_DIR or pass DIR)", root)
        names = sorted(n for n in os.listdir(root) if not n.startswith(".") and ID_RE.match(n)
                       and os.path.isfile(os.path.join(root, n, RUN_JSON)))
        old = self._runs
        runs: dict[str, _Run] = {}
        errors: list[dict[str, str]] = []
        changed = set(old) != set(names)
        for name in names:
            d = root / name
            sig = run_signature(d)
            prev = old.get(name)
            if prev is not None and prev.sig == sig and prev.rec.get("status") != State.RUNNING:
                runs[name] = prev
                continue
            try:
                rec, _liveness = build_record(d)
            except (FormatError, OSError, ValueError, TypeError, AttributeError, KeyError) as e:
                errors.append({"path": str(d), "error": f"{type(e).__name__}: {e}"})
                continue
            rec["path"] = str(d)
            if prev is not None and prev.sig == sig:
                if rec != prev.rec:  # a running run whose state changed (crashed: its heartbeat stopped)
                    prev.rec, prev.entry = rec, self._entry(rec, sig)
                    changed = True
                runs[name] = prev
                continue
            runs[name] = _Run(rec, sig, self._entry(rec, sig), keys=prev.keys if prev is not None else None)
            changed = True
        records = sort_records([r.rec for r in runs.values()], "-created", known_columns(r.rec for r in runs.values()))
        order = [Path(r["path"]).name for r in records]
        with self._lock:
            changed = changed or errors != self._errors or order != self._order
            self._runs, self._order, self._errors = runs, order, errors
            if changed:
                self.version += 1
                self._index = None
        return changed

    @staticmethod
    def _entry(rec: dict[str, Any], sig: str) -> dict[str, Any]:
        entry = run_entry(rec)
        entry["rv"] = sig
        entry["t0"] = float(rec.get("start") or rec.get("created") or 0.0)
        return entry

    # ------------------------------------------------------------ reading
    def has(self, run_id: str) -> bool:
        return bool(ID_RE.match(run_id)) and run_id in self._runs

    def _open(self, run: _Run) -> Any:
        from ..reader.run import open_run

        if self.url is None:
            return open_run(run.rec["path"])
        from ..reader.remote import fetch_run

        return open_run(fetch_run(f"{self.url}/{Path(run.rec['path']).name}"))

    def data(self, run_id: str) -> tuple[str, dict[str, Any]] | None:
        """(run version, {"history"?, "system"?}) of a run, read once per version (while in memory)."""
        run = self._runs.get(run_id)
        if run is None:
            return None
        with run.lock:
            data = run.data
            if data is None:
                data, keys = self._read(run)
                run.data = data
                fresh = run.keys is None or run.keys != keys
                run.keys = keys
                if fresh:
                    with self._lock:
                        self.version += 1
                        self._index = None
        self._keep(run_id, run)
        return run.sig, data

    def _read(self, run: _Run) -> tuple[dict[str, Any], dict[str, Any]]:
        entry: dict[str, Any] = dict(run.entry)
        problems: list[str] = []
        media: list[str] = []
        try:
            view = self._open(run)
            # each run is read at a one-run report's resolution; a chart of many runs re-picks (series())
            _rows, problems = read_run(view, entry, self.opts, 1)
            keys_fn = getattr(view, "media_keys", None)
            media = sorted(str(k) for k in keys_fn()) if callable(keys_fn) else []
        except Exception as e:  # noqa: BLE001 -- unreadable runs, pyarrow's errors, reader bugs: this run only
            problems = [*problems, f"{type(e).__name__}: {e}"]
        data: dict[str, Any] = {kind: entry[kind] for kind in ("history", "system") if kind in entry}
        keys: dict[str, Any] = {"sig": run.sig, "history": sorted(data.get("history", {}).get("series", {})),
                "x": sorted(data.get("history", {}).get("x", {})),
                "system": sorted(data.get("system", {}).get("series", {})), "media": media, "problems": problems,
                "step_metrics": dict(entry.get("step_metrics", {}))}  # define_metric's x-axes (spec §3.2)
        return data, keys

    def _keep(self, run_id: str, run: _Run) -> None:
        """Mark a run's series as just used; drop those of the least recently used beyond the limit."""
        with self._lock:
            self._loaded[run_id] = run
            self._loaded.move_to_end(run_id)
            while len(self._loaded) > self.max_in_memory:
                _rid, old = self._loaded.popitem(last=False)
                old.data = None
                old.media = None

    def series(self, kind: str, key: str, run_ids: list[str]) -> dict[str, Any]:
        """{run id: {"rv", "block"}} — ``key``'s chart data of each run (block None if it did not log it)."""
        got = [(rid, self.data(rid)) for rid in run_ids]
        per = points_per_series(self.opts.max_points, self.opts.budget, len(run_ids), 1)
        out: dict[str, Any] = {}
        for rid, d in got:
            if d is None:
                continue
            rv, data = d
            block = data.get(kind)
            out[rid] = {"rv": rv, "block": key_block(block, key, per) if block else None}
        return out

    def media(self, run_id: str) -> tuple[str, dict[str, Any]] | None:
        """(run version, {key: [item]}) of a run's media, encoded as the report embeds them."""
        run = self._runs.get(run_id)
        if run is None:
            return None
        self._keep(run_id, run)
        with run.lock:
            if run.media is None:
                items: dict[str, Any] = {}
                try:
                    items, _problems = collect_media(self._open(run), self.opts.media, MediaBudget(self.media_bytes))
                except Exception:  # noqa: BLE001 -- media that cannot be read are not shown; the run still is
                    items = {}
                run.media = items
            return run.sig, run.media

    def pending(self) -> list[str]:
        """Ids of listed runs whose keys are not known at their current version, newest first."""
        runs = self._runs
        return [rid for rid in self._order if rid in runs and (runs[rid].keys or {}).get("sig") != runs[rid].sig]

    # ------------------------------------------------------------ the index
    def index(self) -> dict[str, Any]:
        """The page's data without the series (schema: ``runsync.report``, plus ``v``, ``pending``, ``rv``)."""
        with self._lock:
            if self._index is not None:
                return self._index
            runs, order, version = self._runs, list(self._order), self.version
            errors = list(self._errors)
        hist: set[str] = set()
        system: set[str] = set()
        media: set[str] = set()
        xkeys: dict[str, int] = {}
        key_axes: dict[str, set[str | None]] = {}  # history key → the step_metric of each run that logged it
        entries = []
        pending = 0
        for rid in order:
            run = runs[rid]
            entries.append(run.entry)
            keys = run.keys
            if keys is None or keys["sig"] != run.sig:
                pending += 1
            if keys is None:
                continue
            hist.update(keys["history"])
            for k in keys["history"]:
                key_axes.setdefault(k, set()).add(keys.get("step_metrics", {}).get(k))
            for k in keys["x"]:
                xkeys[k] = xkeys.get(k, 0) + 1
            system.update(keys["system"])
            media.update(keys["media"])
            errors.extend({"path": run.rec["path"], "error": p} for p in keys["problems"])
        index = {
            "format": FORMAT, "v": version, "title": self.title, "generated": time.time(),
            "source": self.url or str(self.root),
            "options": {"max_points": self.opts.max_points, "budget": self.opts.budget},
            "runs": entries, "keys": sorted(hist), "xkeys": xkey_order(xkeys), "system_keys": sorted(system),
            "media_keys": sorted(media), "media_omitted": 0, "errors": errors, "pending": pending,
            # as the static report: the default x-axis of a key whose runs all plot it against one step_metric
            "step_metrics": {k: next(iter(a)) for k, a in sorted(key_axes.items()) if len(a) == 1 and None not in a},
        }
        with self._lock:
            if self.version == version:
                self._index = index
        return index
