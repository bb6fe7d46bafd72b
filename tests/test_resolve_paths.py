"""resolve()/to_wide() skip their sort where rows cannot repeat (issue 19): same answer as the full path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import runsync
from runsync.format.history import SCHEMA, _cannot_repeat, resolve, to_wide


def _table(steps: list[int], keys: list[str], streams: list[str]) -> pa.Table:
    n = len(steps)
    return pa.table({
        "step": pa.array(steps, pa.int64()),
        "time": pa.array(np.arange(n, dtype=np.int64) * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "key": pa.array(keys, pa.string()), "type": pa.array([0] * n, pa.int8()),
        "value": pa.array(np.arange(n, dtype=np.float64)), "int": pa.nulls(n, pa.int64()),
        "text": pa.nulls(n, pa.string()), "stream": pa.array(streams, pa.string()),
        "seq": pa.array(np.arange(n, dtype=np.int64)),
    }, schema=SCHEMA)


def _reference(table: pa.Table) -> list[tuple[int, str, str, float]]:
    """§4.5 by hand: per (stream, step, key) the row with the greatest (time, seq); by step, key, stream."""
    best: dict[tuple[str, int, str], dict[str, object]] = {}
    for r in table.to_pylist():
        k = (r["stream"], r["step"], r["key"])
        if k not in best or (r["time"], r["seq"]) > (best[k]["time"], best[k]["seq"]):  # type: ignore[operator]
            best[k] = r
    rows = sorted(best.values(), key=lambda r: (r["step"], r["key"], r["stream"]))  # type: ignore[arg-type,return-value]
    return [(r["step"], r["key"], r["stream"], r["value"]) for r in rows]  # type: ignore[misc]


@pytest.mark.parametrize("steps,keys,streams,fast", [
    ([0, 1, 2, 5], ["a"] * 4, ["main"] * 4, True),
    ([0, 1, 1, 2], ["a"] * 4, ["main"] * 4, False),  # commit=False / explicit repeat
    ([0, 1, 2, 1, 2], ["a"] * 5, ["main"] * 5, False),  # a rewind
    ([0, 1, 0, 1], ["a", "a", "b", "b"], ["main"] * 4, False),  # several keys
    ([0, 1, 0, 1], ["a"] * 4, ["rank0", "rank0", "rank1", "rank1"], False),  # several streams
])
def test_fast_path_only_where_rows_cannot_repeat(steps: list[int], keys: list[str], streams: list[str],
                                                 fast: bool) -> None:
    t = _table(steps, keys, streams)
    assert _cannot_repeat(t) is fast
    got = resolve(t)
    assert [(r["step"], r["key"], r["stream"], r["value"]) for r in got.to_pylist()] == _reference(t)
    if len(set(streams)) == 1:
        wide = to_wide(got, [keys[0]])
        assert wide.column("step").to_pylist() == sorted({s for s, k in zip(steps, keys) if k == keys[0]})


def test_rewound_run_reads_the_later_write(tmp_path: Path) -> None:
    """A run whose steps go back (explicit steps) resolves as before: the later call wins, by step."""
    run = runsync.init(dir=tmp_path, id="r", settings=runsync.Settings(part_interval=3600))
    for s in range(5):
        run.log({"x": float(s)}, step=s)
    for s in range(2, 4):
        run.log({"x": 10.0 + s}, step=s)
    run.finish()
    df = runsync.open_run(tmp_path / "r").history(keys=["x"])
    assert df["step"].tolist() == [0, 1, 2, 3, 4]
    assert df["x"].tolist() == [0.0, 1.0, 12.0, 13.0, 4.0]
    whole = runsync.open_run(tmp_path / "r").history()
    assert whole["x"].tolist() == [0.0, 1.0, 12.0, 13.0, 4.0]
