"""A CSV history table → one runsync run (issue 17): a column per key, a step column, optionally a time column.

Cells become values as a person would read them: integers, floats (``nan``
and ``inf`` too), ``true``/``false``, else text; an empty cell is no value. A
``time``, ``timestamp``, ``_timestamp`` or ``wall_time`` column (Unix seconds)
gives each row's time; without one, rows take the time of the import that adds
them, and a row counts as already imported by its (step, key) alone.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from .sink import ConvertError, ImportedRun, Source

__all__ = ["cell", "read_run"]

TIME_COLUMNS = ("time", "timestamp", "_timestamp", "wall_time")


def cell(text: str) -> Any:
    """One CSV cell as a value (None: empty, no value)."""
    s = text.strip()
    if not s:
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        pass
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    return text


def read_run(path: Path, step_column: str = "step", project: str = "default") -> ImportedRun:
    if not path.is_file():
        raise ConvertError(f"{path}: no such file (runsync import csv takes a CSV file with a header row)")
    uri = str(path.resolve())
    run = ImportedRun(source=Source("csv", uri, uri), name=path.stem, project=project)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise ConvertError(f"{path}: empty; a CSV history needs a header row naming its columns")
            names = [h.strip() for h in header]
            step_i = names.index(step_column) if step_column in names else None
            time_i = next((names.index(c) for c in TIME_COLUMNS if c in names), None)
            run.dedupe_on_time = time_i is not None
            for n, row in enumerate(reader, start=1):
                if not any(c.strip() for c in row):
                    continue
                step: Any = n - 1
                if step_i is not None:
                    step = cell(row[step_i]) if step_i < len(row) else None
                    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
                        run.skipped.append(f"{path}: row {n + 1}: step {row[step_i] if step_i < len(row) else ''!r}"
                                           " is not a non-negative integer; row not imported")
                        continue
                t: float | None = None
                if time_i is not None:
                    tv = cell(row[time_i]) if time_i < len(row) else None
                    if not isinstance(tv, (int, float)) or isinstance(tv, bool) or not math.isfinite(tv):
                        run.skipped.append(f"{path}: row {n + 1}: time {tv!r} is not Unix seconds; row not imported")
                        continue
                    t = float(tv)
                for i, name in enumerate(names):
                    if i in (step_i, time_i) or i >= len(row):
                        continue
                    v = cell(row[i])
                    if v is not None:
                        run.rows.append((step, t if t is not None else math.nan, name, v))
    except UnicodeDecodeError as e:
        raise ConvertError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise ConvertError(f"{path}: not a CSV file ({e})") from None
    if not run.rows and not run.skipped:
        raise ConvertError(f"{path}: no values below the header")
    times = [r[1] for r in run.rows if not math.isnan(r[1])]
    run.created = min(times) if times else None
    run.ended = max(times) if times else None
    return run
