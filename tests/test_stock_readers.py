"""The four stock readers, default arguments, see every value — including keys first logged late."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as ds
import pytest

import runsync


@pytest.fixture(scope="module")
def late_key_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    settings = runsync.Settings(part_interval=0.05, flush_interval=0.02)
    with runsync.init(dir=root, settings=settings) as run:
        for step in range(200):
            run.log({"train/loss": 1.0 / (step + 1)})
        time.sleep(0.3)  # the early keys land in their own part
        for step in range(200, 210):
            run.log({"train/loss": 0.1, "late/acc": step / 1000, "late/note": f"s{step}", "late/n": step})
    parts = list((run.dir / "history").glob("*.parquet"))
    assert len(parts) >= 2, "the test needs parts with different key sets"
    return run.dir


EXPECTED = {"train/loss": 210, "late/acc": 10, "late/note": 10, "late/n": 10}


def _counts(keys: list[str]) -> dict[str, int]:
    return pd.Series(keys).value_counts().to_dict()


def test_pandas(late_key_run: Path) -> None:
    df = pd.read_parquet(late_key_run / "history")
    assert _counts(df["key"].tolist()) == EXPECTED
    assert sorted(df[df.key == "late/note"]["text"]) == [f"s{s}" for s in range(200, 210)]


def test_pyarrow_dataset(late_key_run: Path) -> None:
    t = ds.dataset(late_key_run / "history").to_table()
    assert _counts(t.column("key").to_pylist()) == EXPECTED


def test_duckdb(late_key_run: Path) -> None:
    rows = duckdb.sql(f"select key, count(*) from '{late_key_run}/history/*.parquet' group by key").fetchall()
    assert dict(rows) == EXPECTED
    ints = duckdb.sql(f"select int from '{late_key_run}/history/*.parquet' where key = 'late/n' order by step").fetchall()
    assert [r[0] for r in ints] == list(range(200, 210))


def test_polars(late_key_run: Path) -> None:
    df = pl.read_parquet(f"{late_key_run}/history/*.parquet")
    assert _counts(df["key"].to_list()) == EXPECTED


def test_duckdb_resolution_query_matches_reader(tmp_path: Path) -> None:
    """The spec's SQL for repeated steps (§4.5) picks the same winners as open_run()."""
    with runsync.init(dir=tmp_path) as run:
        for s in [0, 1, 2, 1, 2, 2, 0]:
            run.log({"x": float(s) + 0.5 * run.step, "y": run.step}, step=s)
    got = duckdb.sql(
        f"""
        select step, key, value from '{run.dir}/history/*.parquet'
        qualify row_number() over (partition by step, key order by time desc, stream desc, seq desc) = 1
        order by step, key
        """
    ).fetchall()
    resolved = runsync.open_run(run.dir).history(wide=False)
    assert got == list(zip(resolved.step, resolved.key, resolved.value))
