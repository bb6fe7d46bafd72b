"""The report's data: runs chosen from a directory, their series downsampled for drawing.

``collect()`` returns one JSON-ready dict (schema in ``runsync/report/__init__.py``)
that ``html.render`` embeds. Runs are read one at a time, so memory stays
bounded by the largest run, and each run is reduced to a few thousand real
points per key before the next is read.

Encoding, chosen so 100 runs × 1M steps stay a few MB of plain JSON:

- each run has one *step table* — the sorted steps any of its drawn points
  use, with the wall time of each (ms after the run's start) and the values of
  its x-axis keys there — and every series refers to it by index. Steps, times
  and indices are delta-encoded integers.
- values are JSON numbers: integers as such; a series whose values are all
  exactly float32 (most metrics, from float32 tensors) is written with float32's
  shortest digits and flagged ``f32`` (the page applies ``Math.fround``, which
  restores the exact logged float64); anything else with float64's shortest
  round-trip digits. NaN and ±inf are the strings "NaN", "Infinity", "-Infinity".
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..format.errors import FormatError, RunsyncError
from ..format.layout import stream_order
from ..format.values import ValueType
from ..reader.metrics import metric_definitions, step_metrics
from ..reader.streams import reduce_series
from .downsample import pick, points_per_series
from .media import MediaBudget, MediaLimits, collect_media

__all__ = ["FORMAT", "ReportOptions", "RunDone", "collect", "encode_values", "read_run", "run_entry", "select_runs",
           "series_block", "xkey_order"]

FORMAT = 1  # version of the report's data JSON; bump on an incompatible change

_NUMERIC = np.array([ValueType.FLOAT, ValueType.INT, ValueType.BOOL], dtype=np.int8)
# Keys whose name says "I am a position in training": preferred as x-axes when a run has many monotone keys.
_AXIS_NAME = re.compile(r"epoch|token|sample|example|step|iter|seen|time|flop|images|batch", re.IGNORECASE)
_BASE_FIELDS = ("id", "name", "project", "group", "job_type", "tags", "status", "created", "start", "duration",
                "steps", "streams", "error", "path")


@dataclass(frozen=True)
class ReportOptions:
    """Limits that keep a report small and fast to open."""

    max_points: int = 2000  # drawn points per series at most
    budget: int = 400_000  # drawn points in the whole report, shared by runs, then by their series
    max_x_keys: int = 8  # x-axis keys (monotone numeric keys such as epoch) kept per run
    media_bytes: int = 8_000_000  # bytes of embedded media in the whole report
    media: MediaLimits = field(default_factory=MediaLimits)


@dataclass(frozen=True)
class RunDone:
    """What the progress callback hears after each run."""

    done: int
    total: int
    id: str
    name: str
    seconds: float
    rows: int
    keys: int
    error: str | None = None


def _jsonable(v: Any) -> Any:
    """Config and summary values as strict JSON (non-finite floats as strings, unknown objects as str)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return _jsonable(v.item())
    return str(v)


def encode_values(v: np.ndarray) -> tuple[list[Any], bool]:
    """(JSON list, is_f32) for float64 values; see the module docstring."""
    v = np.asarray(v, dtype=np.float64)
    finite = np.isfinite(v)
    fin = v[finite]
    integral = np.zeros(len(v), dtype=bool)
    integral[finite] = (np.floor(fin) == fin) & (np.abs(fin) < 2.0**53)
    frac = finite & ~integral
    is32 = False
    short: list[str] = []
    if frac.any():
        f32 = v[frac].astype(np.float32)
        if np.array_equal(f32.astype(np.float64), v[frac]):
            short = f32.astype(str).tolist()
            # The page parses the digits to a double and rounds that to float32: check it gets f32 back.
            is32 = np.array_equal(np.array([float(s) for s in short], dtype=np.float64).astype(np.float32), f32)
    out: list[Any] = []
    fr = iter(short) if is32 else None
    for x, ok, whole in zip(v.tolist(), finite.tolist(), integral.tolist()):
        if not ok:
            out.append("NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity"))
        elif whole:
            out.append(int(x))
        elif fr is not None:
            out.append(float(next(fr)))
        else:
            out.append(x)
    return out, is32


def _delta(a: np.ndarray) -> list[int]:
    a = np.asarray(a, dtype=np.int64)
    return np.diff(a, prepend=np.int64(0)).tolist() if len(a) else []


def _axis_candidates(by_key: dict[str, tuple[np.ndarray, np.ndarray]], limit: int,
                     wanted: tuple[str, ...] = ()) -> list[str]:
    """Keys usable as an x-axis: finite, never decreasing with step, not constant (epoch, tokens_seen, ...).

    ``wanted`` (the run's ``step_metric`` keys, spec §3.2) are kept beyond ``limit`` when usable."""
    out = []
    for k, (_s, v) in by_key.items():
        if len(v) >= 2 and np.all(np.isfinite(v)) and v[-1] > v[0] and np.all(np.diff(v) >= 0):
            out.append(k)
    out.sort(key=lambda k: (_AXIS_NAME.search(k) is None, k))
    return out[:limit] + [k for k in out[limit:] if k in wanted]


def series_block(table: pa.Table, t0: float, points: int, budget: int, runs: int,
                 max_x_keys: int = 0, by_stream: bool = False, axes: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """One run's resolved long table (history or system) → its step table and downsampled series.

    ``t0`` is the run's start (Unix seconds); ``points``/``budget``/``runs``
    set the points per series (``points_per_series``). Only numeric rows
    (FLOAT, INT, BOOL as 0/1) are drawn. None when nothing numeric is logged.
    ``by_stream``: rows are resolved per stream (system metrics: each process
    samples its own host), so when there are several streams each key becomes
    one series per stream, named ``key@stream``. Otherwise (history) a key
    several streams logged (ranks, spec §4.5) is one series holding the mean
    over the streams per step, with ``streams``: one series per stream, in
    reader order, which the page draws as one line each. ``axes``: keys to keep
    as x-axes when usable.
    """
    if table.num_rows == 0:
        return None
    keep = np.isin(table.column("type").to_numpy(), _NUMERIC)
    if not keep.any():
        return None
    tbl = table.filter(pa.array(keep))
    steps = tbl.column("step").to_numpy().astype(np.int64)
    times = tbl.column("time").cast(pa.int64()).to_numpy().astype(np.int64)
    values = tbl.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    keycol = tbl.column("key").combine_chunks()
    has_streams = "stream" in tbl.column_names and len(pc.unique(tbl.column("stream"))) > 1
    if by_stream and has_streams:
        keycol = pc.binary_join_element_wise(keycol, tbl.column("stream").combine_chunks(), "@")
    elif has_streams:  # group by (key, stream); \x00 cannot occur in a key (spec §5.1)
        keycol = pc.binary_join_element_wise(keycol, tbl.column("stream").combine_chunks(), "\x00")
    keycol = keycol.dictionary_encode()
    codes = keycol.indices.to_numpy()
    names = keycol.dictionary.to_pylist()
    order = np.lexsort((steps, codes))
    codes_s = codes[order]
    bounds = np.flatnonzero(np.diff(codes_s)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(codes_s)]])
    groups: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for a, b in zip(starts.tolist(), ends.tolist()):
        rows = order[a:b]
        key, _sep, stream = names[int(codes_s[a])].partition("\x00")
        groups.setdefault(key, {})[stream] = (steps[rows], values[rows])
    by_key: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    lines: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}  # key -> per-stream series, reader order
    for key, per in groups.items():
        if len(per) == 1:
            by_key[key] = next(iter(per.values()))
        else:
            by_key[key] = reduce_series(per, "mean")
            lines[key] = [(st, *per[st]) for st in sorted(per, key=stream_order)]
    per_series = points_per_series(points, budget, runs, len(by_key) + sum(len(v) for v in lines.values()))
    picks = {k: pick(s, v, per_series) for k, (s, v) in by_key.items()}
    line_picks = {k: [pick(s, v, per_series) for _st, s, v in ls] for k, ls in lines.items()}
    used = np.unique(np.concatenate([by_key[k][0][i] for k, i in picks.items()]
                                    + [s[i] for k, ls in lines.items() for (_st, s, _v), i in zip(ls, line_picks[k])]))
    # Time of a step: the latest time among its rows (as the wide form's `time` column, spec §4.6).
    so = np.argsort(steps, kind="stable")
    ss, ts = steps[so], times[so]
    first = np.flatnonzero(np.diff(ss, prepend=ss[0] - 1))
    tmax = np.maximum.reduceat(ts, first)
    t_used = tmax[np.searchsorted(ss[first], used)]
    t0_us = round(t0 * 1e6)
    rel_ms = np.round((t_used - t0_us) / 1000.0).astype(np.int64)

    def encoded(s: np.ndarray, v: np.ndarray, i: np.ndarray) -> dict[str, Any]:
        ys, f32 = encode_values(v[i])
        entry: dict[str, Any] = {"i": _delta(np.searchsorted(used, s[i])), "y": ys, "n": len(s)}
        if f32:
            entry["f32"] = 1
        return entry

    series: dict[str, Any] = {}
    for k in sorted(by_key):
        s, v = by_key[k]
        series[k] = encoded(s, v, picks[k])
        if k in lines:
            series[k]["agg"] = "mean"
            series[k]["streams"] = [dict(s=st, **encoded(ls, lv, i))
                                    for (st, ls, lv), i in zip(lines[k], line_picks[k])]
    xs: dict[str, Any] = {}
    for k in _axis_candidates(by_key, max_x_keys, axes):
        s, v = by_key[k]
        j = np.searchsorted(s, used, side="right") - 1  # the key's value at that step, else its latest before
        vals, f32 = encode_values(v[np.maximum(j, 0)])
        for n in np.flatnonzero(j < 0).tolist():
            vals[n] = None
        xs[k] = {"v": vals, **({"f32": 1} if f32 else {})}
    return {"steps": _delta(used), "time": _delta(rel_ms), "x": xs, "series": series}


def select_runs(root: str | Path, refs: list[str] | None = None, where: str | None = None
                ) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """(records of the chosen runs, newest first; unreadable run dirs) — as ``runsync runs`` lists them.

    ``refs`` are run ids or names (each must name a run); ``where`` is the
    ``--where`` language of ``runsync runs`` (``runsync.reader.query``), e.g.
    ``status = finished and config.lr < 1e-3`` (QueryError if it is not).
    """
    from ..reader.runs import compile_where, select_records

    root = Path(root)
    if not root.is_dir():
        raise FormatError("no such directory of runs (set RUNSYNC_DIR or pass DIR)", root)
    records, errors, _known = select_records(root)
    query = compile_where(where, records) if where and where.strip() else None
    if refs:
        chosen: list[dict[str, Any]] = []
        for ref in refs:
            hits = [r for r in records if ref in (r["id"], r["name"], Path(r["path"]).name)]
            if not hits:
                raise RunsyncError(f"no run {ref!r} under {root}")
            chosen.extend(h for h in hits if h not in chosen)
        order = {id(r): i for i, r in enumerate(records)}
        records = sorted(chosen, key=lambda r: order[id(r)])
    if query is not None:
        records = query.filter(records)
    return records, errors


def run_entry(rec: dict[str, Any]) -> dict[str, Any]:
    """A run's record (``runsync runs``) as the report's run entry, without its data blocks."""
    out = {k: _jsonable(rec.get(k)) for k in _BASE_FIELDS}
    out["config"] = {k[7:]: _jsonable(v) for k, v in rec.items() if k.startswith("config.")}
    out["summary"] = {k[8:]: _jsonable(v) for k, v in rec.items() if k.startswith("summary.")}
    if rec.get("summary_from"):  # summary keys whose streams' values differ -> the stream shown (spec §3.3)
        out["summary_from"] = dict(rec["summary_from"])
    return out


def _system_table(view: Any) -> tuple[pa.Table | None, str | None]:
    """(the run's system metrics as a long Arrow table, or None; a problem reading them, or None).

    Readers without ``RunView.system`` and runs without system metrics give
    (None, None); trouble in the system table costs that section, not the run.
    """
    fn = getattr(view, "system", None)
    if not callable(fn):
        return None, None
    try:
        table = fn(keys=None, wide=False, format="arrow")
    except Exception as e:  # noqa: BLE001 -- reported with the run; history and media are still shown
        return None, f"system metrics: {type(e).__name__}: {e}"
    return (table if table is not None and table.num_rows else None), None


def read_run(view: Any, entry: dict[str, Any], opts: ReportOptions, runs: int) -> tuple[int, list[str]]:
    """Add one run's ``t0``, ``history`` and ``system`` blocks to its ``entry``; (history rows, problems).

    The one reader of a run's series for the page, whether inlined by
    ``collect`` or served by ``runsync ui`` (``serve.py``). ``runs`` is the number
    of runs sharing ``opts.budget``. Raises what the reader raises for an
    unreadable run; trouble in system metrics alone is a problem, not an error.
    """
    problems: list[str] = []
    t0 = float(entry.get("start") or entry.get("created") or 0.0)
    entry["t0"] = t0
    hist = view.history(wide=False, format="arrow")
    rows = int(hist.num_rows)
    layout = getattr(view, "layout", None)
    defs = metric_definitions(layout.dir) if layout is not None else {}
    wanted = tuple(sorted({d["step_metric"] for d in defs.values()
                           if isinstance(d, dict) and isinstance(d.get("step_metric"), str)}))
    block = series_block(hist, t0, opts.max_points, opts.budget, runs, opts.max_x_keys, axes=wanted)
    del hist
    if block is not None:
        entry["history"] = block
        # each key's step_metric (define_metric, spec §3.2) that this run can plot it against
        entry["step_metrics"] = {k: v for k, v in step_metrics(defs, list(block["series"])).items()
                                 if v in block["x"]}
    system, problem = _system_table(view)
    if problem:
        problems.append(problem)
    if system is not None:
        sblock = series_block(system, t0, opts.max_points, opts.budget, runs, by_stream=True)
        if sblock is not None:
            entry["system"] = sblock
    return rows, problems


def xkey_order(counts: dict[str, int]) -> list[str]:
    """X-axis keys, those named like a position in training first, then by how many runs have them."""
    return sorted(counts, key=lambda k: (_AXIS_NAME.search(k) is None, -counts[k], k))


def collect(root: str | Path, refs: list[str] | None = None, where: str | None = None,
            options: ReportOptions | None = None, title: str | None = None,
            progress: Callable[[RunDone], None] | None = None,
            opener: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Read the chosen runs under ``root`` and return the report data (see ``runsync.report``).

    ``opener(path)`` opens one run (default ``runsync.open_run``); anything with
    the RunView methods used here will do (``history``, optionally ``system``,
    ``media_keys`` and ``media``).
    """
    from ..reader.run import open_run

    opener = opener or open_run
    opts = options or ReportOptions()
    records, unreadable = select_runs(root, refs, where)
    n = len(records)
    budget = MediaBudget(opts.media_bytes)
    errors = [{"path": str(p), "error": e} for p, e in unreadable]
    runs: list[dict[str, Any]] = []
    hist_keys: set[str] = set()
    sys_keys: set[str] = set()
    x_keys: dict[str, int] = {}
    media_keys: set[str] = set()
    key_axes: dict[str, set[str | None]] = {}  # history key → the step_metric of each run that logged it
    for done, rec in enumerate(records, 1):
        t = time.monotonic()
        entry = run_entry(rec)
        rows = 0
        err = None
        try:
            view = opener(rec["path"])
            rows, problems = read_run(view, entry, opts, n)
            errors.extend({"path": rec["path"], "error": p} for p in problems)
            hist_keys.update(entry.get("history", {}).get("series", {}))
            for k in entry.get("history", {}).get("x", {}):
                x_keys[k] = x_keys.get(k, 0) + 1
            sm = entry.pop("step_metrics", {})
            for k in entry.get("history", {}).get("series", {}):
                key_axes.setdefault(k, set()).add(sm.get(k))
            sys_keys.update(entry.get("system", {}).get("series", {}))
            # Each run may use its share of the media budget plus whatever earlier runs left.
            granted = budget.left // max(1, n - done + 1)
            share = MediaBudget(granted)
            media, problems = collect_media(view, opts.media, share)
            budget.left -= granted - share.left
            budget.omitted += share.omitted
            if media:
                entry["media"] = media
                media_keys.update(media)
            errors.extend({"path": rec["path"], "error": p} for p in problems)
        except (RunsyncError, OSError, ValueError, pa.ArrowException) as e:
            err = f"{type(e).__name__}: {e}"
            errors.append({"path": rec["path"], "error": err})
        runs.append(entry)
        if progress is not None:
            progress(RunDone(done, n, rec["id"], rec["name"], time.monotonic() - t, rows,
                             len(entry.get("history", {}).get("series", {})), err))
    return {
        "format": FORMAT,
        "title": title or f"runsync report: {Path(root).resolve().name}",
        "generated": time.time(),
        "source": str(root),
        "options": {"max_points": opts.max_points, "budget": opts.budget, "media_per_key": opts.media.per_key,
                    "media_bytes": opts.media_bytes, "image_side": opts.media.image_side},
        "runs": runs,
        "keys": sorted(hist_keys),
        "xkeys": xkey_order(x_keys),
        # the default x-axis of a key whose runs all plot it against the same step_metric (spec §3.2)
        "step_metrics": {k: next(iter(a)) for k, a in sorted(key_axes.items()) if len(a) == 1 and None not in a},
        "system_keys": sorted(sys_keys),
        "media_keys": sorted(media_keys),
        "media_omitted": budget.omitted,
        "errors": errors,
    }
