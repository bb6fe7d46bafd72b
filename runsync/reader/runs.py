"""``runsync.runs(dir)``: one row per run, from the small JSON documents only.

Records come from :mod:`runsync.reader.index` (a stat-validated cache under
``<root>/.runsync/index/``); ``where`` filters them with the expression language
of :mod:`runsync.reader.query`, ``sort`` orders them by one or more columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..format.errors import FormatError
from ..format.layout import iter_run_dirs
from ..format.meta import State
from .index import SUMMARY_FROM, flatten_dict, load_records
from .query import check_column, compile_query
from .remote import as_path, fetch_run, is_url, local_root
from .run import RunView

__all__ = [
    "COLUMNS",
    "STATUSES",
    "TIME_COLUMNS",
    "compile_where",
    "find_run",
    "flatten_dict",
    "known_columns",
    "run_records",
    "runs",
    "select_records",
    "sort_records",
    "sort_value",
]

COLUMNS = ("id", "name", "project", "group", "job_type", "tags", "status", "created", "start", "duration", "steps",
           "streams", "path")
TIME_COLUMNS = ("created", "start")
STATUSES = (State.RUNNING, State.FINISHED, State.FAILED, State.CRASHED)


def _root(root: str | Path | None) -> Path:
    """A local runs root; a remote URL (``s3://bucket/runs``) reads through the local cache (reader.remote)."""
    return local_root(root)


def run_records(root: str | Path, cache: bool = True) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """(one dict per readable run, [(dir, error)] for unreadable ones), in run-id order.

    ``cache=False`` reads every document afresh and neither reads nor writes the index.
    """
    return load_records(root, cache=cache)


def known_columns(records: Iterable[dict[str, Any]]) -> list[str]:
    """The fixed columns, then every ``config.*`` and ``summary.*`` column some record has, sorted."""
    extra: set[str] = set()
    for r in records:
        extra.update(k for k in r if k not in COLUMNS and k != SUMMARY_FROM)
    return list(COLUMNS) + sorted(extra)


def compile_where(where: str, records: list[dict[str, Any]]) -> Any:
    """Compile a ``--where`` expression against the columns of ``records`` (any column if there are none)."""
    return compile_query(where, known_columns(records) if records else None, time_columns=TIME_COLUMNS,
                         list_columns=("tags",), enums={"status": STATUSES})


def sort_value(v: Any) -> tuple[int, Any] | None:
    """A key that orders mixed cells: numbers (and bools), then strings, then anything else; None if null."""
    if v is None:
        return None
    if isinstance(v, (int, float)):
        if isinstance(v, float) and math.isnan(v):
            return None
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, (list, tuple)):
        return (2, ",".join(map(str, v)))
    return (3, str(v))


def _parse_sort(spec: str) -> tuple[str, bool]:
    spec = spec.strip()
    if spec.startswith("-"):
        return spec[1:], True
    if spec.startswith("+"):
        return spec[1:], False
    return spec, False


def sort_records(records: list[dict[str, Any]], sort: str | Sequence[str] | None,
                 known: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Records ordered by ``sort``: ``"col"`` ascending, ``"-col"`` descending, several for ties.

    Null, missing and NaN cells come last whatever the direction.
    """
    specs = [sort] if isinstance(sort, str) else list(sort or [])
    keys = [_parse_sort(s) for s in specs]
    for col, _desc in keys:
        if known is not None:
            check_column(col, known, what="sort column")
    out = list(records)
    for col, desc in reversed(keys):
        present, missing = [], []
        for r in out:
            (missing if sort_value(r.get(col)) is None else present).append(r)
        present.sort(key=lambda r: sort_value(r.get(col)), reverse=desc)  # type: ignore[arg-type,return-value]
        out = present + missing
    return out


def select_records(root: str | Path | None = None, where: str | None = None, sort: str | Sequence[str] | None = None,
                   cache: bool = True) -> tuple[list[dict[str, Any]], list[tuple[Path, str]], list[str]]:
    """(matching records in order, unreadable runs, known columns).

    Default order: newest first (``-created``). QueryError for a bad ``where``
    or an unknown sort column.
    """
    records, errors = run_records(_root(root), cache=cache)
    known = known_columns(records)
    if where is not None and where.strip():
        records = compile_where(where, records).filter(records)
    records = sort_records(records, sort if sort else "-created", known if records else None)
    return records, errors, known


def runs(root: str | Path | None = None, where: str | None = None, sort: str | Sequence[str] | None = None) -> Any:
    """A pandas DataFrame with one row per run under ``root`` (default ``$RUNSYNC_DIR`` or ./runs).

    Columns: id, name, project, group, job_type, tags, status, created, start,
    duration (s), steps, streams, path, then ``config.*`` and ``summary.*`` (of a run with several
    streams: per key, the first stream's value in reader order, ``main``, ``rank0``, ... — spec §3.3).

    ``where``: an expression such as ``"status = finished and summary.loss < 0.1"``
    (see ``runsync.reader.query``); ``sort``: a column or a list of columns, each
    ``-col`` for descending (default newest first).
    """
    import pandas as pd

    records, _errors, _known = select_records(root, where, sort)
    df = pd.DataFrame.from_records([{k: v for k, v in r.items() if k != SUMMARY_FROM} for r in records])
    if not df.empty:
        for col in TIME_COLUMNS:
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    return df


def _created(d: Path) -> float:
    try:
        return float(RunView(d).info.created)
    except (FormatError, OSError, ValueError):
        return float("-inf")


def find_run(ref: str, root: str | Path | None = None) -> Path:
    """Resolve a run reference: a run directory, an id, a name, or ``latest``."""
    if is_url(ref):
        return fetch_run(ref)
    p = as_path(ref)
    if (p / "run.json").is_file():
        return p
    if is_url(root):  # find it among the remote's runs, then fetch that run whole
        found = find_run(ref, local_root(root))
        return fetch_run(f"{str(root).rstrip('/')}/{found.name}")
    base = _root(root)
    dirs = iter_run_dirs(base)
    if ref == "latest" and dirs:  # by creation time recorded in run.json (a copy's file times say nothing)
        return max(dirs, key=_created)
    for d in dirs:
        if d.name == ref:
            return d
    matches = []
    for d in dirs:
        try:
            if RunView(d).info.name == ref:
                matches.append(d)
        except FormatError:
            continue
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise FormatError(f"several runs are named {ref!r}: {', '.join(m.name for m in matches)}; use the id")
    if not base.is_dir():
        raise FormatError(f"there is no runs directory {base}: pass --dir DIR (or set RUNSYNC_DIR) to read "
                          "runs elsewhere, or give the run's directory")
    if not dirs:
        raise FormatError(f"no runs under {base} yet; pass --dir DIR (or set RUNSYNC_DIR) to read runs elsewhere")
    raise FormatError(f"no run {ref!r} under {base} (give a run directory, an id, a name, or 'latest')")
