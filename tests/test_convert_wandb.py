"""`runsync import wandb` and `runsync export wandb` (issue 17): offline runs written by the real wandb package
(mode offline) in a subprocess, and W&B's own reader (`wandb leet inspect --json`, `--summary`) as the check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("wandb", reason="the wandb extra is not installed: pip install 'runsync[wandb]'")

from convert_util import cli, cli_here, run_dirs, series, times, tree

import runsync

WANDB = str(Path(sys.executable).parent / "wandb")

GEN = r"""
import sys, time, numpy as np, wandb
run_id, first, last, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
run = wandb.init(mode="offline", project="proj", id=run_id, name="my-run", group="g1", job_type="train",
                 tags=["t1", "t2"], notes="some notes", resume="allow" if resume else None,
                 config={"lr": 0.001, "model": {"depth": 4, "act": "relu"}, "bs": 32},
                 settings=wandb.Settings(x_stats_sampling_interval=0.2, silent=True))
for i in range(first, last):
    run.log({"loss": 1.0 / 3 ** i + 1e-13 * i, "acc": i / 7, "phase": "train"}, step=i)
    print(f"line {i}")
if not resume:
    run.log({"img": wandb.Image(np.full((4, 5, 3), 100, np.uint8), caption="c"),
             "hist": wandb.Histogram(np_histogram=([1, 2, 3], [0.0, 1.0, 2.0, 3.0])),
             "tbl": wandb.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]])}, step=last)
    open("saved.txt", "w").write("hello")
    wandb.save("saved.txt", policy="now")
    run.summary["best"] = 0.5
time.sleep(1.0)
run.finish()
"""


def _gen(cwd: Path, run_id: str, first: int, last: int, resume: bool = False) -> None:
    cwd.mkdir(exist_ok=True)
    (cwd / "gen.py").write_text(GEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RUNSYNC_"))}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true")
    subprocess.run([sys.executable, "gen.py", run_id, str(first), str(last), "1" if resume else "0"], cwd=cwd,
                   env=env, check=True, capture_output=True, timeout=180)


def _leet(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WANDB, "leet", "inspect", *args, str(path)], capture_output=True, text=True, timeout=120,
                          check=True)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _leet(path, "--json").stdout.splitlines() if line.strip()]


def _history(path: Path) -> dict[int, dict[str, Any]]:
    """W&B's own reader: step → that history row's items."""
    return {r["history"]["item"]["_step"]: r["history"]["item"] for r in _records(path) if r["type"] == "history"}


def test_import_offline_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _gen(tmp_path, "run1abc", 0, 12)
    [log] = list((tmp_path / "wandb").glob("offline-run-*/run-run1abc.wandb"))
    root = tmp_path / "runs"
    r = cli("import", "wandb", str(tmp_path / "wandb"), "--dir", str(root))
    assert "imported run1abc" in r.stdout, r.stdout
    view = runsync.open_run(root / "run1abc")
    info = view.info
    assert (info.name, info.project, info.group, info.job_type, info.notes, info.tags) == \
        ("my-run", "proj", "g1", "train", "some notes", ["t1", "t2"])
    assert info.source == {"kind": "wandb", "uri": str((tmp_path / "wandb").resolve()), "id": "run1abc"}
    hist = _history(log)
    for key in ("loss", "acc"):
        want = [(s, float(row[key])) for s, row in sorted(hist.items()) if key in row]
        assert series(view, key) == want, key  # bit-exact: W&B's JSON and runsync's float64
        assert times(view, key) == [(s, round(row["_timestamp"] * 1e6)) for s, row in sorted(hist.items())
                                    if key in row]
    assert len(series(view, "loss")) == 12
    assert view.config == {"lr": 0.001, "model": {"depth": 4, "act": "relu"}, "bs": 32}
    summary = view.summary
    assert summary["best"] == 0.5 and summary["loss"] == hist[11]["loss"] and summary["phase"] == "train"
    assert [len(view.media(k)) for k in ("img", "hist", "tbl")] == [1, 1, 1]
    assert view.media("img")[0].value.shape == (4, 5, 3) and view.media("img")[0].caption == "c"
    assert view.media("hist")[0].value.counts.tolist() == [1, 2, 3]
    assert view.media("tbl")[0].value.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
    assert view.system(format="arrow").num_rows > 0
    console = "".join(p.read_text() for p in sorted((root / "run1abc" / "console").glob("*.log")))
    assert all(f"line {i}\n" in console for i in range(12))
    assert view.file_path("saved.txt").read_text() == "hello"
    assert view.status == "finished"
    before = tree(root / "run1abc")
    _rc, out, _err = cli_here(capsys, "import", "wandb", str(tmp_path / "wandb"), "--dir", str(root))
    assert "unchanged run1abc" in out and tree(root / "run1abc") == before


def test_resumed_run_is_one_run(tmp_path: Path) -> None:
    _gen(tmp_path, "resumed1", 0, 5)
    _gen(tmp_path, "resumed1", 5, 9, resume=True)
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
    root = tmp_path / "runs"
    cli("import", "wandb", str(tmp_path / "wandb"), "--dir", str(root))
    [d] = run_dirs(root)
    assert [s for s, _v in series(runsync.open_run(d), "loss")] == list(range(9))


def test_damaged_log_keeps_every_valid_record(tmp_path: Path) -> None:
    _gen(tmp_path, "dmg1", 0, 12)
    [log] = list((tmp_path / "wandb").glob("offline-run-*/run-dmg1.wandb"))
    good = _history(log)
    data = bytearray(log.read_bytes())
    at = data.index(b"line 5")  # a console record in the middle: damages that chunk only
    data[at] ^= 0xFF
    log.write_bytes(bytes(data))
    root = tmp_path / "runs"
    r = cli("import", "wandb", str(log.parent), "--dir", str(root))
    assert "damaged chunk" in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr
    view = runsync.open_run(root / "dmg1")
    steps = [s for s, _v in series(view, "loss")]
    assert steps and set(steps) <= set(good) and 0 in steps
    # a file cut short: everything before the cut
    src = tmp_path / "cut"
    shutil.copytree(log.parent, src)
    (src / log.name).write_bytes(bytes(data[: len(data) * 2 // 3]))
    shutil.rmtree(root)
    r = cli("import", "wandb", str(src), "--dir", str(root))
    assert "cut short" in r.stdout or "damaged" in r.stdout, r.stdout
    assert series(runsync.open_run(root / "dmg1"), "loss")[:3] == [(s, float(good[s]["loss"])) for s in range(3)]
    status = json.loads((root / "dmg1" / "streams" / "main" / "status.json").read_text())
    assert status["state"] == "finished" and "no exit record" in status["error"]  # the cut took the exit record


def test_export_is_read_by_wandb(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with runsync.init(dir=root, name="to-wandb", project="p2", config={"lr": 0.5, "net": {"depth": 3}},
                      tags=["x"], notes="n") as run:
        for i in range(20):
            run.log({"loss": 1.0 / 3 ** i, "n": i, "ok": i % 2 == 0}, step=2 * i)
        run.log({"img": runsync.Image(np.full((3, 4, 3), 7, np.uint8))}, step=40)
        run.summary["best"] = 0.25
    rid = run.id
    out = tmp_path / "wb"
    r = cli("export", "wandb", rid, "--dir", str(root), "-o", str(out))
    assert "wandb sync" in r.stdout
    [run_dir] = list((out / "wandb").glob(f"offline-run-*-{rid}"))
    src = runsync.open_run(root / rid)
    hist = _history(run_dir)
    assert sorted(hist) == [2 * i for i in range(20)] + [40]
    for i in range(20):
        row = hist[2 * i]
        assert row["loss"] == 1.0 / 3 ** i and row["n"] == i and row["ok"] == (i % 2 == 0)
        assert round(row["_timestamp"] * 1e6) == dict(times(src, "loss"))[2 * i]
    [cfg] = [r["run"]["config"]["update"] for r in _records(run_dir) if r["type"] == "run"]
    assert {k: v for k, v in cfg.items() if k != "_wandb"} == {"lr": 0.5, "net": {"depth": 3}}
    summary = _leet(run_dir, "--summary").stdout
    assert "finished" in summary and "best" in summary
    # and back: W&B → runsync gives the same series
    back = tmp_path / "back"
    cli_here(capsys, "import", "wandb", str(out / "wandb"), "--dir", str(back))
    view = runsync.open_run(back / rid)
    assert series(view, "loss") == series(src, "loss") and times(view, "loss") == times(src, "loss")
    assert view.config == src.config and view.summary["best"] == 0.25 and len(view.media("img")) == 1
