"""LightGBM: RunsyncCallback in real lightgbm.train / cv / LGBMRegressor on a few hundred rows, read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import runsync

lgb = pytest.importorskip("lightgbm", reason="the 'integrations' extra is not installed (lightgbm)")

from runsync.integrations.lightgbm import RunsyncCallback  # noqa: E402

PARAMS = {"objective": "regression", "metric": ["l2", "l1"], "num_leaves": 7, "learning_rate": 0.2,
          "num_threads": 1, "verbose": -1, "seed": 0}


def data(n: int = 300) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5))
    return x, x[:, 0] * 2 + x[:, 1] + rng.normal(scale=0.1, size=n)


def datasets() -> tuple[Any, Any]:
    x, y = data()
    train = lgb.Dataset(x[:200], label=y[:200])
    return train, lgb.Dataset(x[200:], label=y[200:], reference=train)


def test_train_logs_each_iteration_params_and_finishes_after_the_last(root: Path) -> None:
    train, val = datasets()
    cb = RunsyncCallback(project="lgb", dir=root)
    lgb.train(PARAMS, train, num_boost_round=12, valid_sets=[train, val], valid_names=["train", "val"],
              callbacks=[cb])
    assert cb.run is not None and cb.run.finished
    view = runsync.open_run(root / cb.run.id)
    assert view.status == "finished"
    h = view.history()
    assert {"train/l2", "train/l1", "val/l2", "val/l1"} <= set(h.columns)
    assert list(h["step"]) == list(range(12))
    cfg = view.config
    assert cfg["num_leaves"] == 7 and cfg["learning_rate"] == 0.2 and cfg["metric"] == ["l2", "l1"]


def test_early_stopping_then_finish_records_the_best_iteration(root: Path) -> None:
    train, val = datasets()
    cb = RunsyncCallback(dir=root)
    booster = lgb.train(PARAMS, train, num_boost_round=500, valid_sets=[val], valid_names=["val"],
                        callbacks=[cb, lgb.early_stopping(3, verbose=False)])
    assert booster.best_iteration < 500 and not cb.run.finished  # type: ignore[union-attr]
    cb.finish(booster)
    view = runsync.open_run(root / cb.run.id)  # type: ignore[union-attr]
    assert view.status == "finished"
    assert view.summary["best_iteration"] == booster.best_iteration
    assert view.summary["best/val/l2"] == pytest.approx(booster.best_score["val"]["l2"])
    assert view.history()["step"].max() == booster.best_iteration - 1 + 3  # the patience, logged too


def test_cv_logs_mean_and_std(root: Path) -> None:
    train, _ = datasets()
    cb = RunsyncCallback(dir=root)
    lgb.cv(PARAMS, train, num_boost_round=4, nfold=3, stratified=False, callbacks=[cb])
    h = runsync.open_run(root / cb.run.id).history()  # type: ignore[union-attr]
    assert {"valid/l2", "valid/l2_std", "valid/l1"} <= set(h.columns)
    assert list(h["step"]) == [0, 1, 2, 3]


def test_scikit_learn_estimator(root: Path) -> None:
    x, y = data()
    cb = RunsyncCallback(dir=root)
    lgb.LGBMRegressor(n_estimators=6, num_leaves=7, n_jobs=1, verbose=-1).fit(
        x[:200], y[:200], eval_set=[(x[200:], y[200:])], callbacks=[cb])
    view = runsync.open_run(root / cb.run.id)  # type: ignore[union-attr]
    assert view.status == "finished" and list(view.history()["step"]) == list(range(6))
    assert "valid_0/l2" in view.history().columns
