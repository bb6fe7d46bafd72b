"""Lightning with runsync: a small MLP regression, logged by RunsyncLogger (pip install 'runsync[integrations]').

Hyperparameters come from save_hyperparameters(), metrics from self.log() at the trainer's
global step; the run is finished when fit returns (failed if it raises), and the best
checkpoint is stored in the run at the end.

    python examples/lightning_train.py --epochs 5 --dir runs
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import torch

from runsync.integrations.lightning import RunsyncLogger


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 32, optimizer: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def step(self, batch: Any) -> Any:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch: Any, idx: int) -> Any:
        loss = self.step(batch)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: Any, idx: int) -> None:
        self.log("val/loss", self.step(batch))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def data(n: int, seed: int) -> Any:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, :4].sum(dim=1, keepdim=True) - x[:, 4:].prod(dim=1, keepdim=True)) * 0.5
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=seed == 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--dir", default=None, help="runs directory (default $RUNSYNC_DIR or ./runs)")
    ap.add_argument("--project", default="lightning-demo")
    args = ap.parse_args()
    torch.set_num_threads(1)

    logger = RunsyncLogger(project=args.project, dir=args.dir, tags=["example"], log_checkpoints="end",
                           save_dir="lightning_logs")  # Lightning's checkpoints: lightning_logs/<name>/<id>/
    trainer = pl.Trainer(logger=logger, max_epochs=args.epochs, accelerator="cpu", devices=1, log_every_n_steps=5,
                         enable_progress_bar=False, enable_model_summary=False)
    model = Regressor(optimizer={"name": "sgd", "momentum": 0.9})
    trainer.fit(model, data(args.rows, 0), data(args.rows // 4, 1))
    print(f"run {logger.version} in {logger.log_dir}")


if __name__ == "__main__":
    main()
