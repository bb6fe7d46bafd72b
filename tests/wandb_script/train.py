"""A training script written for W&B; only the import differs: `import runsync as wandb`."""

from __future__ import annotations

import argparse

import numpy as np

import runsync as wandb
from data import batches, make_data
from model import Linear, log_weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dim", type=int, default=8)
    args = parser.parse_args()

    wandb.login()
    run = wandb.init(project="wandb-style", entity="lab", config=args, tags=["baseline"], group="ablation",
                     job_type="train", notes="W&B-style script", save_code=True, reinit=True,
                     settings=wandb.Settings(start_method="thread"))
    wandb.config.update({"optimizer": "sgd", "lr": args.lr}, allow_val_change=True)
    wandb.config.seed = 7
    wandb.define_metric("epoch")
    wandb.define_metric("val/*", step_metric="epoch")
    wandb.define_metric("val/loss", summary="min")
    wandb.define_metric("train/loss", summary="mean,last")

    x, y, _ = make_data(256, wandb.config.dim, wandb.config.seed)
    xv, yv, _ = make_data(64, wandb.config.dim, 99)
    model = Linear(wandb.config.dim)
    best = float("inf")
    for epoch in range(wandb.config.epochs):
        for xb, yb in batches(x, y, wandb.config["batch_size"]):
            loss, grad = model.loss_and_grad(xb, yb)
            model.step(grad, wandb.config.lr)
            wandb.log({"train/loss": np.float64(loss)}, commit=False)
            wandb.log()
        val_loss, _ = model.loss_and_grad(xv, yv)
        log_weights(model)
        wandb.log({"epoch": epoch, "val/loss": val_loss,
                   "val/pred": wandb.Image((np.outer(model.w, model.w) > 0).astype(np.uint8) * 255)})
        if val_loss < best:
            best = val_loss
            wandb.run.summary.best_val_loss = best
    np.savez("model.npz", w=model.w)
    wandb.save("model.npz", policy="now")
    if best > 10:
        wandb.alert(title="diverged", text=f"val loss {best:.3f}", level="WARN")
    print("run-dir", run.dir)
    wandb.finish()
    assert wandb.run is None


if __name__ == "__main__":
    main()
