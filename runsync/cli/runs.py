"""``runsync runs`` and ``runsync sql``: search, filter, sort and group many runs; query them with SQL.

``runs`` prints the runs table (``runsync.runs()``'s rows) as an aligned,
terminal-width table, CSV or JSON. ``sql`` runs DuckDB SQL over four views of a
runs directory: ``runs`` (that table), ``history`` (every run's resolved history,
long form, with ``run_id``; resolved per (run_id, stream, step, key), spec §4.5),
``history_raw`` (unresolved rows) and ``system`` /
``system_raw`` (the same for ``<run>/system/*.parquet``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import decimal
import json
import math
import os
import re
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from ..format.errors import RunsyncError
from ..reader.sql import is_number, records_to_arrow, sql_connection
from ._common import DEFAULT_DIR, SUMMARY_NOTE, age, fmt, runs_dir, summary_source

__all__ = ["cmd_runs", "cmd_sql", "fit_table", "records_to_arrow", "register", "sql_connection"]

_MAX_CELL = 40
_MIN_CELLS = 12  # a column narrower than this is dropped rather than cut further
_MIN_CELL = {"name": 20}
_NEVER_CUT = {"id", "status"}
_DEFAULT_COLS = ["name", "id", "status", "created", "duration", "steps"]
_NOISE = re.compile(r"seed|path|dir|file|time|date|host|(^|[._])id$|name$", re.I)

# -- table rendering ------------------------------------------------------------------------------


def _truncate(s: str, n: int) -> str:
    return s if len(s) <= n else (s[: n - 1] + "…" if n > 1 else s[:n])


def _truncate_left(s: str, n: int) -> str:
    """Cut a dotted column name from the left: its last part tells columns apart."""
    return s if len(s) <= n else "…" + s[len(s) - n + 1:]


def fit_table(header: list[str], rows: list[list[str]], width: int | None, max_cell: int = _MAX_CELL,
              right: Sequence[bool] | None = None, groups: list[tuple[str, int]] | None = None) -> str:
    """An aligned table of ``rows`` that fits ``width`` characters (None or 0: any width).

    Cells longer than ``max_cell`` are cut with "…"; if the table is still too
    wide, the widest columns shrink (not below a few characters), then columns
    on the right are dropped and a note says how many. ``right``: which columns
    to right-align (numbers). ``groups``: (title, number of rows) per group, in
    order: a title line precedes each group's rows.
    """
    ncol = len(header)
    right = list(right) if right is not None else [False] * ncol
    cap = max_cell if max_cell and max_cell > 0 else 10**9
    widths = [min(cap, max([len(header[i])] + [len(r[i]) for r in rows])) for i in range(ncol)]
    shown = ncol
    if width:
        def total(k: int) -> int:
            return sum(widths[:k]) + 2 * (k - 1)

        floor = [widths[i] if header[i] in _NEVER_CUT else min(widths[i], _MIN_CELL.get(header[i], _MIN_CELLS))
                 for i in range(ncol)]
        while total(shown) > width:
            i = max(range(shown), key=lambda j: widths[j] - floor[j])
            if widths[i] > floor[i]:
                widths[i] -= 1
            elif shown > 1:
                shown -= 1
            else:
                break

    def line(cells: list[str]) -> str:
        out = []
        for i in range(shown):
            c = _truncate(cells[i], widths[i])
            out.append(c.rjust(widths[i]) if right[i] else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [line([_truncate_left(h, widths[i]) if "." in h else h for i, h in enumerate(header[:shown])])]
    if groups is None:
        lines.extend(line(r) for r in rows)
    else:
        i = 0
        for title, n in groups:
            lines.append("")
            lines.append(_truncate(title, width) if width else title)
            lines.extend(line(r) for r in rows[i:i + n])
            i += n
    if shown < ncol:
        note = (f"({ncol - shown} more column{'s' if ncol - shown > 1 else ''} not shown: "
                f"{', '.join(header[shown:])}; use --columns or a wider terminal)")
        lines.append(_truncate(note, width) if width else note)
    return "\n".join(lines)


def _term_width(arg: int | None) -> int | None:
    if arg is not None:
        return arg or None
    if sys.stdout.isatty():
        return shutil.get_terminal_size((100, 24)).columns
    cols = os.environ.get("COLUMNS", "")
    return int(cols) if cols.isdigit() else None


# -- cells --------------------------------------------------------------------------------------


def _duration(s: Any) -> str:
    if not isinstance(s, (int, float)) or isinstance(s, bool) or math.isnan(s):
        return "-"
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    d, h = divmod(h, 24)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{sec:02d}s"


def _iso(t: Any) -> Any:
    if isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t):
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat()
    return t


def _cell(col: str, v: Any) -> str:
    """A value as shown in the terminal table."""
    if col in ("created", "start"):
        return age(v) if isinstance(v, (int, float)) else "-"
    if col == "duration":
        return _duration(v)
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(_cell("", x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, separators=(",", ":"), default=str)
    return fmt(v).replace("\n", " ")


def _plain(col: str, v: Any) -> Any:
    """A value for CSV and JSON: times as ISO 8601 (UTC), the rest as stored."""
    if col in ("created", "start"):
        return _iso(v)
    return v


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, separators=(",", ":"), default=str, allow_nan=True)
    return str(v)


# -- choosing columns ---------------------------------------------------------------------------


def _default_columns(records: list[dict[str, Any]], extra: list[str], group: str | None) -> list[str]:
    """name, id, status, created, duration, steps; the columns --where and --sort use; group and tags if
    any run has them; up to 3 config values that differ between runs; the 3 most common numeric summaries."""
    cols = list(_DEFAULT_COLS)
    cols += [c for c in dict.fromkeys(extra) if c not in cols]
    if any(r.get("group") for r in records):
        cols.append("group")
    if any(r.get("tags") for r in records):
        cols.append("tags")
    cols += varying_config(records, exclude=set(cols) | {group or ""}, limit=4)
    if any(r.get("error") for r in records):
        cols.append("error")  # why the failed runs failed (spec §7.2)
    nums: dict[str, int] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith("summary.") and is_number(v) and k not in cols:
                nums[k] = nums.get(k, 0) + 1
    cols += sorted(nums, key=lambda k: (-nums[k], k))[:3]
    return [c for c in dict.fromkeys(cols) if c != group]


def varying_config(records: list[dict[str, Any]], exclude: set[str], limit: int) -> list[str]:
    """Config columns whose values differ between the listed runs, a random search's lr included (every run
    its own value): numbers first, keys that name seeds, paths and times last (noise); at most ``limit``."""
    counts: dict[str, int] = {}
    distinct: dict[str, set[str]] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith("config."):
                counts[k] = counts.get(k, 0) + 1
                distinct.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
    varying = [k for k in counts if 1 < len(distinct[k]) and k not in exclude]
    numeric = {k for k in varying if all(is_number(r[k]) for r in records if k in r)}
    return sorted(varying, key=lambda k: (bool(_NOISE.search(k)), k not in numeric, -counts[k], k))[:limit]


def _expand_columns(spec: str, known: list[str]) -> list[str]:
    """``--columns a,b,config.*`` → column names; globs expand over the known columns."""
    from fnmatch import fnmatchcase

    from ..reader.query import check_column

    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(c in part for c in "*?["):
            matched = [k for k in known if fnmatchcase(k, part)]
            if not matched:
                raise RunsyncError(f"--columns: no column matches {part!r}")
            out.extend(m for m in matched if m not in out)
            continue
        check_column(part, known, what="column in --columns")
        if part not in out:
            out.append(part)
    return out


# -- runsync runs -------------------------------------------------------------------------------


def _group_key(v: Any) -> tuple[int, Any]:
    from ..reader.runs import sort_value

    k = sort_value(v)
    return (1, "") if k is None else (0, k)


def _group_title(col: str, v: Any, n: int, total: int) -> str:
    shown = "(none)" if v is None or v == [] else _cell(col, v)
    count = f"{total} run{'s' if total != 1 else ''}" + (f", showing {n}" if n < total else "")
    return f"── {col} = {shown}  ({count})"


def cmd_runs(args: argparse.Namespace) -> int:
    from ..reader.query import check_column
    from ..reader.runs import select_records

    root = runs_dir(args.dir)
    if not root.is_dir():
        raise RunsyncError(f"no runs directory {root} (set RUNSYNC_DIR or pass DIR)")
    records, errors, known = select_records(root, where=args.where, sort=args.sort or None, cache=not args.no_index)
    if args.group:
        check_column(args.group, known, what="--group column")
    if args.columns:
        cols = _expand_columns(args.columns, known)
    elif args.csv or args.json:
        cols = known
    else:
        from ..reader.runs import compile_where

        extra = [s.lstrip("+-") for s in (args.sort or [])]
        if args.where and args.where.strip():
            extra += compile_where(args.where, []).columns  # already checked against every run's columns
        cols = _default_columns(records, extra, args.group)

    # groups: in order of their key; rows keep the sort order within each group
    groups: list[tuple[Any, list[dict[str, Any]], int]] = []
    if args.group:
        buckets: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
        for r in records:
            v = r.get(args.group)
            buckets.setdefault(json.dumps(v, sort_keys=True, default=str), (v, []))[1].append(r)
        for v, rs in sorted(buckets.values(), key=lambda b: _group_key(b[0])):
            groups.append((v, rs[: args.limit] if args.limit is not None else rs, len(rs)))
        records = [r for _v, rs, _n in groups for r in rs]
        if args.group not in cols and (args.csv or args.json):
            cols = [args.group, *cols]
    elif args.limit is not None:
        records = records[: args.limit]

    if args.json:
        out: dict[str, Any] = {
            "columns": cols,
            "runs": [{c: _plain(c, r.get(c)) for c in cols} for r in records],
            "errors": [{"path": str(p), "error": e} for p, e in errors],
        }
        if args.group:
            out["groups"] = [{"value": v, "count": n, "shown": len(rs)} for v, rs, n in groups]
        print(json.dumps(out, indent=1, allow_nan=True, default=str))
    elif args.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        for r in records:
            w.writerow([_csv_cell(_plain(c, r.get(c))) for c in cols])
    else:
        rows = [[_cell(c, r.get(c)) + (summary_source(r, c[8:]) if c.startswith("summary.") else "") for c in cols]
                for r in records]
        right = [bool(records) and all(is_number(r.get(c)) or r.get(c) is None for r in records)
                 and c not in ("created", "start", "duration") for c in cols]
        titles = [(_group_title(args.group, v, len(rs), n), len(rs)) for v, rs, n in groups] if args.group else None
        print(fit_table(cols, rows, _term_width(args.width), args.max_width, right, titles))
        if not records:
            print(f"(no runs in {root})" if not args.where else "(no runs match)")
        elif any(summary_source(r, c[8:]) for r in records for c in cols if c.startswith("summary.")):
            print(SUMMARY_NOTE)
    for p, e in errors:
        print(f"runsync: skipped {p}: {e}", file=sys.stderr)
    return 1 if errors else 0


# -- runsync sql --------------------------------------------------------------------------------

def _sql_value(v: Any) -> Any:
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v) if v != v.to_integral_value() else int(v)
    if isinstance(v, (list, tuple)):
        return [_sql_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _sql_value(x) for k, x in v.items()}
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def cmd_sql(args: argparse.Namespace) -> int:
    root = runs_dir(args.dir)
    if not root.is_dir():
        raise RunsyncError(f"no runs directory {root} (set RUNSYNC_DIR or pass --dir)")
    query = sys.stdin.read() if args.query == "-" else args.query
    con = sql_connection(root, query)  # a clear error if duckdb is missing
    import duckdb

    try:
        rel = con.sql(query)
        if rel is None:
            return 0
        fetch = getattr(rel, "to_arrow_table", None) or getattr(rel, "fetch_arrow_table", None) or rel.arrow
        table = fetch()
    except duckdb.Error as e:
        raise RunsyncError(f"sql: {e}") from None
    cols = list(table.column_names)
    rows = [[_sql_value(v) for v in row.values()] for row in table.to_pylist()] if cols else []
    if args.json:
        print(json.dumps([dict(zip(cols, r)) for r in rows], indent=1, allow_nan=True, default=str))
    elif args.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow([_csv_cell(v) for v in r])
    else:
        cells = [[_cell("", v) for v in r] for r in rows]
        right = [bool(rows) and all(is_number(r[i]) or r[i] is None for r in rows) for i in range(len(cols))]
        print(fit_table(cols, cells, _term_width(args.width), args.max_width, right))
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return 0


# -- registration -------------------------------------------------------------------------------

_RUNS_EPILOG = """\
expressions (--where):
  COLUMN OP VALUE with OP one of = == != < <= > >= ~ (regex search) !~
  COLUMN in [v, ...]   COLUMN not in [...]   COLUMN contains v   COLUMN is null   COLUMN is not null
  combined with and, or, not and parentheses. Values: numbers, 'quoted' or "quoted" strings, true,
  false, null, bare words (status = finished), dates (created > 2024-05-01), durations
  (duration > 1h, created > 2d ago). Columns: id name project group job_type tags status created
  start duration steps streams path config.<key> summary.<key> (`back-quote` odd names).

examples:
  runsync runs --where "status = finished and summary.loss < 0.1" --sort summary.loss
  runsync runs --where "config.optimizer.lr >= 1e-3 and tags contains baseline" --sort -created --limit 20
  runsync runs --where 'name ~ "^bert-" and created > 7d ago' --group config.model.arch
  runsync runs --columns name,status,config.*,summary.val/acc --csv > runs.csv
"""

_SQL_EPILOG = """\
views:
  runs         one row per run: the columns of `runsync runs` ("config.lr", "summary.loss": quote them)
  history      every run's history, long form, resolved (one row per run_id, step, key; spec §4.5):
               run_id, step, time, key, type, value, int, text, stream, seq
  history_raw  every stored row (parts, plus the WAL tail of live or crashed runs)
  system       system metrics (<run>/system/*.parquet, spec §14), same columns, resolved per stream
               (one row per run_id, stream, step, key); empty when no run has any
  system_raw   unresolved

examples:
  runsync sql "SELECT run_id, max(value) AS best FROM history WHERE key = 'val/acc' GROUP BY run_id ORDER BY best DESC"
  runsync sql "SELECT r.name, h.step, h.value FROM history h JOIN runs r ON r.id = h.run_id WHERE h.key = 'loss'"
  runsync sql "SELECT status, count(*) FROM runs GROUP BY status" --json
"""


_DASH_VALUE = re.compile(r"^-[^-\d]")


def _allow_dash_values(p: argparse.ArgumentParser) -> None:
    """Let ``--sort -summary.loss`` parse: an unknown ``-word`` is taken as a value, not as an option.

    argparse treats every unknown ``-word`` as an option and then complains that
    ``--sort`` lacks its argument. ``--sort=-COL`` always works; this makes the
    spaced form work too (a misspelt short option then reads as a value).
    """
    orig = p._parse_optional

    def parse_optional(arg: str) -> Any:
        res = orig(arg)
        unknown = (isinstance(res, tuple) and res[0] is None) or (
            isinstance(res, list) and bool(res) and all(t[0] is None for t in res))
        if unknown and _DASH_VALUE.match(arg):
            return None
        return res

    p._parse_optional = parse_optional  # type: ignore[method-assign]


def _add_output_args(p: argparse.ArgumentParser) -> None:
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="CSV on stdout (times as ISO 8601 UTC)")
    out.add_argument("--json", action="store_true", help="JSON on stdout")
    p.add_argument("--width", type=int, metavar="N",
                   help="fit the table into N characters (default: the terminal's width; 0: no limit)")
    p.add_argument("--max-width", type=int, default=_MAX_CELL, metavar="N",
                   help=f"cut table cells longer than N characters with '…' (default {_MAX_CELL}; 0: never)")


def register(sub: Any) -> None:
    fmt_cls = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "runs", help="search, filter, sort and group runs", formatter_class=fmt_cls, epilog=_RUNS_EPILOG,
        description="The runs table: one row per run with its status, name, tags, group, config.* and "
        "summary.* values; filtered with --where, ordered with --sort, grouped with --group. Newest first "
        "by default. Thousands of runs list in about a second: records are cached, stat-validated, in "
        "DIR/.runsync/index/ (never required; a read-only DIR works without it).")
    p.add_argument("dir", nargs="?", help=f"directory of runs (default {DEFAULT_DIR})")
    p.add_argument("--where", metavar="EXPR",
                   help='keep runs for which EXPR is true, e.g. --where "status = finished and summary.loss < 0.1"')
    p.add_argument("--sort", action="append", metavar="[-]COL",
                   help="order by COL, descending with a leading '-'; repeat for ties, e.g. --sort -summary.val/acc "
                   "--sort name (default -created; nulls last)")
    p.add_argument("--group", metavar="COL",
                   help="group rows by the value of COL under a header with the group's count, e.g. --group "
                   "config.optimizer.name (with --limit: at most N rows per group)")
    p.add_argument("--columns", metavar="COL,COL…",
                   help="columns to show, comma-separated; globs allowed, e.g. --columns name,status,config.*,"
                   "summary.loss (default: name, id, status, created, duration, steps, group, tags, config "
                   "values that differ, a few summary values; CSV and JSON: every column)")
    p.add_argument("--limit", type=int, metavar="N", help="show at most N runs (per group with --group)")
    p.add_argument("--no-index", action="store_true",
                   help="read every run's documents afresh; neither read nor write DIR/.runsync/index")
    _add_output_args(p)
    p.set_defaults(func=cmd_runs)
    _allow_dash_values(p)

    q = sub.add_parser(
        "sql", help="query runs and their histories with SQL (DuckDB)", formatter_class=fmt_cls,
        epilog=_SQL_EPILOG,
        description="Run a DuckDB SQL query over a runs directory. Needs duckdb: pip install 'runsync[sql]'.")
    q.add_argument("query", help='the SQL, e.g. "SELECT status, count(*) FROM runs GROUP BY status"; - reads stdin')
    q.add_argument("--dir", help=f"directory of runs (default {DEFAULT_DIR})")
    _add_output_args(q)
    q.set_defaults(func=cmd_sql)
