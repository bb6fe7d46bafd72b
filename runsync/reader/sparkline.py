"""Sparklines: a metric's whole history in one line of ▁▂▃▄▅▆▇█ (``runsync show``, ``runsync watch``).

A series longer than the line is cut into buckets and each bucket keeps its
minimum and its maximum, in the order they occurred, so a spike or a divergence
stays visible however long the run (plain striding or averaging would hide it).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["BARS", "Line", "Spark", "choose_keys", "downsample", "format_sparks", "numeric_lines", "numeric_series",
           "spark", "sparkline"]

BARS = "▁▂▃▄▅▆▇█"
WIDTH = 40
MAX_KEYS = 8
_NUMERIC = (1, 2)  # FLOAT, INT (spec §5.2); BOOL and STRING are not drawn


def downsample(values: Sequence[float] | np.ndarray, width: int = WIDTH) -> np.ndarray:
    """At most ``width`` points: unchanged if short enough, else per bucket its min and max in time order.

    NaNs are ignored within a bucket (a bucket of only NaNs gives NaN).
    """
    v = np.asarray(values, dtype=float)
    if len(v) <= width:
        return v
    nb = max(1, width // 2)
    edges = np.linspace(0, len(v), nb + 1).astype(int)
    out: list[float] = []
    for a, b in itertools.pairwise(edges):
        chunk = v[a:b]
        ok = ~np.isnan(chunk)
        if not ok.any():
            out.extend([math.nan, math.nan])
            continue
        idx = np.nonzero(ok)[0]
        lo = idx[np.argmin(chunk[idx])]
        hi = idx[np.argmax(chunk[idx])]
        out.extend([chunk[lo], chunk[hi]] if lo <= hi else [chunk[hi], chunk[lo]])
    return np.asarray(out[:width], dtype=float)


def sparkline(values: Sequence[float] | np.ndarray, width: int = WIDTH) -> str:
    """One character per (downsampled) point, scaled between the finite min and max.

    NaN is a space; +inf the top bar, -inf the bottom one; a constant series is all ▁.
    """
    v = downsample(values, width)
    finite = v[np.isfinite(v)]
    if len(finite) == 0:
        return "".join("█" if x == math.inf else "▁" if x == -math.inf else " " for x in v)
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo
    out = []
    top = len(BARS) - 1
    for x in v:
        if math.isnan(x):
            out.append(" ")
        elif x == math.inf:
            out.append(BARS[top])
        elif x == -math.inf or span == 0:
            out.append(BARS[0])
        else:
            out.append(BARS[min(top, max(0, int((x - lo) / span * top + 0.5)))])
    return "".join(out)


@dataclass(frozen=True)
class Spark:
    """One metric: its line and the numbers printed next to it."""

    key: str
    line: str
    first: float
    last: float
    min: float
    max: float
    points: int
    first_step: int
    last_step: int


def spark(key: str, steps: Sequence[int] | np.ndarray, values: Sequence[float] | np.ndarray,
          width: int = WIDTH) -> Spark:
    v = np.asarray(values, dtype=float)
    s = np.asarray(steps)
    finite = v[~np.isnan(v)]
    return Spark(
        key=key,
        line=sparkline(v, width),
        first=float(v[0]) if len(v) else math.nan,
        last=float(v[-1]) if len(v) else math.nan,
        min=float(finite.min()) if len(finite) else math.nan,
        max=float(finite.max()) if len(finite) else math.nan,
        points=len(v),
        first_step=int(s[0]) if len(s) else -1,
        last_step=int(s[-1]) if len(s) else -1,
    )


Line = tuple[str, np.ndarray, np.ndarray]  # (label, steps, values)


def numeric_lines(resolved: pa.Table, keys: Iterable[str] | None = None, reduce: str | None = None
                  ) -> dict[str, list[Line]]:
    """Per numeric key (FLOAT or INT rows) of a resolved long table, its lines to draw, by step.

    ``resolved`` is what ``history.resolve`` returns (one row per stream, step
    and key). A key one stream logged is one line labelled ``key``. A key
    several streams logged is one line per stream in reader order, labelled
    ``key [rank3]`` (spec §4.5: the streams' values are all kept), or with
    ``reduce`` ("mean", "min", "max") one line ``key (mean of 8 streams)``
    reduced over the streams per step (``reader.streams.reduce_series``).
    """
    from ..format.layout import stream_order
    from .streams import reduce_series

    if resolved.num_rows == 0:
        return {}
    t = resolved.filter(pc.is_in(resolved.column("type"), pa.array(_NUMERIC, pa.int8())))
    if keys is not None:
        t = t.filter(pc.is_in(t.column("key"), pa.array(list(keys), pa.string())))
    if t.num_rows == 0:
        return {}
    t = t.select(["key", "stream", "step", "value"]).sort_by([("key", "ascending"), ("stream", "ascending"),
                                                              ("step", "ascending")])
    group = pc.binary_join_element_wise(t.column("key"), t.column("stream"), "\x00").combine_chunks()
    steps = t.column("step").to_numpy()
    values = t.column("value").to_numpy(zero_copy_only=False).astype(float)
    per: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    enc = group.dictionary_encode()
    idx = np.asarray(enc.indices)
    names = enc.dictionary.to_pylist()
    bounds = np.nonzero(np.diff(idx))[0] + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(idx)]])
    for a, b in zip(starts, ends):
        key, stream = names[idx[a]].split("\x00")
        per.setdefault(key, {})[stream] = (steps[a:b], values[a:b])
    out: dict[str, list[Line]] = {}
    for key, by_stream in per.items():
        if len(by_stream) == 1:
            (s, v), = by_stream.values()
            out[key] = [(key, s, v)]
        elif reduce is not None:
            s, v = reduce_series(by_stream, reduce)
            out[key] = [(f"{key} ({reduce} of {len(by_stream)} streams)", s, v)]
        else:
            out[key] = [(f"{key} [{st}]", *by_stream[st]) for st in sorted(by_stream, key=stream_order)]
    return out


def numeric_series(resolved: pa.Table, keys: Iterable[str] | None = None,
                   reduce: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`numeric_lines` flattened: line label → (steps, values)."""
    return {label: (s, v) for lines in numeric_lines(resolved, keys, reduce).values() for label, s, v in lines}


def choose_keys(points: Mapping[str, int], summary: Mapping[str, Any] | None = None,
                limit: int = MAX_KEYS) -> list[str]:
    """The main metrics among numeric keys (``points``: key → number of points), at most ``limit``.

    Keys in the summary come first, then the others; within each, keys logged
    more often first (the per-step metrics rather than one-off values), then by name.
    """
    summ = summary or {}
    return sorted(points, key=lambda k: (k not in summ, -points[k], k))[:limit]


def _num(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    return f"{x:.4g}"


def format_sparks(sparks: list[Spark], indent: str = "  ") -> list[str]:
    """Aligned lines: ``key  ▁▂▄█  first → last   min …  max …``."""
    if not sparks:
        return []
    kw = max(len(s.key) for s in sparks)
    lw = max(len(s.line) for s in sparks)
    trend = [f"{_num(s.first)} → {_num(s.last)}" for s in sparks]
    tw = max(len(t) for t in trend)
    lines = []
    for s, t in zip(sparks, trend):
        steps = f"steps {s.first_step}–{s.last_step}" if s.points > 1 else f"step {s.last_step}"
        lines.append(f"{indent}{s.key.ljust(kw)}  {s.line.ljust(lw)}  {t.ljust(tw)}   min {_num(s.min)}  "
                     f"max {_num(s.max)}  ({s.points} points, {steps})")
    return lines
