"""XGBoost: RunsyncCallback in real xgboost.train / cv / XGBRegressor on a few hundred rows, read back with open_run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import runsync

xgb = pytest.importorskip("xgboost", reason="the 'integrations' extra is not installed (xgboost)")

from runsync.integrations.xgboost import RunsyncCallback  # noqa: E402


def data(n: int = 300) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5))
    return x, x[:, 0] * 2 + x[:, 1] + rng.normal(scale=0.1, size=n)


def dmatrices() -> tuple[Any, Any]:
    x, y = data()
    return xgb.DMatrix(x[:200], label=y[:200]), xgb.DMatrix(x[200:], label=y[200:])


def test_train_logs_evals_per_iteration_params_and_best_iteration(root: Path) -> None:
    dtrain, dval = dmatrices()
    cb = RunsyncCallback(project="xgb", dir=root)
    params = {"max_depth": 3, "eta": 0.3, "objective": "reg:squarederror", "eval_metric": ["rmse", "mae"],
              "nthread": 1}
    booster = xgb.train(params, dtrain, num_boost_round=30, evals=[(dtrain, "train"), (dval, "val")],
                        early_stopping_rounds=3, callbacks=[cb], verbose_eval=False)
    assert cb.run is not None and cb.run.finished
    view = runsync.open_run(root / cb.run.id)
    assert view.status == "finished"
    h = view.history()
    assert {"train/rmse", "train/mae", "val/rmse", "val/mae"} <= set(h.columns)
    assert list(h["step"]) == list(range(len(h))) and len(h) == booster.num_boosted_rounds()
    cfg = view.config
    assert cfg["learner"]["gradient_booster"]["tree_train_param"]["max_depth"] == "3"
    assert cfg["learner"]["learner_train_param"]["objective"] == "reg:squarederror"
    assert view.summary["best_iteration"] == booster.best_iteration
    assert view.summary["best_score"] == pytest.approx(booster.best_score)
    assert view.summary["val/mae"] == pytest.approx(h["val/mae"].iloc[-1])


def test_cv_logs_mean_and_std(root: Path) -> None:
    dtrain, _ = dmatrices()
    cb = RunsyncCallback(dir=root)
    xgb.cv({"max_depth": 2, "nthread": 1}, dtrain, num_boost_round=5, nfold=3, callbacks=[cb])
    h = runsync.open_run(root / cb.run.id).history()  # type: ignore[union-attr]
    assert {"train/rmse", "train/rmse_std", "test/rmse", "test/rmse_std"} <= set(h.columns)
    assert list(h["step"]) == [0, 1, 2, 3, 4]


def test_scikit_learn_estimator(root: Path) -> None:
    x, y = data()
    cb = RunsyncCallback(dir=root)
    est = xgb.XGBRegressor(n_estimators=8, max_depth=2, n_jobs=1, callbacks=[cb])
    est.fit(x[:200], y[:200], eval_set=[(x[200:], y[200:])], verbose=False)
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1
    view = runsync.open_run(runs[0])
    assert view.status == "finished" and list(view.history()["step"]) == list(range(8))
    assert "validation_0/rmse" in view.history().columns


def test_a_run_of_the_users_own_stays_open(root: Path) -> None:
    dtrain, dval = dmatrices()
    with runsync.init(dir=root) as run:
        xgb.train({"nthread": 1}, dtrain, num_boost_round=3, evals=[(dval, "val")], verbose_eval=False,
                  callbacks=[RunsyncCallback(run=run)])
        assert not run.finished
        run.log({"after": 1})
    assert runsync.open_run(root / run.id).history()["after"].notna().sum() == 1


def test_a_deep_copy_of_the_callback_logs_to_the_same_run(root: Path) -> None:
    import copy

    dtrain, dval = dmatrices()
    cb = RunsyncCallback(dir=root)
    cb.before_training(xgb.train({"nthread": 1}, dtrain, num_boost_round=1))
    twin = copy.deepcopy(cb)  # scikit-learn style clone of an estimator holding the callback
    assert twin.run is cb.run
    xgb.train({"nthread": 1}, dtrain, num_boost_round=2, evals=[(dval, "val")], verbose_eval=False, callbacks=[twin])
    assert cb.run is not None and cb.run.finished
    assert list(runsync.open_run(root / cb.run.id).history()["step"]) == [0, 1]


def test_an_exception_in_training_marks_the_run_failed_at_exit(root: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import env_without_runsync

    script = tmp_path / "xgb_fail.py"
    script.write_text("""
import sys
import numpy as np
import xgboost as xgb
from runsync.integrations.xgboost import RunsyncCallback

class Boom(xgb.callback.TrainingCallback):
    def after_iteration(self, model, epoch, evals_log):
        if epoch == 2:
            raise RuntimeError("boom")
        return False

x = np.random.default_rng(0).normal(size=(100, 3))
d = xgb.DMatrix(x, label=x.sum(axis=1))
xgb.train({"nthread": 1}, d, 10, evals=[(d, "train")], verbose_eval=False,
          callbacks=[RunsyncCallback(dir=sys.argv[1], id="boom"), Boom()])
""")
    env = env_without_runsync()
    env.update(RUNSYNC_SILENT="1", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    r = subprocess.run([sys.executable, str(script), str(root)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "boom" in r.stderr
    view = runsync.open_run(root / "boom")
    assert view.status == "failed" and list(view.history()["step"]) == [0, 1, 2]
