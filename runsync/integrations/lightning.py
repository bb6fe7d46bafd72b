"""Lightning: ``Trainer(logger=RunsyncLogger(project="mnist"))``.

Hyperparameters (``save_hyperparameters()``, dicts, Namespaces, nested) go to the run's config,
``self.log(...)`` metrics to history at the trainer's ``global_step``; ``finalize`` finishes the
run, or marks it failed when Lightning reports ``"failed"`` (an exception or KeyboardInterrupt in
``fit``). Rank zero logs by default; ``all_ranks=True`` writes every rank as the stream
``rank<N>`` of one run (spec §6.2). Imports Lightning (the ``lightning`` package, 2.x).
"""

from __future__ import annotations

import os
import secrets
from argparse import Namespace
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import _DummyExperiment as DummyExperiment
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.loggers import Logger

from ..writer import Run
from ._common import RunHandle, report

__all__ = ["RunsyncLogger"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_SHARED_ID_ENV = "RUNSYNC_LIGHTNING_RUN_ID_{}"  # per all-ranks logger, in construction order
_CHECKPOINT_POLICIES = ("now", "end", "live")
_made = 0  # all-ranks loggers made in this process without an id


class RunsyncLogger(Logger):
    """A Lightning logger writing one runsync run.

    ``project``, ``name`` and ``init_kwargs`` (``id``, ``dir``, ``tags``, ``config``, ``settings``,
    ...) are passed to ``runsync.init()`` when the run starts, or pass ``run=`` a run of your own
    (which the logger never finishes). ``log_checkpoints``: ``None`` (default: checkpoints are not
    stored in the run), or a ``Run.save`` policy (``"now"``, ``"end"``, ``"live"``) with which
    every checkpoint ``ModelCheckpoint`` writes is stored (spec §13.5). ``save_dir``: where Lightning
    writes its own files, checkpoints in ``<save_dir>/<name>/<id>/checkpoints`` (default: the
    trainer's ``default_root_dir``; never the runs directory, which holds only runs). ``all_ranks``: every rank
    logs, as stream ``rank<global rank>`` of one run; the run id is shared with the ranks that
    Lightning launches (an environment variable), or broadcast from rank 0 once the process group
    is up; under other launchers pass ``id=``.
    """

    def __init__(self, project: str | None = None, name: str | None = None, *, run: Run | None = None,
                 all_ranks: bool = False, log_checkpoints: str | None = None, save_dir: str | None = None,
                 **init_kwargs: Any) -> None:
        super().__init__()
        if log_checkpoints is not None and log_checkpoints not in _CHECKPOINT_POLICIES:
            raise ValueError(f"RunsyncLogger(log_checkpoints={log_checkpoints!r}): use None or one of "
                             f"{', '.join(_CHECKPOINT_POLICIES)}")
        self._all_ranks = all_ranks
        self._save_dir = None if save_dir is None else str(save_dir)
        self._log_checkpoints = log_checkpoints
        self._id_agreed = run is not None or init_kwargs.get("id") is not None
        if project is not None:
            init_kwargs["project"] = project
        if name is not None:
            init_kwargs["name"] = name
        if run is None and init_kwargs.get("id") is None:
            init_kwargs["id"] = self._shared_id() if all_ranks else _new_id()
        self._name = name if name is not None else (run.name if run is not None else None)
        self._handle = RunHandle("runsync lightning logger", run, init_kwargs, adopt=False)

    def _shared_id(self) -> str:
        """The id every rank of an all-ranks run uses: chosen by the process that constructs first."""
        global _made
        var = _SHARED_ID_ENV.format(_made)
        _made += 1
        shared = os.environ.get(var)
        if shared:  # not yet agreed: under torchrun every rank chose its own; the broadcast decides
            return shared
        run_id = _new_id()
        os.environ[var] = run_id  # inherited by the rank processes Lightning launches next
        return run_id

    # -- the run ----------------------------------------------------------------------------
    def _rank(self) -> int:
        return int(getattr(rank_zero_only, "rank", 0) or 0)

    def _active(self) -> bool:
        return self._all_ranks or self._rank() == 0

    def _run(self, resume: bool = True) -> Run | None:
        """The run on a rank that logs, started if needed; ``resume``: continue it if it finished."""
        if not self._active():
            return None
        started = self._handle.started
        if started is not None and not resume:
            return started
        if started is None and self._all_ranks:
            self._agree_on_id()
            self._handle.init_kwargs.setdefault("stream", f"rank{self._rank()}")
        return self._handle.get()

    def _agree_on_id(self) -> None:
        """Take rank 0's id once the process group is up (a collective: every rank of an all-ranks
        logger without ``id=`` calls it, at Lightning's setup, which every rank runs)."""
        if self._id_agreed:
            return
        self._id_agreed = True
        try:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
                return
            box = [self._handle.init_kwargs["id"]]
            dist.broadcast_object_list(box, src=0)
            self._handle.init_kwargs["id"] = box[0]
        except Exception as e:
            report("lightning:ranks", f"runsync lightning logger: the ranks could not agree on a run id "
                   f"({type(e).__name__}: {e}); each rank writes its own run; pass id= to share one")

    @property
    def experiment(self) -> Any:
        """The ``runsync.Run`` (a no-op stand-in on ranks that do not log, or if it could not start).

        Once finished it stays the finished run; logging through the logger again continues it.
        """
        run = self._run(resume=False)
        return run if run is not None else DummyExperiment()

    @property
    def name(self) -> str:
        """The run's name (before it starts: the name given, else ``runsync``)."""
        run = self._handle.started
        return run.name if run is not None else (self._name or "runsync")

    @property
    def version(self) -> str:
        """The run id."""
        run = self._handle.started
        return run.id if run is not None else str(self._handle.init_kwargs.get("id", ""))

    @property
    def save_dir(self) -> str | None:
        """Where Lightning writes checkpoints (``None``: the trainer's ``default_root_dir``)."""
        return self._save_dir

    @property
    def root_dir(self) -> str | None:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        """The run's own directory, ``<runs dir>/<id>`` (``dir=``, else ``$RUNSYNC_DIR``, else ``./runs``)."""
        run = self._handle.started
        if run is not None and run.dir is not None:
            return str(run.dir)
        root = self._handle.init_kwargs.get("dir") or os.environ.get("RUNSYNC_DIR") or "runs"
        return str(Path(root) / self.version)

    # -- what Lightning calls ------------------------------------------------------------------
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        if self._run() is not None:
            self._handle.config(params)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self._run() is not None:
            self._handle.log(metrics, step=step)

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Store the checkpoint just written, under its name relative to the checkpoint directory."""
        if self._log_checkpoints is None:
            return
        run = self._run()
        if run is None:
            return
        try:
            base = getattr(checkpoint_callback, "dirpath", None)
            paths = {getattr(checkpoint_callback, a, "") for a in ("last_model_path", "best_model_path")}
            for p in sorted(os.path.abspath(x) for x in paths if x and os.path.isfile(x)):
                root = os.path.abspath(base) if base else os.path.dirname(p)
                run.save(p, base_path=root, policy=self._log_checkpoints)
        except Exception as e:
            report("lightning:checkpoint", f"runsync lightning logger: checkpoint not stored in the run: "
                   f"{type(e).__name__}: {e}")

    def finalize(self, status: str) -> None:
        """``"success"`` finishes the run; anything else (``"failed"``) marks it failed."""
        if self._handle.started is None or not self._active():
            return
        self._handle.finish(exit_code=0 if status == "success" else 1)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable for ``ddp_spawn``: a copy starts (or with ``id=``, joins) its own run when used."""
        state = self.__dict__.copy()
        state["_handle"] = RunHandle(self._handle.what, None, dict(self._handle.init_kwargs), adopt=False)
        return state


def _new_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))
