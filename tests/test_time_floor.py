"""Time never decreases within a stream (spec §4.3), even when the wall clock steps back after rows
reached parts and their WAL segments were released: the tail's floor starts at the parts' greatest
time, so a read of a dead writer's tail, its recovery, and what a live writer stores agree
(issue 10 item 9)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import runsync

_CHILD = textwrap.dedent('''
    import os, signal, sys, time
    import pyarrow.parquet as pq
    import runsync
    import runsync.writer.encoder as encoder

    class Clock:
        t = 2_000_000_000.0
        def __call__(self):
            self.t += 0.001
            return self.t

    clock = Clock()
    encoder._time = clock
    settings = runsync.Settings(segment_size=1 << 16, part_interval=0.2, flush_interval=0.02)
    run = runsync.init(dir=sys.argv[1], id="floor", settings=settings)
    for i in range(2000):
        run.log({"a": float(i)})
        if i % 100 == 99:
            time.sleep(0.02)  # spare file segments keep up: no memory segments
    run.log({"s": "x" * 30000})  # fills half a segment
    hist = run.dir / "history"
    deadline = time.monotonic() + 20
    while sum(pq.ParquetFile(p).metadata.num_rows for p in hist.glob("*.parquet")) < 2001:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    clock.t -= 100.0  # the wall clock steps back 100 s (NTP, a VM migration)
    run.log({"s": "y" * 60000})  # does not fit: a new segment begins with a stepped-back time
    time.sleep(0.5)  # the old segment, all in parts, is released
    for i in range(2000, 2050):
        run.log({"a": float(i)})
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_tail_after_a_clock_step_back_is_floored_at_the_parts_greatest_time(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    segs = sorted(p.name for p in (tmp_path / "floor" / "streams" / "main").glob("wal.*"))
    assert "wal.000000.000000" not in segs, segs  # the scenario: early segments were released
    crashed = runsync.open_run(tmp_path / "floor").history()
    assert len(crashed) == 2052
    times = crashed["time"].tolist()
    assert all(x <= y for x, y in zip(times, times[1:])), "time decreased within the stream (§4.3)"
    # recovery by the next writer stores the same times the reader showed
    run = runsync.init(dir=tmp_path, id="floor", resume=True)
    run.finish()
    recovered = runsync.open_run(tmp_path / "floor").history()
    assert recovered["time"].tolist()[:2052] == times
