"""W&B's module-level API over the current run: ``runsync.config``, ``summary``, ``save``, ``define_metric``...

``runsync.run`` is the current run (None before ``init()`` and after ``finish()``).
``runsync.config`` and ``runsync.summary`` are the current run's; with no run they
are a placeholder that raises a clear error on use, as W&B's do (nothing would
record what is set there).
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

from ..format.errors import RunsyncError
from .run import Run, current
from .settings import notice_once

__all__ = ["PreInit", "module_attr", "save", "define_metric", "alert", "watch", "unwatch", "login"]


class PreInit:
    """``runsync.config`` / ``runsync.summary`` before ``init()``: every use raises, naming what to do."""

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "_name", name)

    def _fail(self, what: str) -> NoReturn:
        raise RunsyncError(f"{self._name}{what} used with no active run: call runsync.init() first "
                           f"(runsync.init(config=...) sets the config at the start)")

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        self._fail(f".{key}")

    def __setattr__(self, key: str, value: Any) -> None:
        self._fail(f".{key}")

    def __getitem__(self, key: Any) -> Any:
        self._fail(f"[{key!r}]")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._fail(f"[{key!r}]")

    def __contains__(self, key: Any) -> bool:
        self._fail(f"[{key!r}]")

    def __iter__(self) -> Any:
        self._fail("")

    def __len__(self) -> int:
        self._fail("")

    def __repr__(self) -> str:
        return f"<{self._name}: no active run; call runsync.init()>"


def module_attr(name: str) -> Any:
    """``runsync.run``, ``runsync.config``, ``runsync.summary``: looked up on every access."""
    run = current()
    if name == "run":
        return run
    if run is None:
        return PreInit(f"runsync.{name}")
    return getattr(run, name)


def _run(what: str) -> Run:
    run = current()
    if run is None:
        raise RunsyncError(f"runsync.{what}() called with no active run; call runsync.init() first")
    return run


def save(glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None,
         policy: str = "live") -> list[str]:
    """Store files in the current run (``Run.save``); W&B's default policy, ``"live"``."""
    return _run("save").save(glob_str, base_path=base_path, policy=policy)


def define_metric(name: str, step_metric: str | None = None, step_sync: bool | None = None,
                  hidden: bool | None = None, summary: str | None = None, goal: str | None = None,
                  overwrite: bool | None = None, **kwargs: Any) -> dict[str, Any]:
    """``Run.define_metric`` on the current run."""
    return _run("define_metric").define_metric(name, step_metric=step_metric, step_sync=step_sync, hidden=hidden,
                                               summary=summary, goal=goal, overwrite=overwrite, **kwargs)


def alert(title: str, text: str = "", level: Any = "INFO", wait_duration: Any = None) -> None:
    """``Run.alert`` on the current run: recorded in the run, never sent anywhere."""
    _run("alert").alert(title, text, level, wait_duration)


def watch(models: Any = None, criterion: Any = None, log: str | None = "gradients", log_freq: int = 1000,
          idx: int | None = None, log_graph: bool = False) -> None:
    """``Run.watch`` on the current run (records nothing yet)."""
    _run("watch").watch(models, criterion, log, log_freq, idx, log_graph)


def unwatch(models: Any = None) -> None:
    run = current()
    if run is not None:
        run.unwatch(models)


def login(key: str | None = None, relogin: bool | None = None, host: str | None = None, force: bool | None = None,
          timeout: int | None = None, anonymous: str | None = None, verify: bool = False, **kwargs: Any) -> bool:
    """W&B's ``login()``: runsync has no account; any key is accepted, never stored nor sent. Returns True."""
    if key is not None:
        notice_once("login", "login(key=...) ignored: runsync logs offline and never stores keys")
    return True
