"""SQL over a runs directory (``runsync sql``): DuckDB views ``runs``, ``history[_raw]``, ``system[_raw]``.

``history_raw`` is every stored row with its ``run_id`` (parts chosen by the cover rule, §4.4, plus the
WAL tails of live and crashed runs, §8.5); ``history`` resolves repeats per (run_id, stream, step, key)
(§4.5); ``system`` the same for ``<run>/system/`` (§14); ``runs`` the runs table (``runsync.runs()``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .._logging import get_logger
from ..format.errors import RunsyncError
from ..format.layout import RUN_JSON, RunLayout
from .run import RunView
from .runs import known_columns, run_records

__all__ = ["is_number", "records_to_arrow", "sql_connection"]

_log = get_logger("reader")


def is_number(v: Any) -> bool:
    """A JSON number (bool excluded): what a typed numeric column of the runs table holds."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_RUN_ID_RE = r"([^/\\]+)[/\\][a-z]+[/\\][^/\\]+$"  # <root>/<run id>/<history|system>/<file>
_HISTORY_COLS = "step, time, key, type, value, int, text, stream, seq"


def _arrow_column(col: str, values: list[Any]) -> Any:
    import pyarrow as pa

    if col in ("created", "start"):
        return pa.array([None if not is_number(v) else round(v * 1e6) for v in values], pa.int64()).cast(
            pa.timestamp("us", tz="UTC"))
    kinds = set()
    for v in values:
        if v is None:
            continue
        kinds.add("bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "float"
                  if isinstance(v, float) else "str" if isinstance(v, str) else "list" if isinstance(v, list) else "x")
    if not kinds:
        return pa.array(values, pa.string())
    if kinds == {"bool"}:
        return pa.array(values, pa.bool_())
    if kinds == {"int"} and all(v is None or -(2**63) <= v < 2**63 for v in values):
        return pa.array(values, pa.int64())
    if kinds <= {"int", "float"}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if kinds == {"str"}:
        return pa.array(values, pa.string())
    if kinds == {"list"} and all(isinstance(x, str) for v in values if v for x in v):
        return pa.array(values, pa.list_(pa.string()))
    return pa.array([v if v is None or isinstance(v, str) else json.dumps(v, default=str, allow_nan=True)
                     for v in values], pa.string())


def records_to_arrow(records: list[dict[str, Any]], columns: list[str]) -> Any:
    """The runs table as Arrow: one typed column per name (mixed types become JSON text)."""
    import pyarrow as pa

    return pa.table({c: _arrow_column(c, [r.get(c) for r in records]) for c in columns})


def _table_files(root: Path, sub: str) -> tuple[list[str], list[Path]]:
    """(Parquet files in ``<run>/<sub>/`` of runs read from parts alone, runs whose WAL must be read too).

    Per run and stream, only the parts the cover rule chooses (spec §4.4), so a
    compaction in progress shows no duplicate rows.
    """
    from ..format.history import PART_RE, list_parts, select_cover

    files: list[str] = []
    live: list[Path] = []
    try:
        names = sorted(n for n in os.listdir(root) if not n.startswith("."))
    except OSError:
        return [], []
    for n in names:
        d = root / n
        if not (d / RUN_JSON).is_file():
            continue
        if _has_wal(d, sub):
            live.append(d)
            continue
        try:
            entries = os.listdir(d / sub)
        except OSError:
            continue
        files += [str(p.path) for p in select_cover(list_parts(d / sub))]
        files += [str(d / sub / e) for e in sorted(entries) if e.endswith(".parquet") and not PART_RE.match(e)
                  and not e.startswith((".", "_"))]
    return files, live


def _has_wal(run_dir: Path, sub: str) -> bool:
    """Does a stream of table ``sub`` (history: ``streams/<s>/``, system: ``streams/<s>/system/``) have WAL
    segments (spec §2.2, §14)?"""
    return any(st.segments() for st in RunLayout(run_dir).with_table(sub).streams())


def _wal_rows(run_dir: Path, sub: str) -> Any:
    """Parts and WAL tails of a live or crashed run, through the runsync reader (spec §8.5)."""
    view = RunView(run_dir)
    if sub == "history":
        return view.rows()
    return view.rows(table=sub)  # type: ignore[call-arg]


def _define(con: Any, root: Path, sub: str, name: str) -> None:
    """Views ``<name>_raw`` (every stored row, cover rule applied) and ``<name>`` (resolved).

    Both resolve per (run, stream, step, key): repeats within a stream resolve (spec §4.5),
    values of different streams (ranks, hosts) never replace each other (§4.5 since 1.3, §14).
    """
    import pyarrow as pa

    from ..format.history import SCHEMA

    files, live = _table_files(root, sub)
    schema = pa.schema([pa.field("run_id", pa.string()), *SCHEMA])
    tails = []
    for d in live:
        try:
            t = _wal_rows(d, sub)
        except RunsyncError as e:
            _log.warning(f"runsync: skipped {d}: {e}")
            continue
        t = t.select(SCHEMA.names)
        tails.append(t.add_column(0, "run_id", pa.array([d.name] * t.num_rows, pa.string())).cast(schema))
    con.register(f"_{name}_wal", pa.concat_tables(tails) if tails else schema.empty_table())
    parts = f"SELECT run_id, {_HISTORY_COLS} FROM _{name}_wal"
    if files:
        con.read_parquet(files, filename=True).create_view(f"_{name}_parts")
        parts = (f"SELECT regexp_extract(filename, '{_RUN_ID_RE}', 1) AS run_id, {_HISTORY_COLS} "
                 f"FROM _{name}_parts UNION ALL {parts}")
    con.sql(f"CREATE OR REPLACE VIEW {name}_raw AS {parts}")
    con.sql(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {name}_raw QUALIFY row_number() OVER "
            f"(PARTITION BY run_id, stream, step, key ORDER BY time DESC, seq DESC) = 1")


def sql_connection(root: str | Path, query: str | None = None) -> Any:
    """A DuckDB connection over ``root`` with the views ``runs``, ``history[_raw]``, ``system[_raw]``.

    With ``query``, only the views it mentions are built (all if it mentions none).
    """
    try:
        import duckdb
    except ImportError:
        raise RunsyncError("runsync sql needs DuckDB: pip install 'runsync[sql]' (or pip install duckdb)") from None
    root = Path(root)
    con = duckdb.connect()
    try:
        con.sql("SET TimeZone = 'UTC'")
    except duckdb.Error:
        pass
    text = (query or "").lower()
    wanted = {v for v in ("runs", "history", "system") if v in text} or {"runs", "history", "system"}
    if "runs" in wanted:
        records, errors = run_records(root)
        for p, e in errors:
            _log.warning(f"runsync: skipped {p}: {e}")
        con.register("runs", records_to_arrow(records, known_columns(records)))
    if "history" in wanted:
        _define(con, root, "history", "history")
    if "system" in wanted:
        _define(con, root, "system", "system")
    return con
