"""Lightning: RunsyncLogger with the real Trainer on CPU (a 2-layer MLP, seconds), read back with open_run."""

from __future__ import annotations

import signal
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest
from conftest import env_without_runsync

import runsync

torch = pytest.importorskip("torch", reason="the 'integrations' extra is not installed (torch)")
pl = pytest.importorskip("lightning.pytorch", reason="the 'integrations' extra is not installed (lightning)")

from runsync.integrations.lightning import RunsyncLogger  # noqa: E402

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent


class MLP(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 8, opt: dict[str, Any] | None = None,
                 ns: Namespace | None = None, fail_at: int = -1, interrupt_at: int = -1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: Any, idx: int) -> Any:
        if self.global_step == self.hparams.fail_at:
            raise RuntimeError("boom")
        if self.global_step == self.hparams.interrupt_at:
            raise KeyboardInterrupt
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch: Any, idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loader() -> Any:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def trainer(tmp_path: Path, logger: Any, **kw: Any) -> Any:
    kw.setdefault("max_epochs", 2)
    return pl.Trainer(logger=logger, accelerator="cpu", devices=1, log_every_n_steps=1, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=str(tmp_path), **kw)


def test_fit_logs_hyperparameters_metrics_at_global_step_and_finishes(root: Path, tmp_path: Path) -> None:
    logger = RunsyncLogger(project="pl", name="mlp", dir=root, tags=["t"])
    model = MLP(opt={"name": "sgd", "betas": (0.9, 0.99)}, ns=Namespace(depth=2, act="relu"))
    trainer(tmp_path, logger, enable_checkpointing=False).fit(model, loader(), loader())
    view = runsync.open_run(root / logger.version)
    assert logger.experiment.finished and view.status == "finished"
    assert view.info.project == "pl" and view.name == "mlp" == logger.name
    cfg = view.config
    assert cfg["lr"] == 0.05 and cfg["hidden"] == 8 and cfg["opt"] == {"name": "sgd", "betas": [0.9, 0.99]}
    assert cfg["ns"] == {"depth": 2, "act": "relu"}
    h = view.history()
    train = h.dropna(subset=["train_loss"])
    assert list(train["step"]) == list(range(8))  # 4 batches x 2 epochs, at Lightning's global_step (0-based)
    val = h.dropna(subset=["val_loss"])
    assert list(val["step"]) == [3, 7] and list(val["epoch"]) == [0, 1]
    assert set(view.summary) >= {"train_loss", "val_loss", "epoch"}
    assert logger.save_dir is None and logger.log_dir == str(root / logger.version)


def test_exception_in_fit_marks_the_run_failed_once(root: Path, tmp_path: Path) -> None:
    logger = RunsyncLogger(dir=root)
    with pytest.raises(RuntimeError, match="boom"):
        trainer(tmp_path, logger, enable_checkpointing=False).fit(MLP(fail_at=3), loader())
    view = runsync.open_run(root / logger.version)
    assert view.status == "failed"
    (stream,) = view.streams()
    assert stream["incarnation"] == 0 and stream["exit_code"] == 1
    assert list(view.history()["step"]) == [0, 1, 2]


def test_keyboard_interrupt_marks_the_run_failed(root: Path, tmp_path: Path) -> None:
    logger = RunsyncLogger(dir=root)
    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):  # Lightning's graceful shutdown: finalize("failed"), then exit(1)
            trainer(tmp_path, logger, enable_checkpointing=False).fit(MLP(interrupt_at=2), loader())
    finally:
        signal.signal(signal.SIGINT, before)  # Lightning ignores SIGINT during its shutdown
    assert runsync.open_run(root / logger.version).status == "failed"


def test_beside_another_logger_and_test_after_fit_continues_the_run(root: Path, tmp_path: Path) -> None:
    csv = pl.loggers.CSVLogger(str(tmp_path / "csv"))
    logger = RunsyncLogger(dir=root)
    t = trainer(tmp_path, [csv, logger], max_epochs=1, enable_checkpointing=False)
    model = MLP()
    t.fit(model, loader())
    t.test(model, loader())  # after fit's finalize("success"): the run's next incarnation (spec §6.2)
    view = runsync.open_run(root / logger.version)
    assert view.status == "finished"
    assert [s["incarnation"] for s in view.streams()] == [1]
    h = view.history()
    assert h["train_loss"].notna().sum() == 4 and h["test_loss"].notna().sum() == 1
    assert (tmp_path / "csv").exists()


def test_checkpoints_are_stored_with_the_chosen_policy(root: Path, tmp_path: Path) -> None:
    logger = RunsyncLogger(dir=root, log_checkpoints="now")
    trainer(tmp_path, logger, max_epochs=2).fit(MLP(), loader())
    files = runsync.open_run(root / logger.version).files()
    assert any(name.endswith(".ckpt") for name in files), files
    # Lightning's own checkpoints are under the trainer's root, not in the runs directory
    assert [p.name for p in root.iterdir()] == [logger.version]
    assert list((tmp_path / logger.name / logger.version / "checkpoints").glob("*.ckpt"))


def test_checkpoints_are_not_stored_by_default(root: Path, tmp_path: Path) -> None:
    logger = RunsyncLogger(dir=root)
    trainer(tmp_path, logger, max_epochs=1).fit(MLP(), loader())
    assert runsync.open_run(root / logger.version).files() == {}


def test_bad_values_are_reported_not_raised_and_the_rest_is_kept(root: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNSYNC_SILENT")
    logger = RunsyncLogger(dir=root, system=False, console=False)
    logger.log_hyperparams({"model": torch.nn.Linear(2, 2), "dtype": torch.float32, "fn": torch.nn.functional.relu,
                            "": 1})
    # (a tensor of several numbers is a histogram since issue 15, as in W&B; a plain object is refused)
    logger.log_metrics({"ok": 1.0, "bad": object(), "_private": 2.0}, step=5)
    logger.finalize("success")
    assert "'bad'" in capsys.readouterr().err
    view = runsync.open_run(root / logger.version)
    assert view.history()[["step", "ok"]].to_dict("records") == [{"step": 5, "ok": 1.0}]
    cfg = view.config
    assert cfg["dtype"] == "torch.float32" and cfg["fn"] == "torch.nn.functional.relu"
    assert cfg["model"].startswith("Linear(") and "" not in cfg


def test_log_checkpoints_policy_is_checked() -> None:
    with pytest.raises(ValueError, match="log_checkpoints"):
        RunsyncLogger(log_checkpoints="always")


def _ddp_script(tmp_path: Path) -> Path:
    script = tmp_path / "ddp_train.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(HERE)!r})
import torch
torch.set_num_threads(1)
import lightning.pytorch as pl
from test_integrations_lightning import MLP, loader
from runsync.integrations.lightning import RunsyncLogger

logger = RunsyncLogger(project="ddp", dir=sys.argv[1], all_ranks=True)
t = pl.Trainer(logger=logger, accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, log_every_n_steps=1,
               enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
               default_root_dir=sys.argv[2])
t.fit(MLP(), loader(), loader())
print("RUN", logger.version)
""")
    return script


def test_ddp_two_cpu_ranks_write_one_run_as_two_streams(root: Path, tmp_path: Path) -> None:
    env = env_without_runsync()
    env.update(RUNSYNC_SILENT="1", OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    r = subprocess.run([sys.executable, str(_ddp_script(tmp_path)), str(root), str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    view = runsync.open_run(run_dir)
    assert view.status == "finished"
    assert sorted(s["stream"] for s in view.streams()) == ["rank0", "rank1"]
    assert set(view.rows(["train_loss"]).column("stream").to_pylist()) == {"rank0", "rank1"}
    assert view.config["lr"] == 0.05


def test_a_pickled_logger_writes_the_same_run(root: Path) -> None:
    import pickle

    logger = RunsyncLogger(dir=root, project="p")
    copy = pickle.loads(pickle.dumps(logger))  # what ddp_spawn does with a trainer's loggers
    copy.log_metrics({"a": 1.0}, step=0)
    pickle.dumps(copy)  # a logger with a live run pickles too (the copy would start its own)
    copy.finalize("success")
    assert copy.version == logger.version
    view = runsync.open_run(root / logger.version)
    assert view.status == "finished" and view.info.project == "p" and list(view.history()["a"]) == [1.0]
