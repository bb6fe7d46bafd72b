"""Transformers with runsync: Trainer.train and evaluate on a tiny local model (no download), logged by
RunsyncCallback (pip install 'runsync[integrations]').

TrainingArguments and the model config go to the run's config, every on_log to history at
the global step (train/loss, eval/loss, ...), end-of-training totals to the summary.
``report_to`` cannot name runsync without a change in Transformers: pass the callback, and
``report_to="none"`` to keep other integrations off.

    python examples/hf_train.py --epochs 3 --dir runs
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments

from runsync.integrations.transformers import RunsyncCallback


class TinyConfig(PretrainedConfig):
    model_type = "runsync-demo"

    def __init__(self, features: int = 8, hidden: int = 16, **kw: Any) -> None:
        self.features, self.hidden = features, hidden
        super().__init__(**kw)


class TinyRegressor(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.net = torch.nn.Sequential(torch.nn.Linear(config.features, config.hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(config.hidden, 1))

    def _init_weights(self, module: Any) -> None:
        pass

    def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
        out = self.net(x).squeeze(-1)
        return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        self.y = torch.sin(self.x[:, 0]) + 0.5 * self.x[:, 1]

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "labels": self.y[i]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--dir", default=None, help="runs directory (default $RUNSYNC_DIR or ./runs)")
    ap.add_argument("--project", default="hf-demo")
    args = ap.parse_args()
    torch.set_num_threads(1)

    callback = RunsyncCallback(project=args.project, dir=args.dir, tags=["example"])
    with tempfile.TemporaryDirectory() as out:
        training = TrainingArguments(output_dir=out, report_to="none", num_train_epochs=args.epochs,
                                     per_device_train_batch_size=32, learning_rate=3e-3, logging_steps=5,
                                     eval_strategy="epoch", save_strategy="no", use_cpu=True, disable_tqdm=True)
        trainer = Trainer(model=TinyRegressor(TinyConfig()), args=training, train_dataset=Rows(args.rows, 0),
                          eval_dataset=Rows(args.rows // 4, 1), callbacks=[callback])
        trainer.train()
        trainer.evaluate()
    run = callback.run
    print(f"run {run.id} in {run.dir}" if run is not None else "no run")


if __name__ == "__main__":
    main()
