"""Helpers of the converter tests (issue 17): the CLI in a real subprocess, and run contents."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import env_without_runsync

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``runsync ARGS`` in a subprocess of this interpreter, this checkout first on the path."""
    env = env_without_runsync()
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([sys.executable, "-m", "runsync", *args], capture_output=True, text=True, timeout=timeout,
                       env=env, cwd=str(REPO), check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"runsync {' '.join(args)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("*/run.json"))


def series(view: Any, key: str) -> list[tuple[int, float]]:
    """(step, value) of ``key`` in the run's resolved long history, by step."""
    t = view.history([key], wide=False, format="arrow")
    return sorted(zip(t.column("step").to_pylist(), t.column("value").to_pylist()))


def times(view: Any, key: str) -> list[tuple[int, int]]:
    """(step, time in µs) of ``key``."""
    t = view.history([key], wide=False, format="arrow")
    return sorted(zip(t.column("step").to_pylist(), t.column("time").cast("int64").to_pylist()))


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def cli_here(capsys: Any, *args: str) -> tuple[int, str, str]:
    """``runsync ARGS`` in this process (the converters' packages stay imported between calls: the repeat
    imports and exports of the idempotence checks cost no interpreter start); (exit code, stdout, stderr)."""
    from runsync.cli import main

    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err
