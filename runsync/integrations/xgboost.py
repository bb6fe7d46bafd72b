"""XGBoost: ``xgboost.train(params, dtrain, evals=[(dval, "val")], callbacks=[RunsyncCallback(project="x")])``.

Each iteration's evaluation results go to history at the iteration number as
``<dataset>/<metric>`` (``val/rmse``; in ``xgboost.cv`` the mean, and ``<metric>_std``); the
booster's configuration (``Booster.save_config()``: every parameter, as XGBoost resolved it)
to the config; the best iteration and score (early stopping) to the summary. Imports ``xgboost``.
"""

from __future__ import annotations

import json
from typing import Any

from xgboost.callback import TrainingCallback

from ..writer import Run
from ._common import RunHandle, report

__all__ = ["RunsyncCallback"]


class RunsyncCallback(TrainingCallback):
    """An XGBoost ``TrainingCallback`` writing one runsync run, finished after training unless it is the user's own.

    The run starts with ``runsync.init(project=..., **init_kwargs)`` (or is ``run=``, or the active
    run). Works with ``xgboost.train``, ``xgboost.cv`` and the scikit-learn estimators' ``callbacks=``.
    """

    def __init__(self, project: str | None = None, *, run: Run | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        if project is not None:
            init_kwargs["project"] = project
        self._handle = RunHandle("runsync xgboost callback", run, init_kwargs)

    @property
    def run(self) -> Run | None:
        """The run, once started."""
        return self._handle.started

    def before_training(self, model: Any) -> Any:
        if self._handle.get() is not None:
            save_config = getattr(model, "save_config", None)
            if callable(save_config):  # a Booster (xgboost.cv passes a pack of boosters)
                try:
                    self._handle.config(json.loads(save_config()))
                except Exception as e:
                    report("xgboost:config", f"runsync xgboost callback: config not recorded: {type(e).__name__}: {e}")
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, dict[str, list[Any]]]) -> bool:
        data: dict[str, Any] = {}
        for dataset, metrics in (evals_log or {}).items():
            for metric, values in metrics.items():
                if not values:
                    continue
                last = values[-1]
                if isinstance(last, tuple) and len(last) == 2:  # xgboost.cv: (mean, std)
                    data[f"{dataset}/{metric}"], data[f"{dataset}/{metric}_std"] = last
                else:
                    data[f"{dataset}/{metric}"] = last
        self._handle.log(data, step=int(epoch))
        return False  # never stops training

    def after_training(self, model: Any) -> Any:
        summary: dict[str, Any] = {}
        attr = getattr(model, "attr", None)
        if callable(attr):
            try:
                best_iteration, best_score = attr("best_iteration"), attr("best_score")
                if best_iteration is not None:
                    summary["best_iteration"] = int(best_iteration)
                if best_score is not None:
                    summary["best_score"] = float(best_score)
            except Exception:
                pass
        if summary:
            self._handle.summary(summary)
        self._handle.finish(0)
        return model
