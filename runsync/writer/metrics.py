"""``define_metric()``: per-key summary aggregation and the recorded metric definitions (spec §3.2, §3.3).

A definition names a key or a glob (``"val/*"``), and says how the key's summary
is formed: ``summary="min"`` (or ``"max"``, ``"mean"``, ``"best"`` with ``goal=``,
``"last"``, ``"none"``, or several joined by commas). The definition itself is one
DEFINE_METRIC record (spec §8.3.5, since 1.3), applied into ``config.json``'s
``metrics``; the aggregates are manual summary values (SUMMARY_SET, spec §3.3),
``summary["loss"] == {"min": 0.1}`` as W&B shapes them, written from the
caller's thread after each ``log()`` (no I/O: one WAL record when a value changes).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from ..format.meta import governing_metric
from ..format.values import flatten

__all__ = ["MetricDef", "Metrics", "AGGREGATIONS", "GOALS", "parse_definition"]

AGGREGATIONS = ("min", "max", "mean", "last", "best", "none", "first")
GOALS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


@dataclass
class MetricDef:
    name: str
    step_metric: str | None = None
    summary: list[str] = field(default_factory=list)
    goal: str | None = None
    hidden: bool = False
    step_sync: bool | None = None

    def record(self) -> dict[str, Any]:
        """The DEFINE_METRIC payload (spec §8.3.5)."""
        return {"name": self.name, "step_metric": self.step_metric, "summary": list(self.summary),
                "goal": self.goal, "hidden": self.hidden}


def parse_definition(name: Any, step_metric: Any = None, summary: Any = None, goal: Any = None,
                     hidden: Any = None, step_sync: Any = None, previous: MetricDef | None = None,
                     overwrite: bool | None = None) -> MetricDef:
    """Check the arguments of ``define_metric()`` and merge them with an earlier definition of ``name``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"define_metric(): name must be a non-empty str, got {name!r}")
    if step_metric is not None and (not isinstance(step_metric, str) or not step_metric):
        raise TypeError(f"define_metric({name!r}): step_metric must be a key (str), got {step_metric!r}")
    aggs: list[str] = []
    if summary is not None:
        if not isinstance(summary, str):
            raise TypeError(f"define_metric({name!r}): summary must be a str such as 'min' or 'min,max'")
        aggs = [a.strip().lower() for a in summary.split(",") if a.strip()]
        bad = [a for a in aggs if a not in AGGREGATIONS]
        if bad:
            raise ValueError(f"define_metric({name!r}): unknown summary {', '.join(bad)}; "
                             f"use one or more of {', '.join(AGGREGATIONS)}")
    if goal is not None:
        if not isinstance(goal, str) or goal.lower() not in GOALS:
            raise ValueError(f"define_metric({name!r}): goal must be 'minimize' or 'maximize', got {goal!r}")
        goal = GOALS[goal.lower()]
    d = MetricDef(name) if previous is None or overwrite else MetricDef(
        name, previous.step_metric, list(previous.summary), previous.goal, previous.hidden, previous.step_sync)
    if step_metric is not None:
        d.step_metric = step_metric
    for a in aggs:  # W&B adds summaries of repeated calls ("min" then "max": both)
        if a not in d.summary:
            d.summary.append(a)
    if goal is not None:
        d.goal = goal
    if hidden is not None:
        d.hidden = bool(hidden)
    if step_sync is not None:
        d.step_sync = bool(step_sync)
    if "best" in d.summary and d.goal is None:
        raise ValueError(f"define_metric({name!r}, summary='best') needs goal='minimize' or goal='maximize'")
    return d


def _number(value: Any) -> float | int | None:
    """``value`` as a Python int or float if it is a real number (bool excluded), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) in ((), (1,)):
        try:
            v = item()
        except Exception:
            return None
        return _number(v)
    return None


class _Agg:
    __slots__ = ("min", "max", "sum", "n", "first", "last")

    def __init__(self) -> None:
        self.min: float | int = math.inf
        self.max: float | int = -math.inf
        self.sum = 0.0
        self.n = 0
        self.first: float | int | None = None
        self.last: float | int | None = None

    def add(self, v: float | int) -> None:
        if not math.isnan(v):
            self.min = min(self.min, v)
            self.max = max(self.max, v)
        self.sum += v
        self.n += 1
        if self.first is None:
            self.first = v
        self.last = v

    def value(self, d: MetricDef) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for a in d.summary:
            if a == "min" and self.min != math.inf:
                out["min"] = self.min
            elif a == "max" and self.max != -math.inf:
                out["max"] = self.max
            elif a == "mean" and self.n:
                out["mean"] = self.sum / self.n
            elif a == "last" and self.last is not None:
                out["last"] = self.last
            elif a == "first" and self.first is not None:
                out["first"] = self.first
            elif a == "best":
                best = self.min if d.goal == "minimize" else self.max
                if best not in (math.inf, -math.inf):
                    out["best"] = best
        return out


class Metrics:
    """The run's metric definitions and running aggregates; ``observe()`` follows each ``log()``."""

    def __init__(self, set_summary: Callable[[str, Any], None], delete_summary: Callable[[str], None]) -> None:
        self.defs: dict[str, MetricDef] = {}
        self._set = set_summary
        self._delete = delete_summary
        self._match: dict[str, MetricDef | None] = {}
        self._aggs: dict[str, _Agg] = {}
        self._shown: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # log() may be called from several threads

    def define(self, d: MetricDef) -> None:
        self.defs[d.name] = d
        self._match.clear()

    def lookup(self, key: str) -> MetricDef | None:
        """The definition that governs ``key`` (spec §3.2): its own name, else the longest matching glob."""
        if key in self._match:
            return self._match[key]
        d: MetricDef | None = governing_metric(self.defs, key)
        self._match[key] = d
        return d

    def observe(self, data: Mapping[str, Any]) -> None:
        """Update the summaries of the keys of one ``log()`` call that have aggregating definitions."""
        with self._lock:
            self._observe(data)

    def _observe(self, data: Mapping[str, Any]) -> None:
        for key, value in flatten(data):
            d = self.lookup(key)
            if d is None or not d.summary or d.summary == ["last"]:
                continue
            if d.summary == ["none"]:  # no summary for this key at all
                self._delete(key)
                continue
            v = _number(value)
            if v is None:
                continue
            agg = self._aggs.get(key)
            if agg is None:
                agg = self._aggs[key] = _Agg()
            agg.add(v)
            shown = agg.value(d)
            if shown and shown != self._shown.get(key):
                self._shown[key] = shown
                self._set(key, shown)
