"""Transformers: RunsyncCallback with the real Trainer on CPU (a tiny local model, no hub), read back with open_run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import env_without_runsync

import runsync

torch = pytest.importorskip("torch", reason="the 'integrations' extra is not installed (torch)")
transformers = pytest.importorskip("transformers", reason="the 'integrations' extra is not installed (transformers)")

from runsync.integrations.transformers import RunsyncCallback  # noqa: E402

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent


class TinyConfig(transformers.PretrainedConfig):  # type: ignore[misc]
    model_type = "runsync-tiny"

    def __init__(self, width: int = 4, fail_at: int = -1, **kw: Any) -> None:
        self.width = width
        self.fail_at = fail_at
        super().__init__(**kw)


class Tiny(transformers.PreTrainedModel):  # type: ignore[misc]
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.lin = torch.nn.Linear(config.width, 1)
        self.calls = 0

    def _init_weights(self, module: Any) -> None:
        pass

    def forward(self, x: Any, y: Any) -> dict[str, Any]:
        if self.training:
            self.calls += 1
            if self.calls == self.config.fail_at:
                raise KeyboardInterrupt
        return {"loss": torch.nn.functional.mse_loss(self.lin(x).squeeze(-1), y)}


class Data(torch.utils.data.Dataset):  # type: ignore[misc]
    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(dim=1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "y": self.y[i]}


def make_trainer(tmp_path: Path, callback: RunsyncCallback, fail_at: int = -1) -> Any:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), report_to="none", num_train_epochs=2, per_device_train_batch_size=8,
        per_device_eval_batch_size=8, logging_steps=1, eval_strategy="epoch", save_strategy="no",
        learning_rate=0.01, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, label_names=["y"])
    return transformers.Trainer(model=Tiny(TinyConfig(fail_at=fail_at)), args=args, train_dataset=Data(),
                                eval_dataset=Data(16), callbacks=[callback])


def test_train_and_evaluate_log_config_history_at_global_step_and_summary(root: Path, tmp_path: Path) -> None:
    cb = RunsyncCallback(project="hf", dir=root)
    trainer = make_trainer(tmp_path, cb)
    trainer.train()
    assert cb.run is not None and cb.run.finished
    trainer.evaluate()  # after on_train_end: the run's next incarnation, finished when evaluate returns
    view = runsync.open_run(root / cb.run.id)
    assert view.status == "finished" and view.info.project == "hf"
    cfg = view.config
    assert cfg["learning_rate"] == 0.01 and cfg["num_train_epochs"] == 2 and cfg["report_to"] == []
    assert cfg["model_config"]["width"] == 4 and cfg["model_class"] == "Tiny"
    h = view.history()
    loss = h.dropna(subset=["train/loss"])
    assert list(loss["step"]) == list(range(1, 9))  # 4 steps per epoch, 2 epochs, at state.global_step
    ev = h.dropna(subset=["eval/loss"])
    assert list(ev["step"]) == [4, 8]  # each epoch; the evaluate() after training is at step 8 too (spec §4.5)
    assert view.rows(["eval/loss"]).num_rows == 3
    summary = view.summary
    assert {"train/train_runtime", "train/train_loss", "train/total_flos"} <= set(summary)
    assert "train/train_runtime" not in h.columns
    assert [s["incarnation"] for s in view.streams()] == [1]


def test_a_run_of_the_users_own_is_not_finished(root: Path, tmp_path: Path) -> None:
    run = runsync.init(dir=root)
    cb = RunsyncCallback(run=run)
    make_trainer(tmp_path, cb).train()
    assert not run.finished
    run.log({"after": 1.0})
    run.finish()
    view = runsync.open_run(root / run.id)
    assert view.status == "finished" and "after" in view.history().columns
    assert view.config["model_config"]["width"] == 4


def test_the_active_run_is_used_when_no_init_arguments_are_given(root: Path, tmp_path: Path) -> None:
    with runsync.init(dir=root) as run:
        cb = RunsyncCallback()
        make_trainer(tmp_path, cb).train()
        assert cb.run is run and not run.finished
    assert runsync.open_run(root / run.id).status == "finished"


def test_keyboard_interrupt_in_train_marks_the_run_failed(root: Path, tmp_path: Path) -> None:
    script = tmp_path / "hf_interrupt.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from pathlib import Path
from test_integrations_transformers import RunsyncCallback, make_trainer
cb = RunsyncCallback(dir=sys.argv[1], id="interrupted")
make_trainer(Path(sys.argv[2]), cb, fail_at=3).train()
""")
    env = env_without_runsync()
    env.update(RUNSYNC_SILENT="1", OMP_NUM_THREADS="1", PYTHONPATH=str(HERE.parent))
    r = subprocess.run([sys.executable, str(script), str(root), str(tmp_path)], env=env, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode != 0 and "KeyboardInterrupt" in r.stderr
    view = runsync.open_run(root / "interrupted")
    assert view.status == "failed"
    assert list(view.history().dropna(subset=["train/loss"])["step"]) == [1, 2]
