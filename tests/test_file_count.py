"""The number of files per run stays bounded for long runs (parts are merged)."""

from __future__ import annotations

import time
from pathlib import Path

import runsync
from runsync.writer.flusher import FULL, merge_group


def _simulate(n_parts: int, rows_each: int, settings: runsync.Settings, full: bool = False) -> list[tuple[int, int]]:
    parts: list[tuple[int, int]] = []
    for _ in range(n_parts):
        parts.append((FULL if full else 0, rows_each))
        while n := merge_group(parts, settings.merge_factor, settings.max_merge_rows):
            merged = (parts[-n][0] + 1, sum(r for _, r in parts[-n:]))
            parts[-n:] = [merged]
    return parts


def test_a_week_at_one_log_per_10ms_leaves_few_files() -> None:
    s = runsync.Settings()
    # One log() of 10 keys every 10 ms = 1,000 rows/s; a part every part_interval seconds.
    week = 7 * 24 * 3600
    n_parts = int(week / s.part_interval)
    parts = _simulate(n_parts, int(1000 * s.part_interval), s)
    assert sum(r for _, r in parts) == 1000 * week
    assert len(parts) <= 200, len(parts)


def test_a_slow_logger_leaves_few_files() -> None:
    s = runsync.Settings()
    parts = _simulate(int(7 * 24 * 3600 / s.part_interval), 10, s)  # one key per second
    assert len(parts) <= 40, len(parts)


def test_full_parts_are_never_merged() -> None:
    s = runsync.Settings()
    assert _simulate(20, s.part_rows, s, full=True) == [(FULL, s.part_rows)] * 20


def test_merging_really_happens_and_keeps_every_row(root: Path) -> None:
    settings = runsync.Settings(part_interval=0.01, flush_interval=0.005, merge_factor=4)
    with runsync.init(dir=root, settings=settings) as run:
        for i in range(400):
            run.log({"i": i, "x": i * 0.5})
            time.sleep(0.002)
    parts = list((run.dir / "history").glob("*.parquet"))
    assert len(parts) < 40  # without merging there would be hundreds
    wide = runsync.open_run(run.dir).history()
    assert wide["i"].tolist() == list(range(400))
    import pandas as pd

    assert sorted(pd.read_parquet(run.dir / "history").query("key == 'i'")["int"]) == list(range(400))
