"""``runsync ls`` and ``runsync show``: one table of runs, one run in detail."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import DEFAULT_DIR, age, flat, fmt, jsonable, runs_dir, table


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
    shown_keys = _summary_columns(records, args.summary)
    grouped = any(r.get("group") for r in records)
    rows = []
    for r in records:
        rows.append([r["name"], r["id"]] + ([r.get("group") or "-"] if grouped else [])
                    + [r["status"], str(r["steps"]), age(r["created"])]
                    + [fmt(r.get(f"summary.{k}")) for k in shown_keys])
    print(table(rows, ["NAME", "ID"] + (["GROUP"] if grouped else []) + ["STATUS", "STEPS", "CREATED"] + shown_keys))
    if not records:
        print(f"(no runs in {root})")
    for p, e in errors:
        print(f"runsync: skipped {p}: {e}", file=sys.stderr)
    return 1 if errors else 0


def _summary_columns(records: list[dict[str, Any]], wanted: list[str] | None) -> list[str]:
    if wanted:
        return wanted
    counts: dict[str, int] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith("summary.") and isinstance(v, (int, float)) and not isinstance(v, bool):
                counts[k[8:]] = counts.get(k[8:], 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:3]


def _last_values(resolved: Any) -> dict[str, Any]:
    """The value each key had at its last resolved step (as ``RunView.last_values``)."""
    from ..reader.run import _row_value

    out: dict[str, Any] = {}
    for row in resolved.select(["key", "type", "value", "int", "text"]).to_pylist():
        out[row["key"]] = _row_value(row)
    return dict(sorted(out.items()))


def cmd_show(args: argparse.Namespace) -> int:
    from ..format.history import resolve
    from ..reader.run import open_run
    from ..reader.runs import find_run
    from ..format.meta import governing_metric
    from ..reader.metrics import metric_definitions
    from ..reader.sparkline import choose_keys, format_sparks, numeric_series, spark

    view = open_run(find_run(args.run, args.dir))
    meta = view.meta
    resolved = resolve(view.rows())  # read once: last values and sparklines
    last = _last_values(resolved)
    config, summary = view.documents()
    if args.json:
        print(json.dumps(jsonable({"meta": meta, "config": config, "summary": summary, "last": last}),
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
              + (f", {s['dropped_rows']} rows dropped" if s.get("dropped_rows") else "") + ")")
    print("\nconfig")
    for k, v in flat(config):
        print(f"  {k} = {fmt(v)}")
    print("\nsummary")
    for k, v in summary.items():
        print(f"  {k} = {fmt(v)}")
    print("\nlast values")
    for k, v in last.items():
        print(f"  {k} = {fmt(v)}")
    series = numeric_series(resolved, args.keys)
    defs = metric_definitions(view.layout.dir)
    shown = {k: len(v[0]) for k, v in series.items()  # define_metric(hidden=True): not drawn unless asked for
             if not (isinstance(d := governing_metric(defs, k), dict) and d.get("hidden"))}
    keys = args.keys if args.keys else choose_keys(shown, summary)
    sparks = [spark(k, *series[k], width=args.spark_width) for k in keys if k in series]
    if sparks:
        print("\nmetrics" + (f" ({len(sparks)} of {len(series)} numeric keys; --keys to choose)"
                             if len(series) > len(sparks) else ""))
        for line in format_sparks(sparks):
            print(line)
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
    show.set_defaults(func=cmd_show)

