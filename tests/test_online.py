"""Online mode: a separate process pushes while the run trains; training never waits on it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import env_without_runsync

import runsync
from runsync.syncer import Remote, verify

FAST = runsync.Settings(part_interval=0.3, flush_interval=0.05, sync_interval=0.3, sync_timeout=20)


def test_online_pushes_while_training_and_completes_at_finish(root: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    run = runsync.init(dir=root, mode="online", remote=str(remote), settings=FAST)
    for i in range(20):
        run.log({"i": i})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (remote / run.id / "manifest.json").exists():
        time.sleep(0.1)
    assert (remote / run.id / "manifest.json").exists(), "nothing was pushed while the run trained"
    for i in range(20, 40):
        run.log({"i": i})
    run.finish()
    assert sorted(pd.read_parquet(remote / run.id / "history")["int"].astype(int)) == list(range(40))
    assert verify(Remote(str(remote))).ok
    assert runsync.open_run(remote / run.id).status == "finished"


def test_online_with_unreachable_remote_never_blocks_training(root: Path) -> None:
    # A closed port on loopback: every push fails; training and finish() go on.
    settings = FAST.with_(sync_timeout=3)
    run = runsync.init(dir=root, mode="online", remote="http://127.0.0.1:9/runs", settings=settings)
    t = time.perf_counter()
    for i in range(1000):
        run.log({"i": i})
    assert time.perf_counter() - t < 5
    t = time.perf_counter()
    run.finish()
    assert time.perf_counter() - t < 15
    assert runsync.open_run(run.dir).history()["i"].tolist() == list(range(1000))
    assert (run.dir / ".runsync" / "live-sync.log").exists()


def test_online_needs_a_remote(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNSYNC_REMOTE", raising=False)
    with pytest.raises(ValueError, match="RUNSYNC_REMOTE"):
        runsync.init(dir=root, mode="online")


def test_env_selects_online_mode(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNSYNC_MODE", "online")
    monkeypatch.setenv("RUNSYNC_REMOTE", str(tmp_path / "r2"))
    with runsync.init(dir=root, settings=FAST) as run:
        run.log({"x": 1.0})
    assert (tmp_path / "r2" / run.id / "manifest.json").exists()


def test_offline_mode_never_starts_a_syncer(root: Path) -> None:
    code = (
        "import sys, subprocess, runsync\n"
        "calls = []\n"
        "orig = subprocess.Popen.__init__\n"
        "def spy(self, *a, **k): calls.append(a); orig(self, *a, **k)\n"
        "subprocess.Popen.__init__ = spy\n"
        f"run = runsync.init(dir={str(root)!r})\n"
        "run.log({'x': 1.0}); run.finish()\n"
        "assert not calls, calls\n"
        "assert 'runsync.syncer' not in sys.modules and 'fsspec' not in sys.modules\n"
    )
    env = env_without_runsync()
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
