"""A small, realistic training loop (numpy only) logging to runsync offline.

Trains logistic regression on a synthetic problem with minibatch SGD, a cosine
learning-rate schedule and a validation pass every epoch.

    python examples/train.py --steps 3000 --dir runs
"""

from __future__ import annotations

import argparse
import math

import numpy as np

import runsync


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--dir", default=None, help="runs directory (default $RUNSYNC_DIR or ./runs)")
    ap.add_argument("--project", default="demo")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    dim, n_train, n_val = 32, 20_000, 2_000
    w_true = rng.normal(size=dim)
    x = rng.normal(size=(n_train + n_val, dim)).astype(np.float32)
    y = (x @ w_true + 0.5 * rng.normal(size=len(x)) > 0).astype(np.float32)
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    steps_per_epoch = n_train // args.batch

    config = {"lr": args.lr, "batch": args.batch, "steps": args.steps, "model": {"kind": "logreg", "dim": dim}}
    with runsync.init(project=args.project, config=config, dir=args.dir, tags=["example"]) as run:
        w = np.zeros(dim, dtype=np.float32)
        best = 0.0
        for step in range(args.steps):
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))
            idx = rng.integers(0, n_train, size=args.batch)
            xb, yb = xt[idx], yt[idx]
            p = 1 / (1 + np.exp(-(xb @ w)))
            grad = xb.T @ (p - yb) / args.batch
            w -= lr * grad
            loss = float(-np.mean(yb * np.log(p + 1e-7) + (1 - yb) * np.log(1 - p + 1e-7)))
            run.log({"train/loss": loss, "train/acc": float(np.mean((p > 0.5) == yb)),
                     "lr": lr, "grad_norm": float(np.linalg.norm(grad))}, commit=False)
            if step % steps_per_epoch == steps_per_epoch - 1:
                va = float(np.mean(((xv @ w) > 0) == yv))
                best = max(best, va)
                run.log({"val/acc": va, "epoch": step // steps_per_epoch}, commit=False)
            run.log({})  # commit the step
        run.summary["best_val_acc"] = best
        print(f"trained {args.steps} steps; best val acc {best:.3f}; run {run.name} ({run.id}) in {run.dir}")


if __name__ == "__main__":
    main()
