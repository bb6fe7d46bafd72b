"""Keras 3 (any backend): ``model.fit(..., callbacks=[RunsyncCallback(project="mnist")])``.

Epoch logs (loss, metrics, ``val_*``) go to history, by epoch; ``log_every_n_batches=N`` also
logs every N-th batch's logs as ``batch/<name>``, and the step is then the number of batches
trained so far (epoch logs at the step their epoch ended, with an ``epoch`` key). The model
summary, parameter count and optimizer config go to the config. Imports ``keras`` (3).
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-untyped]

from ..writer import Run
from ._common import RunHandle

__all__ = ["RunsyncCallback"]


class RunsyncCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """A Keras callback writing one runsync run, finished when ``fit`` ends unless it is the user's own.

    The run starts with ``runsync.init(project=..., **init_kwargs)`` at ``on_train_begin`` (or is
    ``run=``, or the active run). If ``fit`` raises, Keras calls no callback: an uncaught exception
    or KeyboardInterrupt marks the run failed when the process exits (runsync's exit hook).
    """

    def __init__(self, project: str | None = None, log_every_n_batches: int | None = None, *,
                 run: Run | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        if log_every_n_batches is not None and (isinstance(log_every_n_batches, bool)
                                                or not isinstance(log_every_n_batches, int)
                                                or log_every_n_batches < 1):
            raise ValueError(f"RunsyncCallback(log_every_n_batches={log_every_n_batches!r}): use None or an int ≥ 1")
        if project is not None:
            init_kwargs["project"] = project
        self._handle = RunHandle("runsync keras callback", run, init_kwargs)
        self._every = log_every_n_batches
        self._batches = 0
        self._epoch = 0
        self._configured: Run | None = None

    @property
    def run(self) -> Run | None:
        """The run, once started."""
        return self._handle.started

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        run = self._handle.get()
        if run is None or self._configured is run:
            return
        self._configured = run
        self._handle.config(_model_config(self.model))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = int(epoch)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batches += 1
        if self._every is not None and logs and self._batches % self._every == 0:
            data = {f"batch/{k}": v for k, v in logs.items()}
            data["epoch"] = self._epoch
            self._handle.log(data, step=self._batches)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        data = dict(logs or {})
        data["epoch"] = int(epoch)
        self._handle.log(data, step=int(epoch) if self._every is None else self._batches)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._handle.finish(0)


def _model_config(model: Any) -> dict[str, Any]:
    """What the config records of a model: its name, summary text, parameter count, optimizer config."""
    out: dict[str, Any] = {}
    if model is None:
        return out
    out["model_name"] = getattr(model, "name", type(model).__name__)
    lines: list[str] = []
    try:
        model.summary(print_fn=lambda line, line_break=True: lines.append(str(line)))
        out["model_summary"] = "\n".join(lines)
    except Exception:
        pass
    try:
        out["model_params"] = int(model.count_params())
    except Exception:
        pass
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        try:
            out["optimizer"] = optimizer.get_config()
        except Exception:
            out["optimizer"] = {"name": type(optimizer).__name__}
    return out
