"""The system-metrics table of a run: written next to history while the run lives (spec §14).

Rows go to ``<run>/system/`` parts through the same WAL/part machinery as
history, in the stream's ``system`` sub-stream (``streams/<s>/system/``).
conftest sets RUNSYNC_SYSTEM=off for every test, so these pass ``system=True``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from conftest import env_without_runsync

import runsync

SETTINGS: dict[str, Any] = {"flush_interval": 0.05, "part_interval": 0.2, "heartbeat_interval": 0.5,
                            "segment_size": 1 << 20, "system_interval": 0.05, "system_window": 0.25}
SYS = runsync.Settings(**SETTINGS)
TIMEOUT = 20.0

BASE_KEYS = ["cpu.percent", "memory.used_percent", "memory.used_bytes", "memory.available_bytes", "proc.rss_bytes",
             "proc.cpu_percent", "proc.threads", "net.sent_bytes_per_s", "net.recv_bytes_per_s", "disk.free_bytes"]
if hasattr(os, "getloadavg"):
    BASE_KEYS.append("load.1m")
if psutil.disk_io_counters(perdisk=False) is not None:
    BASE_KEYS += ["disk.read_bytes_per_s", "disk.write_bytes_per_s"]


def _wait_rows(run_dir: Path, n: int, timeout: float = TIMEOUT) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while True:
        try:
            df = runsync.open_run(run_dir).system()
        except (FileNotFoundError, runsync.NotARunError):
            df = None
        if df is not None and len(df) >= n:
            return df
        assert time.monotonic() < deadline, f"fewer than {n} system rows after {timeout} s"
        time.sleep(0.05)


def _assert_no_system(run_dir: Path) -> None:
    assert not (run_dir / "system").exists()
    for st in (run_dir / "streams").iterdir():
        assert not (st / "system").exists(), f"{st.name} has a system sub-stream"
    assert runsync.open_run(run_dir).system().empty


def _child_env(system: str = "on") -> dict[str, str]:
    env = env_without_runsync()
    env.update(RUNSYNC_SILENT="1", RUNSYNC_SYSTEM=system)
    return env


def _wait_all(procs: list[subprocess.Popen[str]], timeout: float = 60) -> None:
    """Wait for children started with stdout/stderr pipes; each must exit 0. None outlives the call."""
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, out + err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# -- rows appear, stop, and make sense ------------------------------------------------------------


def test_rows_appear_while_running_and_stop_at_finish(root: Path) -> None:
    run = runsync.init(dir=root, settings=SYS, system=True)
    try:
        t0 = time.monotonic()
        live = _wait_rows(run.dir, 3)
        assert time.monotonic() - t0 < TIMEOUT
        assert runsync.open_run(run.dir).status == "running"
        # readable by a stock reader too once a part is written
        deadline = time.monotonic() + TIMEOUT
        while not list((run.dir / "system").glob("*.parquet")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(pd.read_parquet(run.dir / "system")) > 0
        run.log({"loss": 1.0})
    finally:
        run.finish()
    view = runsync.open_run(run.dir)
    after = view.system()
    assert len(after) >= len(live)
    time.sleep(0.6)  # more than two windows
    assert len(runsync.open_run(run.dir).system()) == len(after)
    assert len(pd.read_parquet(run.dir / "system").drop_duplicates(["stream", "seq"])) == len(after)
    # after finish, every row is in a part and the sub-stream's WAL is gone
    assert not [p for p in (run.dir / "streams" / "main" / "system").iterdir() if p.name.startswith("wal.")]
    status = json.loads((run.dir / "streams" / "main" / "system" / "status.json").read_bytes())
    assert status["state"] == "finished"
    # the system table does not leak into history, nor history into it
    assert view.history().columns.tolist() == ["step", "time", "loss"]
    assert "loss" not in after.columns
    assert view.status == "finished"


def test_keys_present_and_sane(root: Path) -> None:
    with runsync.init(dir=root, settings=SYS, system=True) as run:
        _wait_rows(run.dir, 3)
    df = runsync.open_run(run.dir).system()
    assert df.columns[:3].tolist() == ["step", "stream", "time"]
    for key in BASE_KEYS:
        assert key in df.columns and key + ".max" in df.columns, key
    if importlib.util.find_spec("pynvml") is None:
        assert not [c for c in df.columns if c.startswith("gpu.")]
    assert df.step.tolist() == list(range(len(df)))
    assert (df.stream == "main").all()
    assert df.time.is_monotonic_increasing
    assert abs(df.time.iloc[-1].timestamp() - time.time()) < 60
    full = df.dropna(subset=BASE_KEYS)
    assert len(full) >= 1  # a whole window has every metric (rates need two samples)
    total = psutil.virtual_memory().total
    for _, row in full.iterrows():
        assert 0.0 <= row["cpu.percent"] <= 100.0
        assert 0.0 <= row["memory.used_percent"] <= 100.0
        assert 0 < row["memory.used_bytes"] <= total and 0 < row["memory.available_bytes"] <= total
        assert row["memory.used_bytes"] + row["memory.available_bytes"] == pytest.approx(total, rel=0.05)
        assert 1 << 20 < row["proc.rss_bytes"] < total
        assert row["proc.threads"] >= 1
        assert row["proc.cpu_percent"] >= 0
        assert row["disk.free_bytes"] > 0
        for key in BASE_KEYS:
            v = row[key]
            assert math.isfinite(v) and v >= 0, (key, v)
            assert row[key + ".max"] >= v - 1e-9 * abs(v), key
    long = runsync.open_run(run.dir).system(wide=False)
    assert {"step", "time", "key", "stream", "seq"} <= set(long.columns)
    assert set(long.key) >= set(BASE_KEYS)
    arrow = runsync.open_run(run.dir).system(format="arrow")
    assert arrow.num_rows == len(df) and arrow.column_names == df.columns.tolist()
    only = runsync.open_run(run.dir).system(keys=["memory.used_bytes"])
    assert only.columns.tolist() == ["step", "stream", "time", "memory.used_bytes"]


# -- switched off -------------------------------------------------------------------------------


def test_system_false_writes_no_system_table(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSYNC_SYSTEM", "on")  # the argument wins over the environment
    with runsync.init(dir=root, settings=SYS, system=False) as run:
        run.log({"a": 1.0})
        time.sleep(0.4)
    _assert_no_system(run.dir)
    assert not [t for t in threading.enumerate() if t.name == "runsync-system"]


def test_runsync_system_env_in_child(root: Path) -> None:
    code = f"""
        import time, runsync
        s = runsync.Settings(**{SETTINGS!r})
        with runsync.init(dir={str(root)!r}, id=__import__("os").environ["RUN_ID"], settings=s) as run:
            run.log({{"a": 1.0}})
            time.sleep(0.4)
    """
    procs = []
    for value, run_id in (("off", "sysoff"), ("0", "sysoff0"), ("on", "syson")):
        env = _child_env(value)
        env["RUN_ID"] = run_id
        procs.append(subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    _wait_all(procs)
    _assert_no_system(root / "sysoff")
    _assert_no_system(root / "sysoff0")
    on = runsync.open_run(root / "syson").system()
    assert len(on) >= 1 and "memory.used_bytes" in on.columns


# -- resume, several streams ----------------------------------------------------------------------


def test_resume_continues_steps(root: Path) -> None:
    with runsync.init(dir=root, id="sysres", settings=SYS, system=True) as run:
        _wait_rows(run.dir, 2)
    n1 = len(runsync.open_run(run.dir).system())
    with runsync.init(dir=root, id="sysres", resume=True, settings=SYS, system=False) as run:
        run.log({"x": 1.0})  # a resume without system metrics adds none
    assert len(runsync.open_run(run.dir).system()) == n1
    with runsync.init(dir=root, id="sysres", resume=True, settings=SYS, system=True) as run:
        _wait_rows(run.dir, n1 + 2)
    df = runsync.open_run(run.dir).system()
    assert df.step.tolist() == list(range(len(df)))  # no step reused, none skipped
    assert df.time.is_monotonic_increasing
    parts = pd.read_parquet(run.dir / "system")
    assert sorted(parts.drop_duplicates(["seq"]).step) == list(range(len(df)))
    claims = sorted(p.name for p in (run.dir / "streams" / "main" / "system").glob("claim.*.json"))
    assert len(claims) == 2  # two incarnations of the system sub-stream


RANK_CHILD = """
    import os, time, runsync
    s = runsync.Settings(**{settings!r})
    run = runsync.init(dir={root!r}, id="ranks", stream=os.environ["STREAM"], settings=s)
    deadline = time.monotonic() + 20
    i = 0
    while time.monotonic() < deadline:
        run.log({{"i": i}})
        i += 1
        time.sleep(0.01)
        if i >= 20 and len([p for p in os.listdir(run.dir / "system") if p.startswith(run.stream + ".")]) >= 2:
            break
    run.finish()
"""


def test_two_streams_write_one_system_table(root: Path) -> None:
    code = textwrap.dedent(RANK_CHILD.format(settings=SETTINGS, root=str(root)))
    procs = []
    for stream in ("rank0", "rank1"):
        env = _child_env("on")
        env["STREAM"] = stream
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    _wait_all(procs)
    view = runsync.open_run(root / "ranks")
    assert view.status == "finished"
    df = view.system(wide=True)
    assert "stream" in df.columns
    assert set(df.stream) == {"rank0", "rank1"}
    for stream, g in df.groupby("stream"):
        assert g.step.tolist() == list(range(len(g))), stream  # each stream counts its own steps
        assert g["proc.rss_bytes"].notna().any()
    assert not df.duplicated(["stream", "step"]).any()
    long = view.system(wide=False)
    assert set(long.stream) == {"rank0", "rank1"}
    assert {p.name.split(".")[0] for p in (root / "ranks" / "system").glob("*.parquet")} == {"rank0", "rank1"}
    for stream in ("rank0", "rank1"):
        assert (root / "ranks" / "streams" / stream / "system" / "status.json").is_file()


# -- kill -9 -------------------------------------------------------------------------------------

KILL_CHILD = """
    import time, runsync
    # Windows of 0.2 s, parts only every 30 s: what the kill leaves is in the WAL only.
    s = runsync.Settings(flush_interval=0.05, part_interval=30.0, heartbeat_interval=0.5, segment_size=1 << 20,
                         system_interval=0.05, system_window=0.2)
    run = runsync.init(dir={root!r}, id="syskill", settings=s, system=True)
    i = 0
    while True:
        run.log({{"i": i}})
        i += 1
        time.sleep(0.005)
"""


def test_kill9_keeps_emitted_windows_and_resume_recovers_them(root: Path, tmp_path: Path) -> None:
    from runsync.syncer import Remote, push, verify

    err = tmp_path / "child.stderr"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILL_CHILD.format(root=str(root)))],
                                env=_child_env("off"), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr)
    run_dir = root / "syskill"
    try:
        try:
            seen = _wait_rows(run_dir, 4)
        except AssertionError:
            raise AssertionError(err.read_text()) from None
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert not list((run_dir / "system").glob("*.parquet")), "test premise: no system part before the kill"

    view = runsync.open_run(run_dir)
    assert view.status == "crashed"
    crashed = view.system()
    assert len(crashed) >= len(seen) >= 4
    pd.testing.assert_frame_equal(crashed.iloc[: len(seen)].reset_index(drop=True), seen.reset_index(drop=True))
    assert crashed.step.tolist() == list(range(len(crashed)))

    # A crashed run's system tail is pushed (WAL of a dead incarnation) and reads the same on the remote.
    dest = tmp_path / "remote"
    assert not push(root, Remote(str(dest))).failures
    assert verify(Remote(str(dest))).ok
    pd.testing.assert_frame_equal(runsync.open_run(dest / "syskill").system(), crashed)

    # Resume (with system metrics) recovers the tail into parts; stock readers then see those windows.
    with runsync.init(dir=root, id="syskill", resume=True, settings=SYS, system=True) as run:
        run.log({"i": -1})
    parts = pd.read_parquet(run_dir / "system")
    steps = sorted(set(parts.step))
    assert steps[: len(crashed)] == list(range(len(crashed)))
    after = runsync.open_run(run_dir).system()
    pd.testing.assert_frame_equal(after.iloc[: len(crashed)].reset_index(drop=True), crashed)
    assert after.step.tolist() == list(range(len(after)))
    sub = run_dir / "streams" / "main" / "system"
    assert not [p.name for p in sub.iterdir() if p.name.startswith("wal.000000.")], "crashed WAL not cleaned up"


# -- push ------------------------------------------------------------------------------------------


def test_push_carries_system_metrics(root: Path, tmp_path: Path) -> None:
    from runsync.syncer import Remote, push, verify

    with runsync.init(dir=root, settings=SYS, system=True) as run:
        for i in range(3):
            run.log({"i": i})
        _wait_rows(run.dir, 3)
    src = runsync.open_run(run.dir).system()
    dest = tmp_path / "remote"
    res = push(root, Remote(str(dest)))
    assert not res.failures and res.runs_pushed == 1
    assert verify(Remote(str(dest))).ok
    remote_view = runsync.open_run(dest / run.id)
    pd.testing.assert_frame_equal(remote_view.system(), src)
    pd.testing.assert_frame_equal(remote_view.system(wide=False), runsync.open_run(run.dir).system(wide=False))
    assert (dest / run.id / "streams" / "main" / "system" / "status.json").is_file()
    assert len(pd.read_parquet(dest / run.id / "system")) == len(pd.read_parquet(run.dir / "system"))
