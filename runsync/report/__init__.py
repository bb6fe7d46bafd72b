"""``runsync report``: one self-contained HTML file to look at runs where they are.

The file needs no server and makes no request: charts (uPlot, inlined), data
and styles are all inside, so it can be copied off an airgapped cluster, mailed,
or opened from a shared disk.

Modules: ``build`` reads runs into the report data, ``downsample`` picks the
points to draw, ``media`` embeds images/histograms/tables/text, ``html`` writes
the document (``--where`` is the language of ``runsync runs``, ``runsync.reader.query``); ``report.js``, ``smooth.js``
and ``report.css`` are the page.

``runsync ui`` serves the same page live (``live`` keeps the runs of a directory or
a remote current and cuts one chart's data out of a run's block, ``serve`` is the
aiohttp server, ``served.js`` the page's only network code, absent from a report):
the page then fetches the index (the data below without the blocks, plus ``v``,
``pending`` and each run's version ``rv``) and, per chart, one key's BLOCK per run.

Report data (JSON, format 1)::

    {"format": 1, "title": str, "generated": unix s, "source": str, "options": {...},
     "keys": [metric key], "xkeys": [key usable as x axis], "system_keys": [...], "media_keys": [...],
     "step_metrics": {metric key: x-axis key}, # define_metric(step_metric=) shared by the runs (spec §3.2)
     "media_omitted": int, "errors": [{"path", "error"}],
     "runs": [{"id", "name", "project", "group", "job_type", "tags", "status", "created", "start",
               "duration", "steps", "streams", "path", "config": {flat key: value}, "summary": {...},
               "summary_from"?: {key: stream},  # keys whose streams' values differ: the stream shown (§3.3)
               "t0": run start (unix s),
               "history": BLOCK, "system": BLOCK,              # absent when nothing numeric
               "media": {key: [{"step", "index", "kind", "caption"?, "data", "w"?, "h"?}]}}]}

    BLOCK = {"steps": Δ[int],            # the run's step table: every step a drawn point uses, delta-coded
             "time": Δ[int],             # ms after t0 at each of those steps, delta-coded
             "x": {key: {"v": [num|null], "f32"?: 1}},   # x-axis key's value at (or latest before) each step
             "series": {key: {"i": Δ[int],   # indices into the step table, delta-coded
                              "y": [num],    # the logged values at those steps ("NaN"/"Infinity" as strings)
                              "n": int,      # points logged in all (drawn ≤ n)
                              "f32"?: 1,     # y written as float32 digits: Math.fround restores them
                              # a history key several streams (ranks) logged: the series above is the
                              # mean over the streams per step, and each stream's own follows, in
                              # reader order (spec §4.6): main, rank0, rank1, ...
                              "agg"?: "mean", "streams"?: [{"s": stream, "i", "y", "n", "f32"?}]}}}

Media ``data``: image → ``data:image/png;base64,...``; histogram → ``{"counts", "edges"}``;
table → ``{"columns", "rows", "total"}``; text → str.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .build import ReportOptions, RunDone, collect
from .html import render

__all__ = ["ReportOptions", "ReportResult", "RunDone", "build_report", "collect", "render"]


@dataclass(frozen=True)
class ReportResult:
    path: Path
    runs: int
    bytes: int
    seconds: float
    errors: int


def build_report(root: str | Path, output: str | Path, refs: list[str] | None = None, where: str | None = None,
                 options: ReportOptions | None = None, title: str | None = None,
                 progress: Callable[[RunDone], None] | None = None,
                 opener: Callable[[str], Any] | None = None) -> ReportResult:
    """Read the chosen runs under ``root`` and write the report to ``output`` (atomically)."""
    t = time.monotonic()
    data = collect(root, refs, where, options, title, progress, opener)
    text = render(data).encode("utf-8")
    out = Path(output)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(text)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return ReportResult(out, len(data["runs"]), len(text), time.monotonic() - t, len(data["errors"]))
