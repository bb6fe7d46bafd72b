"""Downsampling a logged series for drawing: pick real points, keep the extremes.

A report overlays many runs of up to millions of steps; drawing every point is
slow and makes the file huge, while averaging buckets would show values nobody
logged and hide spikes. So the step range is cut into equal-width buckets and
each bucket keeps its first, last, smallest and largest point (and its first
non-finite one, so a NaN stays visible as a gap). Every kept point is a logged
(step, value) pair; a series with at most ``max_points`` points is kept whole.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pick", "points_per_series"]


def pick(steps: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices of the points to draw from one series sorted by step.

    Buckets are equal-width in *step*, not in index, so series logged at the
    same steps (one ``log()`` call) get the same bucket edges and share most of
    their kept steps. At most about ``max_points`` indices are returned (four
    per bucket, plus one per bucket that holds a non-finite value).
    """
    n = len(steps)
    if n <= max(max_points, 4):
        return np.arange(n, dtype=np.int64)
    buckets = max(1, max_points // 4)
    s = steps.astype(np.float64)
    span = s[-1] - s[0]
    if span <= 0:
        b = np.zeros(n, dtype=np.int64)
    else:
        b = np.minimum(((s - s[0]) / span * buckets).astype(np.int64), buckets - 1)
    starts = np.flatnonzero(np.diff(b, prepend=-1))
    ends = np.append(starts[1:], n) - 1
    finite = np.isfinite(values)
    lo = np.where(finite, values, np.inf)
    hi = np.where(finite, values, -np.inf)
    # Within a bucket, lexsort by value keeps rows grouped (b is non-decreasing), so the first
    # row of each group in the sorted order is that bucket's argmin (argmax for the negation).
    argmin = np.lexsort((lo, b))[starts]
    argmax = np.lexsort((-hi, b))[starts]
    chosen = [starts, ends, argmin, argmax]
    bad = np.flatnonzero(~finite)
    if len(bad):
        _u, first = np.unique(b[bad], return_index=True)
        chosen.append(bad[first])
    return np.unique(np.concatenate(chosen)).astype(np.int64)


def points_per_series(max_points: int, budget: int, runs: int, series: int, floor: int = 200) -> int:
    """Points per series for one run: ``max_points``, less when the whole report would exceed ``budget``.

    ``budget`` is the number of drawn points the report aims at in total, shared
    evenly by the ``runs`` runs and, within a run, by its ``series`` series; no
    series gets fewer than ``floor`` (a chart needs some shape) unless it has fewer.
    """
    share = budget // max(1, runs) // max(1, series)
    return max(min(max_points, share), min(floor, max_points))
