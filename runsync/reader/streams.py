"""Several streams (ranks) in one run, as the reader shows them (spec §3.3, §4.5, §4.6, since 1.3).

Values that different streams logged for one key at one step are different
measurements, so the reader keeps them side by side: ``history()`` of a run
with several streams has one row per (stream, step). This module holds the
conveniences on top: choosing streams, reducing over them (mean, min, max per
step), and picking the one value a run shows for a key (the summary rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..format.layout import stream_order

__all__ = ["REDUCTIONS", "check_streams", "first_by_stream", "reduce_over_streams", "reduce_series",
           "select_streams", "shares_keys", "values_differ"]

REDUCTIONS = ("mean", "min", "max")


def check_streams(wanted: Iterable[str], known: Iterable[str], run: str) -> list[str]:
    """``wanted`` as a list, or ValueError naming the run and its streams if one is not a stream of it."""
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    have = sorted(set(known), key=stream_order)
    missing = [s for s in wanted if s not in have]
    if missing:
        raise ValueError(f"run {run} has no stream {', '.join(map(repr, missing))}; its streams are: "
                         f"{', '.join(have) or '(none)'}")
    return wanted


def select_streams(rows: pa.Table, streams: list[str] | None) -> pa.Table:
    """The rows of the given streams (all rows if ``streams`` is None)."""
    if streams is None:
        return rows
    return rows.filter(pc.is_in(rows.column("stream"), pa.array(streams, pa.string())))


def shares_keys(rows: pa.Table) -> bool:
    """Does some key have rows of more than one stream? Then the wide form is per (stream, step) (§4.6)."""
    if rows.num_rows == 0:
        return False
    pairs = rows.select(["key", "stream"]).group_by(["key", "stream"]).aggregate([])
    return pairs.num_rows > len(pc.unique(pairs.column("key")))


def reduce_over_streams(wide: pa.Table, how: str) -> pa.Table:
    """A per-(stream, step) wide table → one row per step, each key reduced over the streams.

    Numeric columns (int64, float64): the ``how`` ("mean", "min" or "max") of
    the streams that have a value at that step; a stream without one (not
    logged, or a NULL row) is left out, a step no stream has is null. A NaN a
    stream logged is a value: it makes that step's mean, min and max NaN (a
    diverged rank is not hidden). "mean" gives float64, "min"/"max" keep the
    column type. Other columns (bool, string) are not reduced: they hold the
    value of the first stream in reader order that has one. ``time`` is the
    latest time of the step.
    """
    if how not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(map(repr, REDUCTIONS))}, got {how!r}")
    steps = wide.column("step").to_numpy()
    uniq, inverse = np.unique(steps, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = len(uniq)
    times = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    if wide.num_rows:
        np.maximum.at(times, inverse, wide.column("time").cast(pa.int64()).to_numpy())
    out: dict[str, pa.Array] = {
        "step": pa.array(uniq, pa.int64()),
        "time": pa.array(times, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    }
    # Rows are in reader stream order within each step (to_wide's order), so a stable
    # order by step keeps it for "first stream with a value".
    for name in wide.column_names:
        if name in ("step", "stream", "time"):
            continue
        col = wide.column(name).combine_chunks()
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        pos = inverse[valid]
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            out[name] = _reduce_numeric(col, valid, pos, n, how)
        else:
            rows = np.flatnonzero(valid)
            got, first = np.unique(pos, return_index=True)
            take = np.full(n, -1, dtype=np.int64)
            take[got] = rows[first]
            out[name] = pc.take(col, pa.array(take, mask=take < 0))
    return pa.table(out)


def _reduce_numeric(col: pa.Array, valid: np.ndarray, pos: np.ndarray, n: int, how: str) -> pa.Array:
    is_int = pa.types.is_integer(col.type) and how != "mean"
    dtype = np.int64 if is_int else np.float64
    vals = col.to_numpy(zero_copy_only=False)[valid].astype(dtype)
    counts = np.bincount(pos, minlength=n)
    if how == "mean":
        acc = np.zeros(n, dtype=np.float64)
        np.add.at(acc, pos, vals)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = acc / np.maximum(counts, 1)
    else:
        info = np.iinfo(np.int64) if is_int else None
        with np.errstate(invalid="ignore"):  # np.minimum/np.maximum propagate NaN, as wanted
            if how == "min":
                acc = np.full(n, info.max if info else np.inf, dtype=dtype)
                np.minimum.at(acc, pos, vals)
            else:
                acc = np.full(n, info.min if info else -np.inf, dtype=dtype)
                np.maximum.at(acc, pos, vals)
    return pa.array(acc, pa.int64() if is_int else pa.float64(), mask=counts == 0)


def reduce_series(per_stream: Mapping[str, tuple[np.ndarray, np.ndarray]], how: str = "mean"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one key per stream → one (steps, values) reduced over streams per step,
    with the rules of :func:`reduce_over_streams` (for ``runsync show``/``watch`` and the report)."""
    if how not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(map(repr, REDUCTIONS))}, got {how!r}")
    parts = list(per_stream.values())
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    steps = np.concatenate([np.asarray(s, dtype=np.int64) for s, _v in parts])
    vals = np.concatenate([np.asarray(v, dtype=np.float64) for _s, v in parts])
    uniq, pos = np.unique(steps, return_inverse=True)
    pos = pos.reshape(-1)
    n = len(uniq)
    with np.errstate(invalid="ignore"):
        if how == "mean":
            acc = np.zeros(n)
            np.add.at(acc, pos, vals)
            acc /= np.bincount(pos, minlength=n)
        elif how == "min":
            acc = np.full(n, np.inf)
            np.minimum.at(acc, pos, vals)
        else:
            acc = np.full(n, -np.inf)
            np.maximum.at(acc, pos, vals)
    return uniq, acc


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN and NaN
    return type(a) is type(b) and a == b


def values_differ(values: Iterable[Any]) -> bool:
    """Do these values (one per stream) differ? NaN equals NaN; 1 and 1.0 and True differ."""
    vals = list(values)
    return any(not _same(vals[0], v) for v in vals[1:])


def first_by_stream(per_stream: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, str]]:
    """{stream: {key: value}} → ({key: value of the first stream in reader order that has the key},
    {key: that stream, for keys whose values differ between streams}) — the rule of spec §3.3."""
    out: dict[str, Any] = {}
    source: dict[str, str] = {}
    seen: dict[str, list[Any]] = {}
    for stream in sorted(per_stream, key=stream_order):
        for k, v in per_stream[stream].items():
            seen.setdefault(k, []).append(v)
            if k not in out:
                out[k] = v
                source[k] = stream
    differ = {k: source[k] for k, vs in seen.items() if len(vs) > 1 and values_differ(vs)}
    return dict(sorted(out.items())), dict(sorted(differ.items()))
