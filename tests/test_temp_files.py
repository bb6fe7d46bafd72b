"""Temp files never sit where stock readers look (spec §2.3, since 1.3; issue 10 item 10).

A run's temp files are written in ``<run>/.tmp/`` and renamed into place, so pandas, pyarrow, DuckDB
and Polars read ``runs/<id>/history`` (a directory path or a glob) while the run writes parts and
after a kill -9 mid-write; leftovers are removed by the next writer once no other writer is alive.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow.dataset as ds
from conftest import env_without_runsync

import runsync
from runsync.format.layout import RunLayout
from runsync.writer.claim import LEFTOVER_AGE

CHILD = Path(__file__).with_name("live_child.py")
LIVE = {"part_interval": 0.05, "flush_interval": 0.02, "merge_factor": 2, "heartbeat_interval": 0.5}

# name → read(history dir, as a directory path (False) or a *.parquet glob (True)) → row count
READERS: dict[str, Callable[[Path, bool], int]] = {
    "pandas": lambda d, glob: len(pd.read_parquet(d) if not glob else pd.concat(
        [pd.read_parquet(p) for p in sorted(d.glob("*.parquet"))])),
    "pyarrow": lambda d, glob: ds.dataset(str(d) if not glob else sorted(str(p) for p in d.glob("*.parquet")))
    .count_rows(),
    "duckdb": lambda d, glob: int(duckdb.sql(f"select count(*) from read_parquet('{d}{'/*.parquet' if glob else ''}')")
                                  .fetchall()[0][0]),
    "polars": lambda d, glob: pl.read_parquet(f"{d}/*.parquet" if glob else str(d)).height,
}


def start_child(tmp_path: Path, root: Path, run_id: str, steps: int, end: str, sleep: float = 0.0005,
                settings: dict[str, object] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    ack = tmp_path / f"{run_id}.ack"
    cfg = {"root": str(root), "id": run_id, "ack": str(ack), "steps": steps, "sleep": sleep, "end": end,
           "settings": settings or LIVE}
    proc = subprocess.Popen([sys.executable, str(CHILD), json.dumps(cfg)], env=env_without_runsync(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return proc, ack


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def vanished(e: BaseException) -> bool:
    """A part merged away between a stock reader's listing and its read (spec §9.3): a race every
    reader of a live directory has, not a temp file it tripped over."""
    text = str(e)
    return isinstance(e, FileNotFoundError) or "No such file" in text or "No files found" in text or \
        "not found" in text.lower()


def read_all(d: Path) -> dict[str, int]:
    return {f"{name}/{'glob' if glob else 'dir'}": read(d, glob) for name, read in READERS.items()
            for glob in (False, True)}


def test_stock_readers_read_a_live_run_in_a_loop(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    proc, ack = start_child(tmp_path, root, "live1", steps=6000, end="finish")
    try:
        wait_for(lambda: ack.exists() and any((root / "live1" / "history").glob("*.parquet")))
        hist = root / "live1" / "history"
        ok: dict[str, int] = {}
        errors: list[str] = []
        rounds = 0
        while proc.poll() is None or rounds < 3:
            rounds += 1
            for name, read in READERS.items():
                for glob in (False, True):
                    try:
                        read(hist, glob)
                        ok[name] = ok.get(name, 0) + 1
                    except Exception as e:
                        if not vanished(e):
                            errors.append(f"{name} ({'glob' if glob else 'dir'}): {type(e).__name__}: {e}")
            names = os.listdir(hist)
            assert all(n.endswith(".parquet") and not n.startswith(".") for n in names), names
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        proc.wait()
    assert not errors, errors[:5]
    assert set(ok) == set(READERS), ok
    assert set(read_all(hist).values()) == {3 * 6000}


def _plant_leftovers(run_dir: Path, age: float) -> list[Path]:
    """What a writer killed mid-write leaves: a half part in .tmp/ (1.3), and one an older writer left
    in history/ as a dot-named sibling (1.2)."""
    new = run_dir / ".tmp" / "main.000000000000-000000000099.parquet.0123abcd.tmp"
    new.parent.mkdir(exist_ok=True)
    old = run_dir / "history" / ".main.000000000000-000000000099.parquet.89abcdef.tmp"
    for p in (new, old):
        p.write_bytes(b"PAR1 torn")
        t = time.time() - age
        os.utime(p, (t, t))
    return [new, old]


def test_kill9_mid_write_then_stock_readers_and_cleanup(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    proc, ack = start_child(tmp_path, root, "k1", steps=10**9, end="hang")
    run_dir = root / "k1"
    try:
        wait_for(lambda: len(list((run_dir / "history").glob("*.parquet"))) >= 3)
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: parts are written every 50 ms
    finally:
        proc.kill()
        proc.wait()
    new, old = _plant_leftovers(run_dir, LEFTOVER_AGE + 5)
    # A leftover in .tmp/ is invisible to every stock reader, with no cleanup at all.
    old.unlink()
    counts = read_all(run_dir / "history")
    assert len(set(counts.values())) == 1, counts
    # The next writer of the run removes both kinds once no other writer is alive.
    new, old = _plant_leftovers(run_dir, LEFTOVER_AGE + 5)
    young = run_dir / ".tmp" / "run.json.fedcba98.tmp"
    young.write_bytes(b"{")  # may be a starting writer's: kept
    with runsync.init(id="k1", dir=root, resume=True, settings=runsync.Settings(**LIVE)) as run:
        assert not new.exists() and not old.exists()
        assert young.exists()
        run.log({"loss": 0.0})
    after = read_all(run_dir / "history")
    assert len(set(after.values())) == 1 and min(after.values()) >= min(counts.values()), after


def test_leftovers_are_kept_while_another_writer_is_alive(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    proc, ack = start_child(tmp_path, root, "two", steps=10**9, end="hang")
    try:
        wait_for(lambda: ack.exists())
        new, old = _plant_leftovers(root / "two", LEFTOVER_AGE + 5)
        with runsync.init(id="two", dir=root, stream="rank1", resume=True, settings=runsync.Settings(**LIVE)):
            assert new.exists() and old.exists()  # they may be the live writer's
    finally:
        proc.kill()
        proc.wait()


def test_temp_files_of_every_run_file_go_to_tmp(tmp_path: Path) -> None:
    """Every file of a run is written through <run>/.tmp/: nothing temporary is ever beside a final file."""
    root = tmp_path / "runs"
    with runsync.init(id="t1", dir=root, settings=runsync.Settings(**LIVE)) as run:
        for step in range(50):
            run.log({"loss": float(step)})
    layout = RunLayout(root / "t1")
    assert layout.tmp.is_dir() and not os.listdir(layout.tmp)
    for dirpath, dirs, names in os.walk(layout.dir):
        dirs[:] = [d for d in dirs if d != ".tmp"]
        assert not [n for n in names if n.endswith(".tmp")], (dirpath, names)
