"""Scalar smoothing as TensorBoard draws it: a debiased exponential moving average."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["smooth"]


def smooth(values: Iterable[float], weight: float = 0.6) -> list[float]:
    """Debiased EMA with ``weight`` in [0, 1); non-finite values pass through unsmoothed.

    Matches TensorBoard's scalar dashboard: ``last = last*w + (1-w)*v`` and the
    output ``last / (1 - w**n)``, n counting the finite values so far; a constant
    series is returned unchanged.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if weight == 0.0 or (finite and all(v == finite[0] for v in finite)):
        return vals
    out: list[float] = []
    last = 0.0
    n = 0
    for v in vals:
        if not math.isfinite(v):
            out.append(v)
            continue
        last = last * weight + (1.0 - weight) * v
        n += 1
        out.append(last / (1.0 - weight**n))
    return out
