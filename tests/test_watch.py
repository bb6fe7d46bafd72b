"""Terminal views: sparklines (runsync show) and `runsync watch` following a real writer process."""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import runsync
from runsync import cli
from runsync.cli import runs as runs_cli
from runsync.cli import watch as watch_cli
from runsync.format.history import resolve
from runsync.reader.sparkline import BARS, choose_keys, downsample, format_sparks, numeric_series, spark, sparkline

WRITER = textwrap.dedent("""
    import sys, time
    import runsync
    root, rid, steps, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    fast = runsync.Settings(flush_interval=0.05, part_interval=0.2, heartbeat_interval=0.5, segment_size=1 << 20)
    run = runsync.init(dir=root, id=rid, settings=fast)
    for i in range(steps):
        run.log({"loss": 1.0 / (i + 1), "acc": i / steps, "note": f"s{i}"})
        time.sleep(0.05)
    if end == "hang":
        time.sleep(120)
    run.finish()
""")

CLI = textwrap.dedent("""
    import sys
    from runsync import cli
    from runsync.cli import runs, watch
    cli._MODULES = tuple(m for m in cli._MODULES if m not in (runs, watch)) + (runs, watch)
    sys.exit(cli.main(sys.argv[1:]))
""")


# -- sparklines -----------------------------------------------------------------------------------


def test_short_series_are_drawn_point_by_point() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == BARS
    assert sparkline([3.0, 3.0, 3.0]) == "▁▁▁"
    assert sparkline([0, math.nan, 1]) == "▁ █"
    assert sparkline([0, math.inf, -math.inf, 1]) == "▁██▁"[:1] + "█▁█"
    assert sparkline([]) == ""
    assert sparkline([math.nan, math.nan]) == "  "


def test_downsampling_keeps_each_buckets_min_and_max() -> None:
    v = np.linspace(1.0, 0.0, 10_000)
    v[6_543] = 50.0  # one spike
    v[2_001] = -3.0  # one dip
    d = downsample(v, 40)
    assert len(d) <= 40
    assert d.max() == 50.0 and d.min() == -3.0
    line = sparkline(v, 40)
    assert len(line) == 40 and line.count("█") == 1 and line.count("▁") >= 1
    # order inside a bucket follows time: a rising series stays rising
    assert list(downsample(np.arange(1000.0), 40)) == sorted(downsample(np.arange(1000.0), 40))
    assert len(sparkline(np.arange(1001.0), 7)) <= 7


def test_spark_numbers_and_format() -> None:
    s = spark("loss", [0, 1, 2, 3], [4.0, 1.0, math.nan, 2.0])
    assert (s.first, s.last, s.min, s.max, s.points, s.first_step, s.last_step) == (4.0, 2.0, 1.0, 4.0, 4, 0, 3)
    lines = format_sparks([s, spark("val/acc", [5], [0.5])])
    assert lines[0].startswith("  loss     ") and "4 → 2" in lines[0] and "min 1  max 4" in lines[0]
    assert "(1 points, step 5)" in lines[1]


def test_numeric_series_and_key_choice(tmp_path: Path, fast: runsync.Settings) -> None:
    with runsync.init(dir=tmp_path, settings=fast) as run:
        for i in range(5):
            run.log({"b": i, "a": 0.5 * i, "s": "x", "t": True, "z": 1.0})
        run.log({"a": 9.0}, step=2)
        run.summary["z"] = 3.0
    series = numeric_series(resolve(runsync.open_run(run.dir).rows()))
    assert sorted(series) == ["a", "b", "z"]  # FLOAT and INT; not STRING or BOOL
    steps, values = series["a"]
    assert list(steps) == [0, 1, 2, 3, 4] and list(values) == [0.0, 0.5, 9.0, 1.5, 2.0]
    points = {k: len(v[0]) for k, v in series.items()}
    assert points == {"a": 5, "b": 5, "z": 5}
    assert choose_keys(points, {"z": 3.0, "b": 4}) == ["b", "z", "a"]
    assert choose_keys({"once": 1, "often": 9, "mid": 5, "manual": 1}, {"manual": 1}) == ["manual", "often", "mid",
                                                                                         "once"]
    assert choose_keys({f"k{i:02d}": 3 for i in range(20)}, {}) == [f"k{i:02d}" for i in range(8)]


# -- runsync show ---------------------------------------------------------------------------------


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch) -> Any:
    mods = tuple(m for m in cli._MODULES if m not in (runs_cli, watch_cli)) + (runs_cli, watch_cli)
    monkeypatch.setattr(cli, "_MODULES", mods)
    return cli.main


def test_show_draws_sparklines(tmp_path: Path, fast: runsync.Settings, main: Any,
                               capsys: pytest.CaptureFixture[str]) -> None:
    with runsync.init(dir=tmp_path, settings=fast) as run:
        for i in range(500):
            run.log({"loss": 1.0 / (i + 1) + (10.0 if i == 250 else 0.0), "acc": i / 500, "name": "x"})
        for i in range(12):
            run.log({f"extra/{i:02d}": float(i)})
    assert main(["show", str(run.dir)]) == 0
    out = capsys.readouterr().out
    assert "\nlast values\n" in out and "  loss = 0.002" in out
    metrics = out.split("\nmetrics")[1].splitlines()
    assert metrics[0] == " (8 of 14 numeric keys; --keys to choose)"
    rows = {ln.split()[0]: ln for ln in metrics[1:] if ln.strip()}
    assert list(rows)[:2] == ["acc", "loss"]  # in the summary: first
    assert "█" in rows["loss"] and "1 → 0.002" in rows["loss"] and "max 10" in rows["loss"]
    assert "(500 points, steps 0–499)" in rows["loss"]
    assert main(["show", str(run.dir), "--keys", "loss", "--spark-width", "10"]) == 0
    out = capsys.readouterr().out.split("\nmetrics\n")[1]
    line = out.splitlines()[0]
    assert line.split()[0] == "loss" and len(line.split()[1]) == 10


# -- runsync watch --------------------------------------------------------------------------------


def _writer(root: Path, rid: str, steps: int, end: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSYNC_")}
    env["RUNSYNC_SILENT"] = "1"
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), rid, str(steps), end], env=env)


def _wait_for_run(root: Path, rid: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not (root / rid / "streams" / "main" / "status.json").exists():
        assert proc.poll() is None, "writer died"
        assert time.monotonic() < deadline, "writer did not start"
        time.sleep(0.02)


def test_watch_follows_a_writer_until_it_finishes(root: Path, main: Any, capsys: pytest.CaptureFixture[str]) -> None:
    proc = _writer(root, "live", 40, "finish")  # ~2 s of logging
    try:
        _wait_for_run(root, "live", proc)
        t0 = time.monotonic()
        code = main(["watch", "live", "--dir", str(root), "--interval", "0.2"])
        elapsed = time.monotonic() - t0
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("watching ") and "(id live)" in out[0]
    steps = [int(ln.split()[1]) for ln in out if ln.startswith("step ")]
    assert len(steps) >= 3 and steps == sorted(steps) and len(set(steps)) == len(steps)
    assert steps[-1] == 39
    assert all("acc=" in ln and "loss=" in ln for ln in out if ln.startswith("step "))
    assert out[-1].startswith("run ") and "finished" in out[-1] and "40 steps" in out[-1]
    assert elapsed > 0.5  # it followed the run, it did not just print the end


def test_watch_keys_and_a_finished_run_on_a_terminal(tmp_path: Path, fast: runsync.Settings, main: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with runsync.init(dir=tmp_path, settings=fast) as run:
        for i in range(50):
            run.log({"loss": 1.0 / (i + 1), "acc": i / 50, "note": f"n{i}"})

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["watch", str(run.dir), "--keys", "loss", "note", "nothing"]) == 0
    text = out.getvalue()
    assert text.startswith("\033[H") and "\033[K" in text and "\033[J" in text
    assert "finished" in text and "loss " in text and "note = n49" in text and "not logged yet: nothing" in text
    assert "acc" not in text.replace("(id", "")


def test_watch_exit_status_of_a_failed_run(tmp_path: Path, fast: runsync.Settings, main: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), runsync.init(dir=tmp_path, settings=fast) as run:
        run.log({"loss": 1.0})
        raise RuntimeError("boom")
    assert main(["watch", str(run.dir), "--interval", "0.1"]) == 1
    assert "failed" in capsys.readouterr().out.splitlines()[-1]


def test_watch_stops_cleanly_on_ctrl_c(root: Path) -> None:
    writer = _writer(root, "hang", 5, "hang")
    watcher = None
    try:
        _wait_for_run(root, "hang", writer)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSYNC_")}
        watcher = subprocess.Popen([sys.executable, "-c", CLI, "watch", "hang", "--dir", str(root), "--interval",
                                    "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert watcher.stdout is not None
        first = watcher.stdout.readline().decode()
        assert first.startswith("watching ") and "running" in first
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
        assert watcher.returncode == 0, err.decode()
        assert out.decode().splitlines()[-1] == "interrupted" and b"Traceback" not in err
    finally:
        writer.kill()
        writer.wait()
        if watcher is not None:
            watcher.kill()
