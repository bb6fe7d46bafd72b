"""Cross-run queries (docs/queries.md): DuckDB, pandas (pyarrow.dataset) and Polars over many runs,
each resolved by spec §4.5 and checked against the runsync reader; and `runsync sql`."""

from __future__ import annotations

import glob
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import runsync
from runsync import cli
from runsync.cli import runs as runs_cli
from runsync.cli import watch as watch_cli

GOLDEN = Path(__file__).resolve().parent.parent / "spec" / "testdata" / "v1.0" / "golden-run"
RUN_ID = r"([^/\\]+)[/\\]history[/\\][^/\\]+$"  # the run id: the directory above history/


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs by the real writer: plain, repeated steps (commit=False, explicit steps), and two streams."""
    root = tmp_path_factory.mktemp("cross") / "runs"
    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5, segment_size=1 << 20)
    with runsync.init(dir=root, id="plain", config={"lr": 0.1, "opt": {"name": "adam"}}, settings=fast) as run:
        for step in range(30):
            run.log({"loss": 1.0 / (step + 1), "acc": step / 30})
    with runsync.init(dir=root, id="repeat", config={"lr": 0.01, "opt": {"name": "sgd"}}, settings=fast) as run:
        for step in range(10):
            run.log({"loss": 2.0 - step / 10}, commit=False)
            run.log({"loss": 1.0 - step / 10, "n": step, "tag": f"s{step}"})
        for s in (3, 5, 3):
            run.log({"loss": 100.0 + s}, step=s)  # logged again at earlier steps: the latest call wins
    with runsync.init(dir=root, id="ranks", config={"lr": 0.001}, settings=fast) as run:
        for step in range(8):
            run.log({"loss": 0.5, "acc": 0.1 * step})
    with runsync.init(dir=root, id="ranks", stream="rank1", settings=fast) as run:
        for step in range(0, 8, 2):
            run.log({"loss": 9.0 + step}, step=step)  # another stream: kept beside main's (spec §4.5, 1.3)
    return root


def expected(root: Path) -> list[tuple[Any, ...]]:
    """(run_id, stream, step, key, value, int, text) of every run's resolved history, from the runsync reader."""
    out = []
    for d in sorted(p for p in root.iterdir() if (p / "run.json").is_file()):
        t = runsync.open_run(d).history(wide=False, format="arrow")
        for r in t.select(["stream", "step", "key", "value", "int", "text"]).to_pylist():
            out.append((d.name, r["stream"], r["step"], r["key"], r["value"], r["int"], r["text"]))
    return sorted(out, key=lambda r: (r[0], r[1], r[2], r[3]))


def rows_of(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    out = []
    for r in df[["run_id", "stream", "step", "key", "value", "int", "text"]].itertuples(index=False):
        out.append(tuple(None if (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is None else v for v in r))
    out = [(r[0], r[1], int(r[2]), r[3], r[4], None if r[5] is None else int(r[5]), r[6]) for r in out]
    return sorted(out, key=lambda r: (r[0], r[1], r[2], r[3]))


def test_the_fixture_exercises_resolution(root: Path) -> None:
    exp = expected(root)
    by = {(r[0], r[1], r[2], r[3]): r for r in exp}
    assert by[("repeat", "main", 3, "loss")][4] == 103.0 and by[("repeat", "main", 4, "loss")][4] == pytest.approx(0.6)
    # two streams at one step: both values kept (spec §4.5 since 1.3), not the later one alone
    assert by[("ranks", "rank1", 2, "loss")][4] == 11.0 and by[("ranks", "main", 2, "loss")][4] == 0.5
    assert ("ranks", "rank1", 3, "loss") not in by and by[("ranks", "main", 3, "loss")][4] == 0.5
    assert by[("repeat", "main", 7, "n")][5] == 7 and by[("repeat", "main", 7, "tag")][6] == "s7"
    raw = sum(runsync.open_run(root / r).rows().num_rows for r in ("plain", "repeat", "ranks"))
    assert raw > len(exp)  # there is something to resolve


# -- stock readers, as in docs/queries.md ------------------------------------------------------------


def test_duckdb(root: Path) -> None:
    got = duckdb.sql(f"""
        WITH h AS (
          SELECT regexp_extract(filename, '{RUN_ID}', 1) AS run_id, * EXCLUDE (filename)
          FROM read_parquet('{root}/*/history/*.parquet', filename = true))
        SELECT run_id, stream, step, key, value, int, text FROM h
        QUALIFY row_number() OVER (PARTITION BY run_id, stream, step, key
                                   ORDER BY time DESC, seq DESC) = 1
        ORDER BY run_id, stream, step, key
    """).fetchall()
    assert [tuple(r) for r in got] == expected(root)


def test_duckdb_joins_run_json(root: Path) -> None:
    got = duckdb.sql(f"""
        WITH h AS (
          SELECT regexp_extract(filename, '{RUN_ID}', 1) AS run_id, * EXCLUDE (filename)
          FROM read_parquet('{root}/*/history/*.parquet', filename = true)
          QUALIFY row_number() OVER (PARTITION BY run_id, stream, step, key
                                     ORDER BY time DESC, seq DESC) = 1)
        SELECT r.id, r.name, min(h.value) AS best_loss
        FROM h JOIN read_json_auto('{root}/*/run.json') AS r ON r.id = h.run_id
        WHERE h.key = 'loss'
        GROUP BY ALL ORDER BY r.id
    """).fetchall()
    assert [(i, b) for i, _n, b in got] == [("plain", pytest.approx(1 / 30)), ("ranks", 0.5),
                                           ("repeat", pytest.approx(0.1))]


def test_pandas_with_pyarrow_dataset(root: Path) -> None:
    files = sorted(glob.glob(f"{root}/*/history/*.parquet"))
    dataset = ds.dataset(files, format="parquet", partition_base_dir=str(root),
                         partitioning=ds.partitioning(pa.schema([("run_id", pa.string()), ("table", pa.string())])))
    df = dataset.to_table().to_pandas()
    latest = (df.sort_values(["run_id", "stream", "step", "key", "time", "seq"])
                .drop_duplicates(["run_id", "stream", "step", "key"], keep="last"))
    assert rows_of(latest) == expected(root)


def test_pandas_concat(root: Path) -> None:
    df = pd.concat([pd.read_parquet(d).assign(run_id=Path(d).parent.name)
                    for d in sorted(glob.glob(f"{root}/*/history"))], ignore_index=True)
    latest = (df.sort_values(["run_id", "stream", "step", "key", "time", "seq"])
                .drop_duplicates(["run_id", "stream", "step", "key"], keep="last"))
    assert rows_of(latest) == expected(root)


def test_polars(root: Path) -> None:
    latest = (pl.scan_parquet(f"{root}/*/history/*.parquet", include_file_paths="path")
                .with_columns(pl.col("path").str.extract(RUN_ID, 1).alias("run_id"))
                .sort(["run_id", "stream", "step", "key", "time", "seq"])
                .unique(subset=["run_id", "stream", "step", "key"], keep="last", maintain_order=True)
                .collect())
    assert rows_of(latest.to_pandas()) == expected(root)


# -- runsync sql ----------------------------------------------------------------------------------


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> Any:
    mods = tuple(m for m in cli._MODULES if m not in (runs_cli, watch_cli)) + (runs_cli, watch_cli)
    monkeypatch.setattr(cli, "_MODULES", mods)
    return cli.main


def sql(main: Any, capsys: pytest.CaptureFixture[str], root: Path, query: str, *flags: str) -> Any:
    code = main(["sql", query, "--dir", str(root), "--json", *flags])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_sql_history_is_resolved(root: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    got = sql(main, capsys, root, "SELECT run_id, stream, step, key, value, int, text FROM history "
              "ORDER BY run_id, stream, step, key")
    assert [tuple(r.values()) for r in got] == expected(root)
    raw = sql(main, capsys, root, "SELECT run_id, count(*) AS n FROM history_raw GROUP BY run_id ORDER BY run_id")
    assert {r["run_id"]: r["n"] for r in raw} == {d: runsync.open_run(root / d).rows().num_rows
                                                  for d in ("plain", "ranks", "repeat")}
    cols = sql(main, capsys, root, "SELECT column_name, column_type FROM (DESCRIBE history)")
    assert [(c["column_name"], c["column_type"]) for c in cols] == [
        ("run_id", "VARCHAR"), ("step", "BIGINT"), ("time", "TIMESTAMP WITH TIME ZONE"), ("key", "VARCHAR"),
        ("type", "TINYINT"), ("value", "DOUBLE"), ("int", "BIGINT"), ("text", "VARCHAR"), ("stream", "VARCHAR"),
        ("seq", "BIGINT")]


def test_sql_runs_view_and_join(root: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    got = sql(main, capsys, root, 'SELECT id, status, "config.lr", "config.opt.name", streams FROM runs ORDER BY id')
    assert got == [
        {"id": "plain", "status": "finished", "config.lr": 0.1, "config.opt.name": "adam", "streams": 1},
        {"id": "ranks", "status": "finished", "config.lr": 0.001, "config.opt.name": None, "streams": 2},
        {"id": "repeat", "status": "finished", "config.lr": 0.01, "config.opt.name": "sgd", "streams": 1},
    ]
    got = sql(main, capsys, root, """
        SELECT r.id, r."config.lr" AS lr, max(h.value) AS worst
        FROM history h JOIN runs r ON r.id = h.run_id
        WHERE h.key = 'loss' GROUP BY ALL ORDER BY lr""")
    assert got == [{"id": "ranks", "lr": 0.001, "worst": 15.0}, {"id": "repeat", "lr": 0.01, "worst": 105.0},
                   {"id": "plain", "lr": 0.1, "worst": 1.0}]
    t = sql(main, capsys, root, "SELECT created FROM runs LIMIT 1")[0]["created"]
    assert t.endswith("+00:00")


def test_sql_output_formats(root: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    q = "SELECT key, count(*) AS n FROM history WHERE run_id = 'plain' GROUP BY key ORDER BY key"
    assert main(["sql", q, "--dir", str(root), "--csv"]) == 0
    assert capsys.readouterr().out == "key,n\nacc,30\nloss,30\n"
    assert main(["sql", q, "--dir", str(root), "--width", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["key", "n"] and out[1].split() == ["acc", "30"] and out[-1] == "(2 rows)"


def test_sql_system_view(root: Path, main: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # resolved per (run, stream, step, key): samples of different processes never replace each other (§14)
    files = sorted(glob.glob(f"{root}/*/system/*.parquet"))
    raw = sql(main, capsys, root, "SELECT count(*) AS n FROM system_raw")[0]["n"]
    assert raw == sum(pq.read_table(f).num_rows for f in files) if files else raw == 0
    # a root without any system part: an empty view with the history columns
    other = tmp_path / "other"
    shutil.copytree(GOLDEN / "golden01", other / "golden01")
    assert sql(main, capsys, other, "SELECT count(*) AS n FROM system") == [{"n": 0}]
    cols = sql(main, capsys, other, "SELECT column_name FROM (DESCRIBE system)")
    assert [c["column_name"] for c in cols] == ["run_id", "step", "time", "key", "type", "value", "int", "text",
                                                "stream", "seq"]
    # two streams' samples at the same step both stay
    part = next(iter(sorted((other / "golden01" / "history").glob("*.parquet"))))
    (other / "golden01" / "system").mkdir()
    t = pq.read_table(part)
    shutil.copy(part, other / "golden01" / "system" / part.name)
    t2 = t.set_column(t.schema.get_field_index("stream"), "stream", pa.array(["rank1"] * t.num_rows, pa.string()))
    pq.write_table(t2, other / "golden01" / "system" / part.name.replace("main.", "rank1."))
    got = sql(main, capsys, other, "SELECT stream, count(*) AS n FROM system GROUP BY stream ORDER BY stream")
    per_stream = len({(r["step"], r["key"]) for r in t.select(["step", "key"]).to_pylist()})
    assert got == [{"stream": "main", "n": per_stream}, {"stream": "rank1", "n": per_stream}]


def test_sql_reads_the_wal_tail_of_a_crashed_run(main: Any, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    shutil.copytree(GOLDEN / "golden02", tmp_path / "runs" / "golden02")  # crashed: newest rows only in its WAL
    view = runsync.open_run(tmp_path / "runs" / "golden02")
    from_parts = pq.read_table(tmp_path / "runs" / "golden02" / "history").num_rows
    assert view.rows().num_rows > from_parts
    got = sql(main, capsys, tmp_path / "runs", "SELECT step, key, value, text FROM history ORDER BY step, key")
    exp = view.history(wide=False, format="arrow").select(["step", "key", "value", "text"]).to_pylist()
    assert json.dumps(got, sort_keys=True) == json.dumps(exp, sort_keys=True)
    got = sql(main, capsys, tmp_path / "runs", "SELECT status FROM runs")
    assert got == [{"status": "crashed"}]


def test_sql_errors(root: Path, main: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["sql", "SELECT * FROM nope", "--dir", str(root)]) == 1
    assert capsys.readouterr().err.startswith("runsync: error: sql: ")
    assert main(["sql", "SELECT 1", "--dir", str(root / "missing")]) == 1
    assert "no runs directory" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "duckdb", None)  # as if it were not installed
    assert main(["sql", "SELECT 1", "--dir", str(root)]) == 1
    assert "pip install 'runsync[sql]'" in capsys.readouterr().err
