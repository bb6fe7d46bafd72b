"""Hugging Face Transformers: ``Trainer(..., args=TrainingArguments(report_to="none"), callbacks=[RunsyncCallback()])``.

``report_to="runsync"`` cannot work without a change in Transformers (it knows its own list of
integrations), so the callback is passed explicitly, with ``report_to="none"`` to keep the
others off. Only the world's process zero logs. Imports ``transformers``.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from ..writer import Run
from ._common import RunHandle

__all__ = ["RunsyncCallback"]

# Logged once at the end of training: summary values, not history (as Transformers' own integrations do).
_END_OF_TRAINING = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
                    "total_flos")


def rewrite_keys(logs: dict[str, Any]) -> dict[str, Any]:
    """``eval_loss`` → ``eval/loss``, ``test_acc`` → ``test/acc``, anything else → ``train/<key>``."""
    out: dict[str, Any] = {}
    for k, v in logs.items():
        for prefix in ("eval", "test"):
            if k.startswith(prefix + "_"):
                out[f"{prefix}/{k[len(prefix) + 1:]}"] = v
                break
        else:
            out[f"train/{k}"] = v
    return out


class RunsyncCallback(TrainerCallback):
    """A ``TrainerCallback`` writing one runsync run.

    Config: ``TrainingArguments.to_dict()`` and, under ``model_config``, the model's config.
    History: each ``on_log`` at ``state.global_step`` (keys as in :func:`rewrite_keys`; the
    end-of-training totals go to the summary). The run starts with ``runsync.init(project=...,
    **init_kwargs)`` (or is ``run=``, or the active run) and is finished at ``on_train_end``
    unless it is the user's own. An ``evaluate()``/``predict()`` outside training logs into the
    run's next incarnation (spec §6.2), finished when it returns.
    """

    def __init__(self, project: str | None = None, *, run: Run | None = None, **init_kwargs: Any) -> None:
        if project is not None:
            init_kwargs["project"] = project
        self._handle = RunHandle("runsync transformers callback", run, init_kwargs)
        self._configured: Run | None = None
        self._training = False

    @property
    def run(self) -> Run | None:
        """The run, once started."""
        return self._handle.started

    def _setup(self, args: Any, state: Any, model: Any) -> bool:
        """Start the run and record the config once per run; False on processes that do not log."""
        if not getattr(state, "is_world_process_zero", True):
            return False
        run = self._handle.get()
        if run is None:
            return False
        if self._configured is not run:
            self._configured = run
            try:
                config: dict[str, Any] = dict(args.to_dict()) if args is not None else {}
            except Exception:
                config = {}
            model_config = getattr(model, "config", None)
            if model_config is not None and callable(getattr(model_config, "to_dict", None)):
                try:
                    config["model_config"] = model_config.to_dict()
                except Exception:
                    pass
            if model is not None:
                config.setdefault("model_class", type(model).__name__)
            self._handle.config(config)
        return True

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._training = True
        self._setup(args, state, model)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, model: Any = None,
               **kwargs: Any) -> None:
        if not logs or not self._setup(args, state, model):
            return
        logs = dict(logs)
        summary = {k: logs.pop(k) for k in _END_OF_TRAINING if k in logs}
        if summary:
            self._handle.summary(rewrite_keys(summary))
        self._handle.log(rewrite_keys(logs), step=int(state.global_step))

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._training and getattr(state, "is_world_process_zero", True):
            self._handle.finish(0)

    def on_predict(self, args: Any, state: Any, control: Any, metrics: Any = None, model: Any = None,
                   **kwargs: Any) -> None:
        """``predict()`` does not go through ``on_log``: its metrics (``test_*``) are logged here."""
        if metrics and self._setup(args, state, model):
            self._handle.log(rewrite_keys(dict(metrics)), step=int(state.global_step))
        self.on_evaluate(args, state, control)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = False
        if getattr(state, "is_world_process_zero", True):
            self._handle.finish(0)
