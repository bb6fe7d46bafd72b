"""A run's metric definitions (``define_metric``, spec §3.2 since 1.3), for readers that chart its keys.

Each stream's ``config.json`` ``metrics`` with the stream's WAL tail applied
(definitions not flushed yet, or left by a crash), merged over the streams in
the order they started, as the run's config is (spec §3.2).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..format.errors import FormatError
from ..format.layout import RunLayout
from ..format.meta import Claim, ConfigDoc, governing_metric, load_doc
from ..format.tail import stream_tails

__all__ = ["metric_definitions", "step_metrics"]


def metric_definitions(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Definition name → definition (the DEFINE_METRIC payload) of the run in ``run_dir``."""
    layout = RunLayout(Path(run_dir))
    found: list[tuple[float, str, dict[str, Any]]] = []
    for st in layout.streams():
        incs = st.incarnations()
        if not incs:
            continue
        try:
            first = load_doc(Claim, st.claim(incs[0])).time
            try:
                doc = copy.deepcopy(load_doc(ConfigDoc, st.config))
            except FileNotFoundError:
                doc = ConfigDoc()
            for _inc, cols in stream_tails(st, doc.applied_seq, parts_dir=layout.history).tails:
                doc.apply(cols.meta)
        except (FormatError, OSError):
            continue  # a stream that cannot be read is reported by the run's other readers; no definitions
        found.append((first, st.name, doc.metrics))
    out: dict[str, dict[str, Any]] = {}
    for _t, _name, metrics in sorted(found, key=lambda f: (f[0], f[1].encode())):
        out.update(metrics)
    return out


def step_metrics(definitions: dict[str, dict[str, Any]], keys: list[str]) -> dict[str, str]:
    """Key → the key to plot it against (``step_metric``), for those of ``keys`` whose definition names one."""
    out = {}
    for k in keys:
        d = governing_metric(definitions, k)
        sm = d.get("step_metric") if isinstance(d, dict) else None
        if isinstance(sm, str) and sm and sm != k:
            out[k] = sm
    return out
