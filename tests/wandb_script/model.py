"""A linear model trained by gradient descent, and a hook that logs its weights as W&B scripts do."""

from __future__ import annotations

import numpy as np

import runsync as wandb


class Linear:
    def __init__(self, dim: int) -> None:
        self.w = np.zeros(dim)

    def loss_and_grad(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        err = x @ self.w - y
        return float(np.mean(err**2)), 2 * x.T @ err / len(x)

    def step(self, grad: np.ndarray, lr: float) -> None:
        self.w -= lr * grad


def log_weights(model: Linear) -> None:
    # W&B logs a list / array of numbers as a histogram; numpy 1-element values as numbers
    wandb.log({"weights": model.w.copy(), "weights_hist": wandb.Histogram(model.w), "w0": model.w[:1]},
              commit=False)
