"""The runs table shows what differs (issue 13 §4): config keys that vary across the listed runs come first,
a random search's parameter (a different value in every run) included; a failed run's cause is a column."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import runsync


def _cli(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNSYNC_")}
    r = subprocess.run([sys.executable, "-m", "runsync", *args], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_random_search_parameter_is_shown(tmp_path: Path) -> None:
    rng = random.Random(3)
    for i in range(6):
        cfg = {"lr": 10 ** rng.uniform(-5, -2), "batch": 32 if i % 2 else 64, "seed": 1000 + i,
               "out_dir": f"/scratch/job{i}", "model": "resnet18"}
        run = runsync.init(dir=tmp_path, config=cfg)
        run.log({"loss": 1.0 / (i + 1)})
        run.finish()
    header = _cli("runs", str(tmp_path)).splitlines()[0].split()
    assert "config.lr" in header and "config.batch" in header, header
    assert header.index("config.lr") < header.index("config.seed") if "config.seed" in header else True
    assert "config.model" not in header  # the same in every run


def test_a_failed_runs_cause_is_a_column(tmp_path: Path) -> None:
    good = runsync.init(dir=tmp_path)
    good.log({"loss": 1.0})
    good.finish()
    code = ("import runsync, sys\nwith runsync.init(dir=sys.argv[1]) as r:\n    r.log({'loss': 2.0})\n"
            "    raise MemoryError('CUDA out of memory')\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, timeout=120)
    out = _cli("runs", str(tmp_path))
    assert "error" in out.splitlines()[0].split()
    assert "MemoryError: CUDA out of memory" in out
    ls = _cli("ls", str(tmp_path))
    assert "error" in ls.splitlines()[0].split() and "MemoryError: CUDA out of memory" in ls
