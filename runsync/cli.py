"""The ``runsync`` command line: list and inspect runs (more commands join as they land)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from .format.errors import RunsyncError

__all__ = ["main"]

_DEFAULT_DIR = "$RUNSYNC_DIR or ./runs"


def _root(arg: str | None) -> Path:
    return Path(arg or os.environ.get("RUNSYNC_DIR") or "runs")


def _age(t: float | None) -> str:
    if t is None:
        return "-"
    d = max(0.0, time.time() - t)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= size:
            return f"{d / size:.0f}{unit} ago"
    return f"{d:.0f}s ago"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.4g}"
    if v is None:
        return "-"
    return str(v)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str, allow_nan=True))


def cmd_ls(args: argparse.Namespace) -> int:
    from .reader.runs import run_records

    root = _root(args.dir)
    if not root.is_dir():
        print(f"runsync: no runs directory {root} (set RUNSYNC_DIR or pass DIR)", file=sys.stderr)
        return 2
    records, errors = run_records(root)
    records.sort(key=lambda r: r["created"], reverse=True)
    if args.json:
        print(json.dumps({"runs": _jsonable(records), "errors": [{"path": str(p), "error": e} for p, e in errors]},
                         indent=1, allow_nan=True))
        return 1 if errors else 0
    shown_keys = _summary_columns(records, args.summary)
    rows = []
    for r in records:
        rows.append([r["name"], r["id"], r["status"], str(r["steps"]), _age(r["created"])]
                    + [_fmt(r.get(f"summary.{k}")) for k in shown_keys])
    print(_table(rows, ["NAME", "ID", "STATUS", "STEPS", "CREATED"] + shown_keys))
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


def cmd_show(args: argparse.Namespace) -> int:
    from .reader.run import open_run
    from .reader.runs import find_run

    view = open_run(find_run(args.run, args.dir))
    meta = view.meta
    last = view.last_values()
    if args.json:
        print(json.dumps(_jsonable({"meta": meta, "config": view.config, "summary": view.summary, "last": last}),
                         indent=1, allow_nan=True))
        return 0
    print(f"run      {meta['name']}  (id {meta['id']})")
    print(f"project  {meta['project']}" + (f"   group {meta['group']}" if meta.get("group") else ""))
    if meta.get("tags"):
        print(f"tags     {', '.join(meta['tags'])}")
    print(f"status   {meta['status']}   created {_age(meta['created'])}   duration {meta['duration']:.1f} s")
    print(f"path     {view.path}")
    for s in meta["streams"]:
        print(f"stream   {s['stream']}: {s['state']} (incarnation {s['incarnation']}, pid {s['pid']} on {s['host']}"
              + (f", {s['dropped_rows']} rows dropped" if s.get("dropped_rows") else "") + ")")
    print("\nconfig")
    for k, v in _flat(view.config):
        print(f"  {k} = {_fmt(v)}")
    print("\nsummary")
    for k, v in view.summary.items():
        print(f"  {k} = {_fmt(v)}")
    print("\nlast values")
    for k, v in last.items():
        print(f"  {k} = {_fmt(v)}")
    return 0


def _flat(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.extend(_flat(v, f"{prefix}{k}."))
        else:
            out.append((f"{prefix}{k}", v))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="runsync",
        description="Log ML training runs offline; inspect them here; push them anywhere later.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    ls = sub.add_parser("ls", help="list runs in a directory", description="Table of runs: name, id, status, "
                        "steps, age and a few summary values, newest first.")
    ls.add_argument("dir", nargs="?", help=f"directory of runs (default {_DEFAULT_DIR})")
    ls.add_argument("--summary", nargs="*", metavar="KEY", help="summary keys to show as columns")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=cmd_ls)
    show = sub.add_parser("show", help="show one run", description="Metadata, config, summary and the last value "
                          "of every logged key of one run.")
    show.add_argument("run", help="run directory, id, name, or 'latest'")
    show.add_argument("--dir", help=f"directory of runs to look in (default {_DEFAULT_DIR})")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except RunsyncError as e:
        print(f"runsync: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
