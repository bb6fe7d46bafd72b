"""LightGBM: ``lightgbm.train(params, dtrain, valid_sets=[dval], callbacks=[RunsyncCallback(project="x")])``.

Each iteration's ``evaluation_result_list`` goes to history at the iteration number as
``<dataset>/<metric>`` (``valid_0/l2``; in ``lightgbm.cv`` the mean, and ``<metric>_std``), the
training parameters to the config at the first iteration. Imports ``lightgbm``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightgbm  # noqa: F401 - the framework this module is for; fails early when it is missing

from ..writer import Run
from ._common import RunHandle

__all__ = ["RunsyncCallback"]


class RunsyncCallback:
    """A LightGBM callback (a callable with ``order``) writing one runsync run.

    The run starts with ``runsync.init(project=..., **init_kwargs)`` (or is ``run=``, or the active
    run) and is finished after the last iteration. LightGBM has no end-of-training hook, so when
    early stopping ends training first, call :meth:`finish` (with the booster, to record its best
    iteration and score in the summary), or the run finishes when the process exits.
    """

    order = 25  # after record_evaluation (20), before early_stopping (30): the stopping iteration is logged
    before_iteration = False

    def __init__(self, project: str | None = None, *, run: Run | None = None, **init_kwargs: Any) -> None:
        if project is not None:
            init_kwargs["project"] = project
        self._handle = RunHandle("runsync lightgbm callback", run, init_kwargs)
        self._configured: Run | None = None

    @property
    def run(self) -> Run | None:
        """The run, once started."""
        return self._handle.started

    def __call__(self, env: Any) -> None:
        run = self._handle.get()
        if run is None:
            return
        if self._configured is not run:
            self._configured = run
            self._handle.config(dict(getattr(env, "params", None) or {}))
        data: dict[str, Any] = {}
        for item in getattr(env, "evaluation_result_list", None) or []:
            dataset, metric, value = item[0], item[1], item[2]
            # lightgbm.cv: (dataset, metric, mean, higher_better, std); before 4.7 the dataset was
            # "cv_agg" and the metric "<dataset> <metric>"
            std = getattr(item, "metric_std_dev", item[4] if len(item) > 4 else None)
            if dataset == "cv_agg":
                dataset, _, metric = str(metric).partition(" ")
            data[f"{dataset}/{metric}"] = value
            if std is not None:
                data[f"{dataset}/{metric}_std"] = std
        self._handle.log(data, step=int(env.iteration))
        if int(env.iteration) >= int(env.end_iteration) - 1:
            self.finish()  # the booster's best iteration is set only after this, by lightgbm.train

    def finish(self, booster: Any = None) -> None:
        """Record ``booster``'s best iteration and score (if any) and finish the run (if it is ours)."""
        if booster is not None and self._handle.started is not None and not self._handle.started.finished:
            best_iteration = getattr(booster, "best_iteration", 0)
            summary: dict[str, Any] = {}
            if isinstance(best_iteration, int) and best_iteration > 0:
                summary["best_iteration"] = best_iteration
            best_score = getattr(booster, "best_score", None)
            if isinstance(best_score, Mapping):  # {dataset: {metric: value}}
                for dataset, metrics in best_score.items():
                    if isinstance(metrics, Mapping):
                        for metric, value in metrics.items():
                            summary[f"best/{dataset}/{metric}"] = value
            if summary:
                self._handle.summary(summary)
        self._handle.finish(0)
