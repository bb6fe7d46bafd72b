"""Synthetic regression data for the W&B-style training script."""

from __future__ import annotations

import numpy as np


def make_data(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    true_w = np.linspace(-1.0, 1.0, dim)
    y = x @ true_w + 0.01 * rng.normal(size=n)
    return x, y, true_w


def batches(x: np.ndarray, y: np.ndarray, size: int):  # type: ignore[no-untyped-def]
    for i in range(0, len(x), size):
        yield x[i : i + size], y[i : i + size]
