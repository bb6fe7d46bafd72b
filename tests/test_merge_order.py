"""Every part is sorted by (key, seq) as a whole, merges of merged parts included (spec §4.2, §4.4), so the
row-group statistics on key stay selective; reading some keys decodes only their row groups."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

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
    spans = [int(p.name.split("-")[1].split(".")[0]) - int(p.name.split(".")[1].split("-")[0]) for p in parts]
    assert max(spans) >= 40, "the scenario needs a merge of merged parts"
    for p in parts:
        t = pq.read_table(p, columns=["key", "seq"])
        rows = list(zip(t.column("key").to_pylist(), t.column("seq").to_pylist()))
        assert rows == sorted(rows), f"{p.name} is not sorted by (key, seq)"
    assert len(runsync.open_run(run.dir).history()) == 400


def test_a_merge_is_key_sorted_across_row_groups_and_reading_one_key_skips_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With small row groups (and small merge batches, to exercise batching), a merged part's row groups
    each hold few keys; read_part(keys=...) decodes only the row groups whose statistics admit the key."""
    from runsync.format import history

    monkeypatch.setattr(history, "ROW_GROUP_ROWS", 64)
    monkeypatch.setattr(history, "MERGE_BATCH_ROWS", 150)
    settings = runsync.Settings(part_interval=0.05, flush_interval=0.02, merge_factor=2)
    run = runsync.init(dir=tmp_path, settings=settings)
    for i in range(300):
        run.log({f"k{j}": float(i * 10 + j) for j in range(8)})
        if i % 30 == 29:
            time.sleep(0.06)
    run.finish()
    view = runsync.open_run(run.dir)
    assert view.history(keys=["k3"])["k3"].tolist() == [float(i * 10 + 3) for i in range(300)]
    biggest = max((run.dir / "history").glob("*.parquet"), key=lambda p: pq.ParquetFile(p).metadata.num_rows)
    md = pq.ParquetFile(biggest).metadata
    assert md.num_row_groups > 4
    t = pq.read_table(biggest, columns=["key", "seq"])
    rows = list(zip(t.column("key").to_pylist(), t.column("seq").to_pylist()))
    assert rows == sorted(rows)
    groups = history._row_groups_with(md, ["k3"])
    assert 0 < len(groups) < md.num_row_groups / 2, (len(groups), md.num_row_groups)
    got = history.read_part(biggest, keys=["k3"])
    assert set(got.column("key").to_pylist()) == {"k3"}
