"""Keras 3 on the torch backend: RunsyncCallback in a real model.fit on CPU, read back with open_run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import env_without_runsync

import runsync

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is first imported
torch = pytest.importorskip("torch", reason="the 'integrations' extra is not installed (torch)")
keras = pytest.importorskip("keras", minversion="3", reason="the 'integrations' extra is not installed (keras 3)")
if keras.backend.backend() != "torch":
    pytest.skip(f"keras was imported with the {keras.backend.backend()} backend, not torch", allow_module_level=True)

from runsync.integrations.keras import RunsyncCallback  # noqa: E402

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent


def data(n: int = 64) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x.sum(axis=1) > 0).astype("float32")


def model() -> Any:
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1, activation="sigmoid")], name="tiny")
    m.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy", metrics=["accuracy"])
    return m


def test_fit_logs_epoch_metrics_val_metrics_and_model_config(root: Path) -> None:
    cb = RunsyncCallback(project="keras", dir=root)
    x, y = data()
    model().fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0, callbacks=[cb])
    assert cb.run is not None and cb.run.finished
    view = runsync.open_run(root / cb.run.id)
    assert view.status == "finished"
    h = view.history()
    assert list(h["step"]) == [0, 1, 2] and list(h["epoch"]) == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(h.columns)
    cfg = view.config
    assert cfg["model_name"] == "tiny" and cfg["model_params"] == 4 * 8 + 8 + 8 + 1
    assert "dense" in cfg["model_summary"].lower()
    assert cfg["optimizer"]["learning_rate"] == pytest.approx(0.01) and cfg["optimizer"]["name"] == "adam"
    assert view.summary["val_loss"] == pytest.approx(h["val_loss"].iloc[-1])


def test_batch_logs_every_n_batches_at_the_batch_count(root: Path) -> None:
    cb = RunsyncCallback(dir=root, log_every_n_batches=2)
    x, y = data()
    model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[cb])  # 4 batches per epoch
    h = runsync.open_run(root / cb.run.id).history()  # type: ignore[union-attr]
    assert list(h.dropna(subset=["batch/loss"])["step"]) == [2, 4, 6, 8]
    epochs = h.dropna(subset=["loss"])
    assert list(epochs["step"]) == [4, 8] and list(epochs["epoch"]) == [0, 1]


def test_log_every_n_batches_is_checked() -> None:
    with pytest.raises(ValueError, match="log_every_n_batches"):
        RunsyncCallback(log_every_n_batches=0)


def test_an_exception_in_fit_marks_the_run_failed_at_exit(root: Path, tmp_path: Path) -> None:
    script = tmp_path / "keras_fail.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(HERE)!r})
import keras
from test_integrations_keras import RunsyncCallback, data, model

class Boom(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch == 2:
            raise RuntimeError("boom")

x, y = data()
model().fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[RunsyncCallback(dir=sys.argv[1], id="boom",
            log_every_n_batches=1), Boom()])
""")
    env = env_without_runsync()
    env.update(RUNSYNC_SILENT="1", OMP_NUM_THREADS="1", KERAS_BACKEND="torch", PYTHONPATH=str(HERE.parent))
    r = subprocess.run([sys.executable, str(script), str(root)], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 1 and "boom" in r.stderr
    view = runsync.open_run(root / "boom")
    assert view.status == "failed"
    assert list(view.history()["step"]) == [1, 2, 3]
