"""``runsync ls`` and ``runsync show``: one table of runs, one run in detail."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import (DEFAULT_DIR, REDUCE_CHOICES, SUMMARY_NOTE, age, flat, fmt, jsonable, runs_dir, summary_source,
                      table)


def cmd_ls(args: argparse.Namespace) -> int:
    from ..reader.runs import run_records

    root = runs_dir(args.dir)
    if not root.is_dir():
        print(f"runsync: no runs directory {root} (set RUNSYNC_DIR or pass DIR)", file=sys.stderr)
        return 2
    records, errors = run_records(root)
    # Newest first, with the runs of one group (ranks of a job, a sweep) kept together.
    newest: dict[str, float] = {}
    for r in records:
        g = r.get("group") or ""
        newest[g] = max(newest.get(g, 0.0), r["created"])
    records.sort(key=lambda r: (newest[r.get("group") or ""] if r.get("group") else r["created"],
                                r.get("group") or "", r["created"]), reverse=True)
    if args.json:
        print(json.dumps({"runs": jsonable(records), "errors": [{"path": str(p), "error": e} for p, e in errors]},
                         indent=1, allow_nan=True))
        return 1 if errors else 0
    from .runs import varying_config

    shown_keys = _summary_columns(records, args.summary)
    config_cols = [] if args.summary else varying_config(records, exclude=set(), limit=2)
    grouped = any(r.get("group") for r in records)
    causes = any(r.get("error") for r in records)
    rows = []
    for r in records:
        rows.append([r["name"], r["id"]] + ([r.get("group") or "-"] if grouped else [])
                    + [r["status"], str(r["steps"]), age(r["created"])]
                    + [fmt(r.get(c)) for c in config_cols]
                    + [fmt(r.get(f"summary.{k}")) + summary_source(r, k) for k in shown_keys]
                    + ([_short(r.get("error"))] if causes else []))
    # the column names runsync runs, --where and --columns use: one header style for ls and runs
    print(table(rows, ["name", "id"] + (["group"] if grouped else []) + ["status", "steps", "created"] + config_cols
                + [f"summary.{k}" for k in shown_keys] + (["error"] if causes else [])))
    if not records:
        print(f"(no runs in {root})")
    elif any(summary_source(r, k) for r in records for k in shown_keys):
        print(SUMMARY_NOTE)
    for p, e in errors:
        print(f"runsync: skipped {p}: {e}", file=sys.stderr)
    return 1 if errors else 0


def _short(cause: str | None, width: int = 40) -> str:
    """A failed run's cause on one line of a table (``runsync show`` prints it whole)."""
    if not cause:
        return ""
    line = " ".join(cause.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _summary_columns(records: list[dict[str, Any]], wanted: list[str] | None) -> list[str]:
    if wanted:
        return wanted
    counts: dict[str, int] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith("summary.") and isinstance(v, (int, float)) and not isinstance(v, bool):
                counts[k[8:]] = counts.get(k[8:], 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:3]


def _stream_note(key: str, source: str, per_stream: dict[str, dict[str, Any]]) -> str:
    """``(rank0; 8 streams differ: min 0.003, max 7.003)`` for a summary key whose streams' values differ."""
    vals = [d[key] for d in per_stream.values() if key in d]
    nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    spread = f": min {fmt(min(nums))}, max {fmt(max(nums))}" if len(nums) == len(vals) else ""
    return f"   ({source}; {len(vals)} streams differ{spread})"


def cmd_show(args: argparse.Namespace) -> int:
    from ..format.history import resolve
    from ..reader.run import last_values, open_run
    from ..reader.runs import find_run
    from ..format.meta import governing_metric
    from ..reader.metrics import metric_definitions
    from ..reader.sparkline import choose_keys, format_sparks, numeric_lines, spark
    from ..reader.streams import first_by_stream

    view = open_run(find_run(args.run, args.dir))
    meta = view.meta
    resolved = resolve(view.rows())  # read once: last values and sparklines
    last, last_from = last_values(resolved)
    config, per_stream = view.documents_by_stream()
    summary, summary_from = first_by_stream(per_stream)
    if args.json:
        print(json.dumps(jsonable({"meta": meta, "config": config, "summary": summary, "last": last,
                                   "summary_from": summary_from, "last_from": last_from}),
                         indent=1, allow_nan=True))
        return 0
    print(f"run      {meta['name']}  (id {meta['id']})")
    print(f"project  {meta['project']}" + (f"   group {meta['group']}" if meta.get("group") else ""))
    if meta.get("tags"):
        print(f"tags     {', '.join(meta['tags'])}")
    print(f"status   {meta['status']}   created {age(meta['created'])}   duration {meta['duration']:.1f} s")
    print(f"path     {view.path}")
    for s in meta["streams"]:
        print(f"stream   {s['stream']}: {s['state']} (incarnation {s['incarnation']}, pid {s['pid']} on {s['host']}"
              + (f", {s['dropped_rows']} rows dropped" if s.get("dropped_rows") else "")
              + (f", write-ahead log {s['durability']}" if s.get("durability") else "")
              + (f" in {s['wal_dir']}" if s.get("wal_dir") else "") + ")")
        if s.get("error"):
            label = "cause   " if s["state"] == "failed" else "problem "
            print(f"  {label} {s['error']}")
        if not s.get("tail_visible", True):
            print(f"         its write-ahead log is on host {s['host']}, not readable here: rows since the last "
                  "history part are not shown")
    print("\nconfig")
    for k, v in flat(config):
        print(f"  {k} = {fmt(v)}")
    print("\nsummary")
    for k, v in summary.items():
        print(f"  {k} = {fmt(v)}" + (_stream_note(k, summary_from[k], per_stream) if k in summary_from else ""))
    print("\nlast values")
    for k, v in last.items():
        print(f"  {k} = {fmt(v)}" + (f"   ({last_from[k]}; streams differ)" if k in last_from else ""))
    lines = numeric_lines(resolved, args.keys, args.reduce)
    defs = metric_definitions(view.layout.dir)
    shown = {k: max(len(s) for _l, s, _v in ls) for k, ls in lines.items()  # define_metric(hidden=True): not
             if not (isinstance(d := governing_metric(defs, k), dict) and d.get("hidden"))}  # drawn unless asked
    keys = args.keys if args.keys else choose_keys(shown, summary)
    sparks = [spark(label, s, v, width=args.spark_width) for k in keys if k in lines for label, s, v in lines[k]]
    if sparks:
        shown = sum(1 for k in keys if k in lines)
        print("\nmetrics" + (f" ({shown} of {len(lines)} numeric keys; --keys to choose)"
                             if len(lines) > shown else ""))
        for line in format_sparks(sparks):
            print(line)
        if any(len(lines[k]) > 1 for k in keys if k in lines):
            print("  (one line per stream; --reduce mean|min|max for one line over the streams)")
    return 0


def register(sub: Any) -> None:
    ls = sub.add_parser("ls", help="list runs in a directory", description="Table of runs: name, id, status, "
                        "steps, age and a few summary values, newest first.")
    ls.add_argument("dir", nargs="?", help=f"directory of runs (default {DEFAULT_DIR})")
    ls.add_argument("--summary", nargs="*", metavar="KEY", help="summary keys to show as columns")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)
    show = sub.add_parser("show", help="show one run", description="Metadata, config, summary, the last value "
                          "of every logged key, and sparklines of the main metrics (first → last, min, max) of one "
                          "run.")
    show.add_argument("run", help="run directory, id, name, or 'latest'")
    show.add_argument("--dir", help=f"directory of runs to look in (default {DEFAULT_DIR})")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--keys", nargs="+", metavar="KEY",
                      help="draw sparklines of these keys, e.g. --keys train/loss val/acc (default: up to 8 numeric "
                      "keys: those in the summary first, then the most often logged)")
    show.add_argument("--spark-width", type=int, default=40, metavar="N",
                      help="characters per sparkline (default 40; longer histories keep each bucket's min and max)")
    show.add_argument("--reduce", choices=REDUCE_CHOICES, metavar="HOW",
                      help="a key several streams (ranks) logged: one sparkline of the mean, min or max over the "
                      "streams per step instead of one per stream, e.g. --reduce mean")
    show.set_defaults(func=cmd_show)

