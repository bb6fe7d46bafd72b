"""Every row group of every part is sorted by (key, seq), merges of merged parts included (spec §4.2)."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq

import runsync


def test_row_groups_of_merged_parts_are_sorted_by_key_then_seq(tmp_path: Path) -> None:
    settings = runsync.Settings(part_interval=0.05, flush_interval=0.02, merge_factor=2)
    run = runsync.init(dir=tmp_path, settings=settings)
    for i in range(400):
        run.log({"b": float(i), "a": i, "c": f"s{i}"})
        if i % 10 == 9:
            time.sleep(0.06)  # a part per batch, merged in pairs, then pairs of pairs…
    run.finish()
    parts = sorted((run.dir / "history").glob("*.parquet"))
    levels = 0
    for p in parts:
        pf = pq.ParquetFile(p)
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g, columns=["key", "seq"])
            rows = list(zip(t.column("key").to_pylist(), t.column("seq").to_pylist()))
            assert rows == sorted(rows), f"{p.name} row group {g} is not sorted by (key, seq)"
        levels = max(levels, pf.num_row_groups)
    assert levels >= 2, "the scenario needs a merge of merged parts"
    assert len(runsync.open_run(run.dir).history()) == 400
