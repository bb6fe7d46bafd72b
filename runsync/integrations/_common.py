"""What every integration shares: the run it logs to, logging that never raises, and plain config.

A framework calls an integration from inside its training loop, so nothing here may raise
into training (runsync's rule): a rejected value (spec §5.4), a finished run or a failure of
runsync's own is reported once per kind on stderr and training goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import inspect
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..writer import Run, current, init

__all__ = ["RunHandle", "plain", "plain_config", "report"]

_MAX_TEXT = 2000  # a config value shown as text (an object's str) is cut to this many characters
_MAX_LIST = 10_000  # longer sequences and arrays become a short description, not a list in config.json
_MAX_DEPTH = 32  # deeper nesting (or a cycle) becomes text

_seen: set[str] = set()
_seen_lock = threading.Lock()


def report(kind: str, message: str) -> None:
    """Print ``message`` once per ``kind`` per process on stderr (silenced by ``RUNSYNC_SILENT``).

    Not ``warnings.warn``: a user running with ``-W error`` would get the exception in training.
    """
    with _seen_lock:
        if kind in _seen:
            return
        _seen.add(kind)
    if os.environ.get("RUNSYNC_SILENT", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    try:
        print(f"runsync: WARNING {message}", file=sys.stderr, flush=True)
    except Exception:  # a closed stderr must not end training either
        pass


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON data for config.json (spec §3.2), never refusing: what JSON cannot hold becomes text.

    Frameworks hand over hyperparameters as Namespaces, dataclasses, enums, dtypes, callables and
    modules; the writer refuses anything not JSON-like (``TypeError``), so they are converted here:
    mappings and Namespaces to objects, dataclasses to their fields, sequences to lists, 0-d arrays
    and tensors to their item, small arrays to lists, and anything else to its (shortened) ``str``.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth >= _MAX_DEPTH:
        return _text(value)
    if isinstance(value, enum.Enum):
        return plain(value.value, depth + 1) if isinstance(value.value, (str, int, float, bool)) else value.name
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        try:
            items = list(value.items())
        except Exception:
            return _text(value)
        return {str(k): plain(v, depth + 1) for k, v in items}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        if len(seq) > _MAX_LIST:
            return f"<{type(value).__name__} of {len(seq)} items>"
        return [plain(v, depth + 1) for v in seq]
    shape = getattr(value, "shape", None)
    if shape is not None and callable(getattr(value, "tolist", None)):
        try:
            size = 1
            for n in shape:
                size *= int(n)
            if size <= _MAX_LIST:
                return plain(value.tolist(), depth + 1)
            return f"<{type(value).__name__} of shape {tuple(int(n) for n in shape)}>"
        except Exception:
            return _text(value)
    if isinstance(value, type) or inspect.isroutine(value):  # a class or function: its qualified name
        qual = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        mod = getattr(value, "__module__", None)
        if isinstance(qual, str):
            return f"{mod}.{qual}" if isinstance(mod, str) else qual
    return _text(value)


def _text(value: Any) -> str:
    try:
        s = str(value)
    except Exception:
        s = f"<{type(value).__name__}>"
    return s if len(s) <= _MAX_TEXT else s[:_MAX_TEXT] + "…"


def plain_config(value: Any, what: str) -> dict[str, Any]:
    """A mapping-like ``value`` as a config update: plain values, and no empty top-level key (spec §3.2)."""
    data = plain(value)
    if not isinstance(data, dict):
        data = {"value": data}
    empty = [k for k in data if not k]
    for k in empty:
        data.pop(k)
        report(f"{what}:config-empty-key", f"{what}: a hyperparameter with an empty name was not recorded "
               "(config keys must be non-empty, spec §3.2)")
    return data


class RunHandle:
    """The run an integration logs to, and whether the integration may finish it.

    ``run=``: a run of the user's own, never finished by the integration. Otherwise, with no
    ``init_kwargs`` (and ``adopt``), the run the user already started with ``runsync.init()``, if one is active
    (also not finished by us). Otherwise a run started on first use with ``runsync.init(**init_kwargs)``,
    which the integration finishes; used again after it finished (``trainer.test()`` after
    ``trainer.fit()``, ``evaluate()`` after ``train()``), it is resumed as the next incarnation
    of the same stream (spec §6.2) rather than lost.
    """

    def __init__(self, what: str, run: Run | None, init_kwargs: dict[str, Any], adopt: bool = True) -> None:
        self.what = what
        self.init_kwargs = dict(init_kwargs)  # for runsync.init(), until the run starts
        self._run: Run | None = run
        self.owned = run is None
        self._adopt = adopt and run is None and not init_kwargs
        self._lock = threading.Lock()
        self._failed_start = False

    def __deepcopy__(self, memo: dict[int, Any]) -> RunHandle:
        """Frameworks copy callbacks (scikit-learn style ``clone``): the copy logs to the same run, if any."""
        new = RunHandle(self.what, None, self.init_kwargs)
        new._run, new.owned, new._adopt = self._run, self.owned, self._adopt
        return new

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a callback sent to worker processes): the copy starts its own run when used."""
        return {"what": self.what, "init_kwargs": self.init_kwargs, "adopt": self._adopt}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["what"], None, state["init_kwargs"], adopt=state["adopt"])  # type: ignore[misc]

    @property
    def started(self) -> Run | None:
        """The run, if one was started or given; never starts one."""
        return self._run

    def get(self) -> Run | None:
        """The run to log to, started (or resumed) if needed; ``None`` if it cannot be started (reported)."""
        run = self._run
        if run is not None and not (self.owned and run.finished):
            return run
        with self._lock:
            run = self._run
            if run is not None and not (self.owned and run.finished):
                return run
            if self._failed_start:
                return None
            try:
                if run is None and self._adopt:
                    cur = current()
                    if cur is not None and not cur.finished:
                        self._run, self.owned = cur, False
                        return cur
                if run is None:
                    self._run = init(**self.init_kwargs)
                else:  # our run finished and is used again: its next incarnation (spec §6.2)
                    kwargs = dict(self.init_kwargs, id=run.id, resume=True, stream=run.stream,
                                  project=run.project)
                    if run.dir is not None:
                        kwargs["dir"] = run.dir.parent
                    self._run = init(**kwargs)
            except Exception as e:
                self._failed_start = True
                report(f"{self.what}:init", f"{self.what}: runsync.init() failed, nothing will be logged: "
                       f"{type(e).__name__}: {e}")
                return None
            return self._run

    def log(self, data: Mapping[str, Any], step: int | None = None) -> None:
        """``run.log(data, step=step)``; rejected values (spec §5.4) and failures are reported, never raised."""
        if not data:
            return
        run = self.get()
        if run is None:
            return
        try:
            run.log(data, step=step)
        except Exception as e:
            keys = ",".join(sorted(k for k, _ in getattr(e, "errors", []))) or type(e).__name__
            report(f"{self.what}:log:{keys}", f"{self.what}: {e} (training continues)")

    def config(self, data: Any) -> None:
        """Merge ``data`` (anything mapping-like) into the run's config; never raises."""
        run = self.get()
        if run is None:
            return
        try:
            update = plain_config(data, self.what)
            if update:
                run.config.update(update)
        except Exception as e:
            report(f"{self.what}:config", f"{self.what}: config not recorded: {type(e).__name__}: {e}")

    def summary(self, data: Mapping[str, Any]) -> None:
        """Set summary keys by hand (spec §3.3); never raises."""
        run = self.get()
        if run is None:
            return
        for k, v in data.items():
            try:
                run.summary[k] = v
            except Exception as e:
                report(f"{self.what}:summary:{k}", f"{self.what}: summary {k!r} not recorded: "
                       f"{type(e).__name__}: {e}")

    def finish(self, exit_code: int = 0) -> None:
        """Finish the run if the integration started it (once: ``Run.finish`` is idempotent); never raises."""
        run = self._run
        if run is None or not self.owned:
            return
        try:
            run.finish(exit_code=exit_code)
        except Exception as e:
            report(f"{self.what}:finish", f"{self.what}: the run could not finish: {type(e).__name__}: {e}")
