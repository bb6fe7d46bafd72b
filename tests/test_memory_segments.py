"""A burst that outruns the segment allocator puts records in memory segments (spec §9.4). Those rows
must not wait a whole part interval to become durable: the flusher writes them as a part every flush,
and the writer leaves the memory segment as soon as a file segment is ready. A kill -9 a few flush
intervals after the burst loses nothing that log() returned from."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import runsync

_CHILD = textwrap.dedent('''
    import os, signal, sys, time
    import runsync
    settings = runsync.Settings(segment_size=1 << 16, part_interval=3600, flush_interval=0.05)
    run = runsync.init(dir=sys.argv[1], id="burst", settings=settings)
    for i in range(30000):  # ~1.5 MB in a tight loop: far more than two 64 KiB segments
        run.log({"a": float(i)})
    time.sleep(0.5)
    for i in range(30000, 30100):  # after the burst, at a calm pace
        run.log({"a": float(i)})
        time.sleep(0.002)
    time.sleep(0.5)  # several flush intervals, far less than the part interval
    os.kill(os.getpid(), signal.SIGKILL)
''')


def test_rows_logged_into_memory_segments_survive_kill_9_after_a_few_flushes(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    view = runsync.open_run(tmp_path / "burst")
    assert view.history()["a"].tolist() == [float(i) for i in range(30100)]
