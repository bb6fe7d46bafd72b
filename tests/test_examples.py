"""The examples run as documented (issue: distributed layouts with runnable examples)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import env_without_runsync

import runsync

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(root: Path, *args: str, system: bool = False) -> str:
    env = env_without_runsync()
    env.update(RUNSYNC_SILENT="1", RUNSYNC_SYSTEM="on" if system else "off")
    r = subprocess.run([sys.executable, str(EXAMPLES / "distributed.py"), *args, "--dir", str(root)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_shared_run_merges_rank_streams_and_keeps_system_metrics_per_rank(root: Path) -> None:
    out = _run(root, "--layout", "shared", "--world", "3", "--steps", "50", system=True)
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    view = runsync.open_run(run_dir)
    assert view.status == "finished"
    assert sorted(s["stream"] for s in view.streams()) == ["rank0", "rank1", "rank2"]
    rows = view.rows()  # every rank's rows; resolution (§4.5) is within a stream, so all are kept
    assert set(rows.column("stream").to_pylist()) == {"rank0", "rank1", "rank2"}
    hist = view.history()
    assert rows.num_rows == 3 * 50 * 2 and len(hist) == 3 * 50 and hist["step"].max() == 49
    assert hist["rank"].tolist() == [r for r in range(3) for _ in range(50)]
    # the recipes the example prints: runsync's mean over ranks equals stock pandas'
    assert "per-rank rows 150 (3 streams)" in out and "columns of the per-rank pivot: rank0, rank1, rank2" in out
    mean = float(out.split("mean over ranks at the last step ")[1].split(";")[0])
    assert float(out.split("stock pandas mean at the last step ")[1].split()[0]) == mean
    for rank in range(3):  # each rank records its own system metrics (a sub-stream of its stream)
        assert (run_dir / "streams" / f"rank{rank}" / "system").is_dir()
    system = view.system(wide=True)  # a run this short may end before a rank's first sample
    assert set(system["stream"]) <= {"rank0", "rank1", "rank2"}


@pytest.mark.parametrize("layout,runs", [("per-rank", 3), ("rank0", 1)])
def test_per_rank_and_rank0_layouts(root: Path, layout: str, runs: int) -> None:
    _run(root, "--layout", layout, "--world", "3", "--steps", "20")
    table = runsync.runs(root)
    assert len(table) == runs
    assert set(table["status"]) == {"finished"}
    if layout == "per-rank":
        assert table["group"].nunique() == 1
        assert sorted(table["job_type"]) == ["rank0", "rank1", "rank2"]


def _framework_example(root: Path, tmp_path: Path, script: str, *args: str) -> runsync.RunView:
    env = env_without_runsync()
    env.update(RUNSYNC_SILENT="1", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(EXAMPLES / script), *args, "--dir", str(root)], env=env,
                       capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-4000:]
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    return runsync.open_run(run_dir)


@pytest.mark.skipif(importlib.util.find_spec("lightning") is None, reason="the 'integrations' extra is not installed")
def test_lightning_example(root: Path, tmp_path: Path) -> None:
    view = _framework_example(root, tmp_path, "lightning_train.py", "--epochs", "2", "--rows", "256")
    assert view.status == "finished" and view.config["hidden"] == 32
    assert {"train/loss", "val/loss"} <= set(view.history().columns)
    assert any(name.endswith(".ckpt") for name in view.files())


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                    reason="the 'integrations' extra is not installed")
def test_hf_example(root: Path, tmp_path: Path) -> None:
    view = _framework_example(root, tmp_path, "hf_train.py", "--epochs", "1", "--rows", "320")  # 10 steps
    assert view.status == "finished" and view.config["model_config"]["hidden"] == 16
    assert {"train/loss", "eval/loss"} <= set(view.history().columns) and "train/train_runtime" in view.summary
