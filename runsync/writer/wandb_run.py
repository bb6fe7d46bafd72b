"""What a ``Run`` offers W&B's scripts besides runsync's own API: identity properties, ``define_metric``,
``alert``, ``watch``..., and ``run.log``'s W&B signature (issue 15; README "Coming from W&B").

A mixin, so that ``run.py`` keeps the run's life cycle; it uses only what ``Run`` defines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..format.wal import MetaOp
from .encoder import LogValueError, RunFinishedError
from .metrics import Metrics, parse_definition
from .reporter import Reporter
from .settings import notice_once

__all__ = ["WandbRunMixin", "bind_log", "sync_tensorboard", "NO_DATA"]

NO_DATA: Any = object()  # log() called without data: commit the pending step


class WandbRunMixin:
    """W&B's run surface; ``Run`` provides the attributes declared here."""

    id: str
    project: str
    entity: str | None
    dir: Path | None
    mode: str
    _name: str
    _tags: tuple[str, ...]
    _notes: str | None
    _finished: bool
    _reporter: Reporter
    _metrics: Metrics | None

    def _write_meta(self, op: int, payload: Any) -> None:  # pragma: no cover - Run's
        raise NotImplementedError

    def log(self, data: Any = NO_DATA, step: int | None = None, commit: bool | None = None,
            sync: bool | None = None) -> None:  # pragma: no cover - bound per instance by Run
        raise NotImplementedError

    # -- identity (run.json, spec §3.1) -----------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._fixed("name", value)

    @property
    def tags(self) -> tuple[str, ...]:
        return self._tags

    @tags.setter
    def tags(self, value: Any) -> None:
        self._fixed("tags", value)

    @property
    def notes(self) -> str | None:
        return self._notes

    @notes.setter
    def notes(self, value: str | None) -> None:
        self._fixed("notes", value)

    def _fixed(self, what: str, value: Any) -> None:
        """W&B lets a script rename a run after init; run.json is written once here (spec §3.1): say so."""
        self._reporter.problem(f"fixed-{what}", f"run.{what} = {value!r} not recorded: run.json is written once at "
                               f"init(); pass init({what}=...) (or the RUNSYNC_/WANDB_ variable) instead")

    @property
    def url(self) -> str | None:
        """The run directory as a ``file://`` URL (None for a disabled run)."""
        return self.dir.resolve().as_uri() if self.dir is not None else None

    def get_url(self) -> str | None:
        return self.url

    @property
    def path(self) -> str:
        """W&B's ``entity/project/id``."""
        return "/".join(p for p in (self.entity, self.project, self.id) if p)

    @property
    def disabled(self) -> bool:
        return self.mode == "disabled"

    @property
    def offline(self) -> bool:
        return self.mode != "online"

    def define_metric(self, name: str, step_metric: str | None = None, step_sync: bool | None = None,
                      hidden: bool | None = None, summary: str | None = None, goal: str | None = None,
                      overwrite: bool | None = None, **kwargs: Any) -> dict[str, Any]:
        """How ``name`` (a key or a glob such as ``"val/*"``) is summarised and plotted (spec §3.2, §3.3).

        ``summary``: ``"min"``, ``"max"``, ``"mean"``, ``"last"``, ``"best"`` (with
        ``goal="minimize"|"maximize"``), ``"none"``, or several joined by commas;
        ``run.summary[name]`` then holds ``{"min": ...}`` as in W&B. ``step_metric``:
        the key to plot ``name`` against. Returns the definition as recorded.
        """
        if "objective" in kwargs and goal is None:  # W&B's docs call goal "objective" in places
            goal = kwargs.pop("objective")
        if kwargs:
            raise TypeError(f"define_metric() got unexpected argument(s) {', '.join(sorted(kwargs))}")
        if self._metrics is None:
            self._metrics = Metrics(
                lambda k, v: self._write_meta(MetaOp.SUMMARY_SET, {"key": k, "value": v}),
                lambda k: self._write_meta(MetaOp.SUMMARY_DELETE, {"key": k}))
        d = parse_definition(name, step_metric, summary, goal, hidden, step_sync, self._metrics.defs.get(name),
                             overwrite)
        self._write_meta(MetaOp.DEFINE_METRIC, d.record())
        self._metrics.define(d)
        return d.record()

    def alert(self, title: str, text: str = "", level: Any = "INFO", wait_duration: Any = None) -> None:
        """Record an alert in the run: a ``Text`` value under the key ``alerts`` at the current step
        (in history and the media table, shown by ``show`` and the report), and a line on stderr."""
        lvl = str(getattr(level, "value", level) or "INFO").upper()
        from .media import Text

        message = f"[{lvl}] {title}" + (f": {text}" if text else "")
        self._reporter.info(f"alert {message}")
        if self._finished:
            raise RunFinishedError("alert() called after finish()")
        self.log({"alerts": Text(message, caption=str(title))}, commit=False)

    def watch(self, models: Any = None, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000,
              idx: int | None = None, log_graph: bool = False) -> None:
        """W&B's ``watch()``: accepted; gradient and parameter histograms are not recorded yet (one notice)."""
        notice_once("watch", "watch() records nothing yet: log runsync.Histogram(p.grad) yourself for gradient "
                    "histograms")

    def unwatch(self, models: Any = None) -> None:
        """W&B's ``unwatch()``: nothing to undo (``watch()`` installs no hooks yet)."""

    def log_code(self, root: str | None = ".", name: str | None = None, include_fn: Any = None,
                 exclude_fn: Any = None) -> None:
        """W&B's ``log_code()``: the code is already recorded at ``init()`` (git commit and patch, spec §16)."""
        notice_once("log_code", "log_code() adds nothing: the git commit and a patch of uncommitted changes are "
                    "recorded at init() (RUNSYNC_DISABLE_CODE=true to turn off); save other files with save()")

    def mark_preempting(self) -> None:
        """W&B's ``mark_preempting()``: nothing to do; a run killed by SIGTERM is flushed and marked failed."""



def sync_tensorboard(run: WandbRunMixin) -> None:
    """``init(sync_tensorboard=True)``: the integrations package patches TensorBoard's writers, when present.

    Looked up by name so that the writer does not depend on it (it depends on the writer)."""
    try:
        # the one import of integrations from the writer: lazy, on request only (tests/test_layering.py allows it)
        from ..integrations.tensorboard import patch
    except ImportError:
        notice_once("sync-tensorboard", "init(sync_tensorboard=True) ignored: this runsync has no TensorBoard "
                    "integration; log the scalars with run.log()")
        return
    try:
        if not patch():
            run._reporter.problem("tensorboard", "sync_tensorboard=True, but neither torch.utils.tensorboard nor "
                                  "tensorboardX is installed: nothing to sync")
    except Exception as e:  # an integration that fails never stops training
        run._reporter.problem("tensorboard", f"TensorBoard integration not started: {type(e).__name__}: {e}")


def bind_log(run: WandbRunMixin, enc_log: Callable[..., None], doc: str | None) -> Callable[..., None]:
    """``run.log``: W&B's signature over the encoder's ``log``, plus ``define_metric`` summaries."""

    def log(data: Any = NO_DATA, step: int | None = None, commit: bool | None = None,
            sync: bool | None = None) -> None:
        if data is NO_DATA:
            data = {}  # log() alone commits the pending step, as W&B
        try:
            enc_log(data, step, commit is not False)
        except LogValueError:
            if run._metrics is not None:
                run._metrics.observe(data)
            raise
        if run._metrics is not None:
            run._metrics.observe(data)

    log.__doc__ = doc
    return log
